"""SASLprep (RFC 4013) for passwords and the RFC 5802 ``saslname`` escaping of usernames.

Kafka's own SCRAM code does not apply SASLprep (it sends the password's UTF-8 bytes), so
for the ASCII passwords nearly everyone uses the two agree; ``saslprep=False`` on the SCRAM
functions matches Kafka byte for byte when a password holds characters SASLprep changes.
"""

from __future__ import annotations

import stringprep
import unicodedata

from pykaf._errors import SaslConfigurationError, SaslProtocolError

__all__ = ["escape_username", "saslprep", "unescape_username"]

# RFC 4013 section 2.3: the prohibited output tables (C.1.2 and C.2.1 .. C.9).
_PROHIBITED = (
    ("a non-ASCII space", stringprep.in_table_c12),
    ("an ASCII control character", stringprep.in_table_c21),
    ("a non-ASCII control character", stringprep.in_table_c22),
    ("a private-use character", stringprep.in_table_c3),
    ("a non-character code point", stringprep.in_table_c4),
    ("a surrogate code point", stringprep.in_table_c5),
    ("a character inappropriate for plain text", stringprep.in_table_c6),
    ("a character inappropriate for canonical representation", stringprep.in_table_c7),
    ("a change-of-display or deprecated character", stringprep.in_table_c8),
    ("a tagging character", stringprep.in_table_c9),
)


def saslprep(text: str, *, what: str = "password") -> str:
    """``text`` prepared per RFC 4013 (stored-string rules: unassigned code points refused).

    Raises ``SaslConfigurationError`` naming the offending character's position (never the
    text itself: it is usually a password).
    """
    # 2.1 Mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # 2.2 Normalisation: NFKC.
    prepared = unicodedata.normalize("NFKC", mapped)
    for position, ch in enumerate(prepared):
        for description, in_table in _PROHIBITED:
            if in_table(ch):
                raise SaslConfigurationError(
                    f"the {what} holds {description} (U+{ord(ch):04X} at position"
                    f" {position}), which SASLprep (RFC 4013) prohibits; choose another"
                    " or pass saslprep=False to send it unprepared as Kafka's own clients do"
                )
        if stringprep.in_table_a1(ch):
            raise SaslConfigurationError(
                f"the {what} holds an unassigned code point (U+{ord(ch):04X} at position"
                f" {position}), which SASLprep (RFC 4013) refuses in stored strings"
            )
    _check_bidi(prepared, what)
    return prepared


def _check_bidi(text: str, what: str) -> None:
    # RFC 3454 section 6: a string with right-to-left characters holds no left-to-right
    # ones and starts and ends with a right-to-left character.
    if not any(stringprep.in_table_d1(ch) for ch in text):
        return
    if any(stringprep.in_table_d2(ch) for ch in text) or not (
        stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])
    ):
        raise SaslConfigurationError(
            f"the {what} mixes right-to-left and left-to-right text in a way SASLprep"
            " (RFC 4013, bidi rule of RFC 3454 section 6) prohibits"
        )


def escape_username(username: str) -> str:
    """RFC 5802 ``saslname``: ``=`` becomes ``=3D`` and ``,`` becomes ``=2C``."""
    return username.replace("=", "=3D").replace(",", "=2C")


def unescape_username(saslname: str) -> str:
    """The inverse of ``escape_username``; any other ``=`` sequence is a peer's error."""
    parts = saslname.split("=")
    out = [parts[0]]
    for part in parts[1:]:
        if part.startswith("3D"):
            out.append("=" + part[2:])
        elif part.startswith("2C"):
            out.append("," + part[2:])
        else:
            raise SaslProtocolError(
                "the SCRAM username holds '=' not followed by 2C or 3D (RFC 5802 saslname)"
            )
    return "".join(out)
