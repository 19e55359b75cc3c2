"""The v3 stream's fast parse (``parse_binary``) of its common record: wherever it gives
an answer, that answer is ``parse_record``'s, byte for byte; everything else (other
types, other fields, bad base64, a principal header to add) is left to ``parse_record``,
which says what is wrong. And the route itself takes the fast path and answers the same
reports as before."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf.gateway import Gateway
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._v3_records import parse_binary, parse_record


def binary(data: bytes) -> dict[str, Any]:
    return {"type": "BINARY", "data": base64.b64encode(data).decode()}


def reference(item: Any) -> Any:
    try:
        return parse_record(item, None, None)
    except HttpError as exc:
        return exc


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_base64ish = st.text(alphabet="ABCDEFGHabcdefgh0123456789+/= \n-_", max_size=24)
_specs = st.one_of(
    st.binary(max_size=64).map(binary),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["BINARY", "binary", "STRING", "JSON", "AVRO"])},
        optional={"data": _json_scalars | _base64ish, "schema_id": st.integers()},
    ),
    _json_scalars,
)
_items = st.one_of(
    st.fixed_dictionaries(
        {"value": _specs},
        optional={
            "key": _specs,
            "partition_id": st.integers(-1, 3),
            "headers": st.just([]),
            "timestamp": st.just("2021-02-05T19:14:42Z"),
            "extra": st.integers(),
        },
    ),
    st.fixed_dictionaries({}, optional={"key": _specs}),
    _json_scalars,
    st.lists(_json_scalars, max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(_items)
def test_the_fast_parse_answers_as_parse_record_or_leaves_it_to_it(item: Any) -> None:
    quick = parse_binary(item)
    if quick is not None:
        assert quick == reference(item)


@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(max_size=40)))
def test_the_common_record_takes_the_fast_parse(value: bytes, key: bytes | None) -> None:
    item: dict[str, Any] = {"value": binary(value)}
    if key is not None:
        item["key"] = binary(key)
    quick = parse_binary(item)
    assert quick is not None
    assert quick == parse_record(item, None, None)
    assert quick[0] == value
    assert quick[1] == key


def test_what_the_fast_parse_leaves_to_parse_record() -> None:
    value = binary(b"v")
    left = [
        {"value": {"type": "BINARY", "data": "not base64!"}},  # parse_record says why
        {"value": {"type": "BINARY", "data": "dg"}},  # padding missing: refused strictly
        {"value": {"type": "binary", "data": "dg=="}},  # a type in lower case
        {"value": {"type": "STRING", "data": "v"}},
        {"value": value, "partition_id": 1},
        {"value": value, "key": None},
        {"value": value, "key": {"type": "STRING", "data": "k"}},
        {"value": None},
        {"key": value},
        [value],
    ]
    for item in left:
        assert parse_binary(item) is None, item


async def test_the_stream_answers_common_and_other_records_alike(
    app: Gateway, http: httpx.AsyncClient
) -> None:
    cid = await app.backend.cluster_id()
    records = [
        {"value": binary(b"fast")},
        {"key": binary(b"k"), "value": binary(b"fast with a key")},
        {"value": {"type": "STRING", "data": "slow"}},
        {"value": {"type": "BINARY", "data": "not base64!"}},
        {"value": binary(b"to partition 0"), "partition_id": 0},
    ]
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    answer = await http.post(f"/v3/clusters/{cid}/topics/events/records", content=body)
    assert answer.status_code == 200, answer.text
    reports = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["error_code"] for r in reports] == [200, 200, 200, 400, 200]
    assert reports[0]["value"] == {"type": "BINARY", "size": 4}
    assert "key" not in reports[0]
    assert reports[1]["key"] == {"type": "BINARY", "size": 1}
    assert reports[1]["value"] == {"type": "BINARY", "size": 15}
    assert reports[2]["value"] == {"type": "STRING", "size": 4}
    assert "base64" in reports[3]["message"]
    assert reports[4]["partition_id"] == 0
