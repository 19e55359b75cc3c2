"""The v3 stream's per-record loops (``_v3_fast``): the C twin gives what the Python one
gives on the same inputs; ``take_binary_values`` takes only records the general path
(``json`` then ``parse_record``) accepts, with the same bytes, and stops where it should;
``delivered_reports`` writes what ``Reports.delivered`` writes, line for line."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf import RecordMetadata
from pykaf.gateway import _v3_fast
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._v3_fast import delivered_reports_python, take_binary_values_python
from pykaf.gateway._v3_records import Reports, parse_record

try:
    from pykaf.gateway import _cv3  # type: ignore[attr-defined]
except ImportError:  # not built: the Python twins are all there is to test
    _cv3 = None

TAKES = [take_binary_values_python] + ([_cv3.take_binary_values] if _cv3 else [])
REPORTS = [delivered_reports_python] + ([_cv3.delivered_reports] if _cv3 else [])
_BLANKS = st.sampled_from(["", " ", "\n", "\r\n\t", "  "])
_BASE64ISH = st.text(alphabet='ABCDabcd0189+/=-_ \\"\n', max_size=16)


def test_the_c_twin_is_the_one_used_when_built() -> None:
    if _cv3 is None or os.environ.get("PYKAF_NO_EXTENSIONS"):
        pytest.skip("the C loops are not built, or turned off")
    assert _v3_fast.take_binary_values is _cv3.take_binary_values
    assert _v3_fast.delivered_reports is _cv3.delivered_reports


@st.composite
def records(draw: st.DrawFn) -> str:
    """A v3 record as a client may write it: mostly the common one, blanks anywhere,
    sometimes with a twist (other data, type, member, order, an escape)."""
    blank = lambda: draw(_BLANKS)  # noqa: E731
    value = draw(st.binary(max_size=40))
    data = base64.b64encode(value).decode()
    twist = draw(st.sampled_from(["none", "none", "data", "type", "member", "escape", "json"]))
    if twist == "data":
        data = draw(_BASE64ISH)
    kind = draw(st.sampled_from(["BINARY", "binary", "JSON"])) if twist == "type" else "BINARY"
    type_member = f'"type"{blank()}:{blank()}"{kind}"'
    data_member = f'"data"{blank()}:{blank()}{json.dumps(data)}'
    if twist == "escape":
        data_member = data_member.replace("/", "\\/")
    members = [type_member, data_member]
    if draw(st.booleans()):
        members.reverse()
    if twist == "member":
        members.append('"extra": 1')
    inner = f"{{{blank()}{f'{blank()},{blank()}'.join(members)}{blank()}}}"
    if twist == "json":
        return json.dumps(draw(st.one_of(st.integers(), st.text(max_size=4), st.lists(st.none()))))
    return f'{{{blank()}"value"{blank()}:{blank()}{inner}{blank()}}}'


def general(text: str) -> Any:
    """What the general path makes of one record's text: its value bytes, or an error."""
    try:
        return parse_record(json.loads(text), None, None)[0]
    except (ValueError, HttpError) as exc:
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(records(), _BLANKS), min_size=1, max_size=6),
    st.integers(0, 200),
    st.booleans(),
)
def test_take_binary_values_takes_what_the_general_path_would(
    items: list[tuple[str, str]], limit: int, cut: bool
) -> None:
    text = "".join(record + blank for record, blank in items)
    if cut:
        text = text[: len(text) * 2 // 3]  # a record cut by the chunk's end
    results = []
    for take in TAKES:
        out: list[bytes] = []
        results.append((take(text, 0, limit, out), out))
    assert all(result == results[0] for result in results), results
    pos, taken = results[0]
    # Each value taken is what the general path makes of its record, whole in the text.
    decoder = json.JSONDecoder()
    at = 0
    for value in taken:
        while text[at] in " \t\n\r":
            at += 1
        _, end = decoder.raw_decode(text, at)
        assert end - at <= limit
        assert general(text[at:end]) == value
        at = end
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    assert pos == at  # it stopped where the first record it did not take starts


def test_take_binary_values_decodes_base64_as_binascii_does() -> None:
    for size in range(70):
        value = bytes(range(size))
        text = json.dumps({"value": {"type": "BINARY", "data": base64.b64encode(value).decode()}})
        for take in TAKES:
            out: list[bytes] = []
            assert take(text, 0, 10**6, out) == len(text)
            assert out == [value]
    # Base64 binascii takes but that is not in its plain form: left to it, not refused.
    for data in ["QQ", "QUI", "Q===", "QQ==QQ==", "QR=="]:
        text = json.dumps({"value": {"type": "BINARY", "data": data}})
        results = []
        for take in TAKES:
            out = []
            results.append((take(text, 0, 10**6, out), out))
        assert all(r == results[0] for r in results), data
        if results[0][1]:
            assert results[0][1] == [binascii.a2b_base64(data, strict_mode=True)]


def test_take_binary_values_in_wider_text_skips_blanks_only() -> None:
    text = ' \n{"value": {"type": "BINARY", "data": "QQ=="}} "é€"'
    if _cv3 is not None:
        out: list[bytes] = []
        assert _cv3.take_binary_values(text, 0, 1000, out) == 2  # not looked at
        assert out == []
    narrow = ' \n{"value": {"type": "BINARY", "data": "QQ=="}} "é"'  # Latin-1: one byte each
    for take in TAKES:
        out = []
        assert take(narrow, 0, 1000, out) == narrow.index('"é"')
        assert out == [b"A"]


def test_take_binary_values_refuses_a_position_outside_the_text() -> None:
    for take in TAKES:
        with pytest.raises(ValueError, match="outside"):
            take("{}", 3, 10, [])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.binary(max_size=300), max_size=8),
    partition=st.integers(0, 10**4),
    offset=st.integers(-1, 2**62),
    stamp=st.integers(-1, 2**41),
)
def test_delivered_reports_writes_what_reports_delivered_writes(
    values: list[bytes], partition: int, offset: int, stamp: int
) -> None:
    reports = Reports("cl\u00fcster", 't"opic')  # escaped by json.dumps: ASCII still

    def one_by_one(start: int) -> str:
        # ``offset`` is the offset of values[start]; each next one more.
        return "\n".join(
            reports.delivered(
                f',"value":{{"type":"BINARY","size":{len(v)}}}',
                RecordMetadata("t", partition, -1 if offset < 0 else offset + i, stamp),
            )
            for i, v in enumerate(values[start:])
        )

    assert reports.delivered_run(partition, offset, stamp, values, 0, len(values)) == one_by_one(0)
    start = min(1, len(values))
    head, when = reports._head, reports._when  # as delivered_run passes them
    texts = [write(head, partition, offset, when, values, start, len(values)) for write in REPORTS]
    assert texts == [one_by_one(start)] * len(REPORTS)


def test_delivered_reports_refuses_what_it_cannot_write() -> None:
    for write in REPORTS:
        with pytest.raises(ValueError):
            write("h", 0, 0, "", [b"a"], 0, 2)
    if _cv3 is not None:
        with pytest.raises(TypeError):
            _cv3.delivered_reports("h", 0, 0, "", ["a"], 0, 1)
        with pytest.raises(TypeError):
            _cv3.delivered_reports("h\u00e9", 0, 0, "", [b"a"], 0, 1)
