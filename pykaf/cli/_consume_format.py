"""How ``pykaf consume`` renders records: kcat's ``-f`` format strings, and JSON lines.

A format string is compiled once into one bytes template and the expressions that fill
it, then into a function rendering a whole list of records with a single comprehension
(``TEMPLATE % (fields...)`` per record, one ``join`` per list): the per-record cost is one
``%`` of a bytes template, with no per-token Python call.

Tokens, as ``kcat -h`` documents them: ``%s`` value, ``%S`` value length (-1: null),
``%R`` value length as a big-endian 32-bit integer, ``%k`` key, ``%K`` key length,
``%T`` timestamp (ms), ``%h`` headers (``n=v`` comma separated), ``%t`` topic, ``%p``
partition, ``%o`` offset, ``%%`` a percent sign; escapes ``\\n \\r \\t \\\\`` and
``\\xXX``. A null key or value prints as nothing, as kcat does without ``-Z``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from pykaf import ConsumerRecord
from pykaf.cli._connect import UsageError
from pykaf.cli._records_json import record_to_json

__all__ = ["DEFAULT_FORMAT", "Renderer", "compile_format", "json_renderer"]

Renderer = Callable[[Sequence[ConsumerRecord]], bytes]

DEFAULT_FORMAT: Final = "%s\\n"

# Record tuples: (offset, timestamp, key, value, headers); topic and partition live on
# the record's class.
_FIELDS: Final = {
    "s": "r[3] or b''",
    "S": "_length(r[3])",
    "R": "_length_be32(r[3])",
    "k": "r[2] or b''",
    "K": "_length(r[2])",
    "T": "b'%d' % r[1]",
    "h": "_headers(r[4])",
    "t": "r.topic.encode()",
    "p": "b'%d' % r.partition",
    "o": "b'%d' % r[0]",
}
_ESCAPES: Final = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}
_BE32: Final = struct.Struct(">i")


def _length(data: bytes | None) -> bytes:
    return b"-1" if data is None else b"%d" % len(data)


def _length_be32(data: bytes | None) -> bytes:
    return _BE32.pack(-1 if data is None else len(data))


def _headers(headers: Any) -> bytes:
    return b",".join(name.encode() + b"=" + (value or b"") for name, value in headers)


def _parse(fmt: str) -> tuple[bytes, list[str]]:
    """(bytes template with ``%s`` holes, the expression filling each hole)."""
    template = bytearray()
    fields: list[str] = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            token = fmt[i + 1 : i + 2]
            if token == "%":
                template += b"%%"
            elif token in _FIELDS:
                template += b"%s"
                fields.append(_FIELDS[token])
            else:
                shown = f"%{token}" if token else "a lone % at the end"
                raise UsageError(
                    f"-f: unknown token {shown}; use %s %S %R %k %K %T %h %t %p %o or %%"
                )
            i += 2
        elif char == "\\":
            escaped = fmt[i + 1 : i + 2]
            if escaped in _ESCAPES:
                template += _ESCAPES[escaped]
                i += 2
            elif escaped == "x":
                digits = fmt[i + 2 : i + 4]
                try:
                    template += bytes([int(digits, 16)]).replace(b"%", b"%%")
                except ValueError:
                    raise UsageError(f"-f: \\x needs two hex digits, not {digits!r}") from None
                i += 4
            else:
                template += b"\\"
                i += 1
        else:
            template += char.encode().replace(b"%", b"%%")
            i += 1
    return bytes(template), fields


def compile_format(fmt: str) -> Renderer:
    """A function rendering a list of records with kcat's format string ``fmt``."""
    template, fields = _parse(fmt)
    namespace: dict[str, Any] = {
        "_TEMPLATE": template,
        "_length": _length,
        "_length_be32": _length_be32,
        "_headers": _headers,
    }
    if not fields:
        body = "_TEMPLATE % () * len(records)"
    else:
        # Every expression comes from _FIELDS (ours), never from the user's string.
        body = f"b''.join([_TEMPLATE % ({', '.join(fields)},) for r in records])"
    exec(f"def render(records):\n    return {body}\n", namespace)
    render: Renderer = namespace["render"]
    return render


def json_renderer(records: Sequence[ConsumerRecord]) -> bytes:
    """One JSON object per record, each on its own line."""
    return b"".join([record_to_json(r) + b"\n" for r in records])
