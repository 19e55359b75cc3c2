"""The v3 streaming route's per-record loops: the common record in, its reports out.

Two functions, each in C (``_cv3``, built by setup.py when a compiler is present) and
here in Python, the reference the tests hold the C to (the same results on the same
inputs) and what runs without the extension or with ``PYKAF_NO_EXTENSIONS`` set:

- ``take_binary_values(text, pos, limit, out)``: from ``pos`` on, the bytes of each
  value ``{"value": {"type": "BINARY", "data": "<base64>"}}`` (whitespace between
  tokens, ``type`` and ``data`` in either order, the base64 in its plain form) whose
  JSON is at most ``limit`` characters are appended to ``out``, the whitespace between
  values skipped; returns where the first other value starts (or ``len(text)``). Any
  other value, or one cut by the end of the text, is left to the general path, which
  decides it: this path only ever takes a subset of what that one accepts. (The C twin
  looks at text of one byte a character only; in wider text it only skips blanks.)
- ``delivered_reports(head, partition, offset, when, values, start, stop)``: the
  delivery reports of ``values[start:stop]`` (delivered from ``offset`` on, one offset
  each; -1 for all when ``offset`` is -1), one JSON object per line, as
  ``Reports.delivered`` writes them.
"""

from __future__ import annotations

import binascii
import importlib
import os
import re
from collections.abc import Callable
from typing import Any

__all__ = ["delivered_reports", "take_binary_values"]

_WS = r"[ \t\n\r]*"
_DATA = r'"([A-Za-z0-9+/]*={0,2})"'
_COMMON = re.compile(
    rf'{_WS}\{{{_WS}"value"{_WS}:{_WS}\{{{_WS}'
    rf'(?:"type"{_WS}:{_WS}"BINARY"{_WS},{_WS}"data"{_WS}:{_WS}{_DATA}'
    rf'|"data"{_WS}:{_WS}{_DATA}{_WS},{_WS}"type"{_WS}:{_WS}"BINARY")'
    rf"{_WS}\}}{_WS}\}}"
)
_BLANKS = re.compile(_WS)


def take_binary_values_python(text: str, pos: int, limit: int, out: list[Any]) -> int:
    """``take_binary_values``'s reference (see the module doc)."""
    if not 0 <= pos <= len(text):
        raise ValueError("take_binary_values(): pos outside the text")
    while True:
        pos = _BLANKS.match(text, pos).end()  # type: ignore[union-attr]  # matches ""
        found = _COMMON.match(text, pos)
        if found is None or found.end() - pos > limit:
            return pos
        data = found.group(1) if found.group(1) is not None else found.group(2)
        if len(data) % 4:
            return pos
        try:
            out.append(binascii.a2b_base64(data, strict_mode=True))
        except (binascii.Error, ValueError):
            return pos
        pos = found.end()


def delivered_reports_python(
    head: str, partition: int, offset: int, when: str, values: list[bytes], start: int, stop: int
) -> str:
    """``delivered_reports``'s reference (see the module doc)."""
    if not 0 <= start <= stop <= len(values):
        raise ValueError("delivered_reports(): start and stop outside values")
    lead = f"{head}{partition}"
    return "\n".join(
        f'{lead},"offset":{-1 if offset < 0 else offset + i - start}{when}'
        f',"value":{{"type":"BINARY","size":{len(values[i])}}}}}'
        for i in range(start, stop)
    )


def _accelerated(name: str) -> Any:
    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        return None
    try:
        return getattr(importlib.import_module("pykaf.gateway._cv3"), name, None)
    except ImportError:
        return None


take_binary_values: Callable[[str, int, int, list[Any]], int] = (
    _accelerated("take_binary_values") or take_binary_values_python
)
delivered_reports: Callable[[str, int, int, str, list[bytes], int, int], str] = (
    _accelerated("delivered_reports") or delivered_reports_python
)
