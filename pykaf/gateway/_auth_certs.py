"""Certificate subjects as RFC 4514 strings, the form of the ASGI TLS extension's
``client_cert_name`` (written by ``_tls_scope`` from ``ssl``'s ``getpeercert()``, read
back here for the common name).

Both directions live here so that the writer and the reader agree on escaping: a
certificate whose CN holds a comma or a plus must not be read as another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["common_name", "rfc4514_name"]

# ``ssl`` names the attributes in long form; RFC 4514 writes these short forms.
_SHORT: Final = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_SPECIAL: Final = frozenset('"+,;<>\\')


def _escape(value: str) -> str:
    out = []
    for i, char in enumerate(value):
        if char in _SPECIAL or char == "\0":
            out.append("\\" + (char if char != "\0" else "00"))
        elif (i == 0 and char in " #") or (i == len(value) - 1 and char == " "):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def rfc4514_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """``getpeercert()["subject"]`` (RDNs from the root down, each a tuple of
    ``(attribute, value)``) as an RFC 4514 string (most specific RDN first)."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_SHORT.get(name, name)}={_escape(value)}" for name, value in rdn))
    return ",".join(rdns)


def _split(text: str, separators: str) -> list[str]:
    """Split on unescaped separators, keeping escapes for the next step."""
    parts, current, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw.append(int(pair, 16))  # \XX: one byte of the UTF-8 value
                i += 3
                continue
            raw.extend(value[i + 1].encode())
            i += 2
            continue
        raw.extend(char.encode())
        i += 1
    return raw.decode("utf-8", errors="replace")


def _trim(value: str) -> str:
    """Spaces around a value are not part of it, unless escaped ("\\ ")."""
    value = value.lstrip(" ")
    while value.endswith(" ") and not _escaped_at(value, len(value) - 1):
        value = value[:-1]
    return value


def _escaped_at(text: str, index: int) -> bool:
    backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
    return backslashes % 2 == 1


def common_name(name: str) -> str | None:
    """The most specific CN of an RFC 4514 name, or None when it has none."""
    for rdn in _split(name, ",;"):
        for attribute in _split(rdn, "+"):
            kind, sep, value = attribute.partition("=")
            if sep and kind.strip().upper() in ("CN", "COMMONNAME", "2.5.4.3"):
                return _unescape(_trim(value))
    return None
