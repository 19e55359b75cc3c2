"""What the v3 stream keeps now that it works a chunk at a time (one deadline, one fsync,
one send of records per chunk): every record of a chunk whose fsync failed says so, the
records of later chunks are answered in order, and records refused at once by the
producer are answered in their places among delivered ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pykaf.gateway import Gateway


async def chunked(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def record(i: int, **extra: Any) -> bytes:
    return json.dumps({"value": {"type": "STRING", "data": f"v{i}"}, **extra}).encode()


async def test_a_failed_fsync_is_the_report_of_every_record_it_covered(
    app: Gateway, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = app.backend.journal_producer()
    fsyncs = 0

    async def failing_fsync() -> None:
        nonlocal fsyncs
        fsyncs += 1
        raise OSError("the disk is gone")

    monkeypatch.setattr(journal, "fsync", failing_fsync)
    cid = await app.backend.cluster_id()
    chunks = [b"".join(record(10 * c + i, partition_id=0) for i in range(10)) for c in range(3)]
    answer = await http.post(
        f"/v3/clusters/{cid}/topics/events/records?custody=journal_sync", content=chunked(chunks)
    )
    assert answer.status_code == 200, answer.text
    reports = [json.loads(line) for line in answer.text.splitlines()]
    assert len(reports) == 30
    assert {r["error_code"] for r in reports} == {500}
    assert all("the disk is gone" in r["message"] for r in reports)
    assert 1 <= fsyncs <= 3  # one per chunk at most, not one per record


async def test_records_refused_at_once_are_answered_in_their_places(
    app: Gateway, http: httpx.AsyncClient
) -> None:
    cid = await app.backend.cluster_id()
    # Partition 7 does not exist: the producer refuses those records when they are sent.
    body = b"".join(record(i, partition_id=7 if i % 3 == 1 else 0) for i in range(30))
    answer = await http.post(
        f"/v3/clusters/{cid}/topics/events/records", content=chunked([body[:700], body[700:]])
    )
    assert answer.status_code == 200, answer.text
    reports = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["error_code"] == 200 for r in reports] == [i % 3 != 1 for i in range(30)]
    delivered = [r["offset"] for r in reports if r["error_code"] == 200]
    assert delivered == list(range(20))
