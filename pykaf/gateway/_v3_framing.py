"""Concatenated JSON from a byte stream: the values of Confluent's streaming produce
request, found as the bytes arrive (a value may be split across chunks anywhere,
whitespace between values is skipped).

Each value is decoded in one call when it is whole in the buffer (the common case): the
streaming route's common record by ``take_binary_values`` (to its bytes, runs of them at
once), any other by the C decoder of ``json``. Only a value cut by a chunk boundary is
framed by a small lexical scanner (braces, brackets and strings), which keeps its place
across chunks so a large value is scanned once, not re-decoded at every chunk. Framing is
lexical, so a value that is not valid JSON inside balanced braces is reported in its own
place and the stream goes on.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

from pykaf.gateway._asgi import HttpError
from pykaf.gateway._v3_fast import take_binary_values

__all__ = ["BadValue", "ConcatenatedJson"]

# Outside a string only these characters matter to framing; inside one, only these.
_STRUCTURE = re.compile(r'[{}\[\]"]')
_IN_STRING = re.compile(r'["\\]')
# Where a bare scalar (a number, true, garbage...) ends.
_SCALAR_END = re.compile(r'[ \t\n\r{\["]')
_CONTAINERS = (dict, list, str)
# ``raw_decode`` without its wrapper: (value, end), StopIteration when no value starts
# at the index, ValueError when one starts but is not valid.
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BadValue:
    """A value that is not valid JSON (or too large), in the place it had in the stream."""

    status: int
    message: str


class _Scan:
    """Where the lexical scan of one value cut by a chunk boundary has got to."""

    __slots__ = ("depth", "in_string", "offset")

    def __init__(self) -> None:
        self.offset = 0  # characters scanned, from the value's start
        self.depth = 0
        self.in_string = False

    def end_of(self, text: str) -> int | None:
        """The index just past the value starting at ``text[0]``, or None if ``text``
        ends inside it."""
        first = text[0]
        if first not in '{["':
            found = _SCALAR_END.search(text, max(self.offset, 1))
            if found is None:
                self.offset = len(text)
                return None
            return found.start()
        if self.offset == 0:
            self.offset, self.depth, self.in_string = 1, int(first != '"'), first == '"'
        i = self.offset
        while True:
            if self.in_string:
                found = _IN_STRING.search(text, i)
                if found is None:
                    self.offset = len(text)
                    return None
                i = found.start()
                if text[i] == "\\":
                    if i + 1 >= len(text):  # the escaped character is in the next chunk
                        self.offset = i
                        return None
                    i += 2
                    continue
                self.in_string = False
                i += 1
                if self.depth == 0:
                    return i
                continue
            found = _STRUCTURE.search(text, i)
            if found is None:
                self.offset = len(text)
                return None
            i = found.start()
            char = text[i]
            i += 1
            if char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    return i


class ConcatenatedJson:
    """Feed bytes, get the JSON values completed by them, in order: each a decoded value
    or a ``BadValue`` in its place. Raises ``HttpError`` when the stream cannot go on
    (a value larger than ``max_value_chars``, bytes that are not UTF-8)."""

    def __init__(self, max_value_chars: int) -> None:
        self.max_value_chars = max_value_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""  # what is not yet consumed; a value being scanned starts at 0
        self._scan: _Scan | None = None
        #: The indices, in the values last returned, of those that are not the common
        #: record's bytes (decoded JSON, ``BadValue``s), in order.
        self.others: list[int] = []

    def feed(self, data: bytes) -> list[Any]:
        return self._values(self._decoded(data, final=False), final=False)

    def close(self) -> list[Any]:
        """The values left when the stream ended (a value cut short is a ``BadValue``)."""
        return self._values(self._decoded(b"", final=True), final=True)

    def _decoded(self, data: bytes, *, final: bool) -> str:
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"the request body is not UTF-8: {exc.reason}") from None

    def _values(self, more: str, *, final: bool) -> list[Any]:
        text = self._text + more if self._text else more
        values: list[Any] = []
        others = self.others = []
        pos = 0
        end_of_text = len(text)
        while True:
            if self._scan is None:
                pos = self._whole_values(text, pos, final, values)
                if pos == end_of_text:
                    break
                text, pos, end_of_text = text[pos:], 0, end_of_text - pos
                self._scan = _Scan()
            framed = self._scan.end_of(text)
            if framed is None:
                if final:  # the body ended inside this value (or after a bare scalar)
                    others.append(len(values))
                    values.append(_parsed(text))
                    text, end_of_text = "", 0
                    self._scan = None
                    break
                if end_of_text > self.max_value_chars:
                    raise self._too_large()
                break
            others.append(len(values))
            values.append(self._sized(_parsed(text[:framed]), framed))
            self._scan = None
            pos = framed
        self._text = text[pos:] if pos < end_of_text else ""
        return values

    def _whole_values(self, text: str, pos: int, final: bool, values: list[Any]) -> int:
        """Append the values that are whole in ``text`` from ``pos`` on; returns where
        the first value that is not whole (or not valid) starts. The common record
        (``{"value": {"type": "BINARY", ...}}``) is taken by ``take_binary_values`` as
        its decoded bytes, runs of them in one C call; any other value is decoded by
        the C scanner of ``json`` in one call."""
        scan, take, limit, append, other = (
            _scan_once,
            take_binary_values,
            self.max_value_chars,
            values.append,
            self.others.append,
        )
        end_of_text = len(text)
        while True:
            pos = take(text, pos, limit, values)  # the blanks before a value too
            if pos == end_of_text:
                return pos
            try:
                value, end = scan(text, pos)
            except (StopIteration, ValueError):
                return pos  # framed lexically, then decoded or reported in its place
            # A number at the very end may go on in the next chunk.
            if end == end_of_text and not final and value.__class__ not in _CONTAINERS:
                return pos
            other(len(values))
            append(value if end - pos <= limit else BadValue(413, self._too_large().message))
            pos = end

    def _sized(self, value: Any, size: int) -> Any:
        if size > self.max_value_chars:
            return BadValue(413, self._too_large().message)
        return value

    def _too_large(self) -> HttpError:
        return HttpError(
            413, f"a record is larger than the gateway's limit of {self.max_value_chars} characters"
        )


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        return BadValue(400, f"a record is not valid JSON: {exc}")
