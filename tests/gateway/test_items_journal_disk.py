"""A journal whose disk fails (a failed fsync: EIO) answers 503 with Retry-After and the
cause, on every route that takes records into it (a client retries 503, not 500), and
/healthz says the journal failed; memory custody goes on. The fsync failure is injected
in ``os.fdatasync`` (tmpfs cannot fail one), as the producer's own fault tests do."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio


def _broken_fsync(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


@pytest_asyncio.fixture
async def failing_fsync(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The journal is open and has written a record; from now on every fsync fails."""
    assert (await http.post("/safe/async/events", content=b"warm")).status_code == 202
    monkeypatch.setattr(os, "fdatasync", _broken_fsync)
    yield
    monkeypatch.undo()  # before the app's fixture closes the journal


def _assert_disk_failure(answer: httpx.Response, *words: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    body = answer.json()
    assert body["error_code"] == 50301
    assert body["message"].startswith("the gateway's journal failed on its disk: ")
    for word in (*words, "Input/output error", "retry after 1 s"):
        assert word in body["message"], body


@pytest.mark.usefixtures("failing_fsync")
async def test_a_failed_fsync_answers_503_with_the_cause_and_healthz_says_failed(
    http: httpx.AsyncClient,
) -> None:
    # journal_sync: the fsync fails (or the journal's own thread failed one first and
    # stopped the store): either way the cause is named.
    _assert_disk_failure(await http.post("/safe/async/events", content=b"a"), "fsync")
    # "journal" custody: the stopped store refuses the append itself.
    _assert_disk_failure(await http.post("/async/events", content=b"b"), "stopped")
    _assert_disk_failure(await http.post("/batch/async/events", content=b"c\nd"), "stopped")
    single = await http.post("/sync/events?custody=journal", content=b"e")
    _assert_disk_failure(single, "stopped")
    # Confluent's v3: the record's report carries the code.
    cid = (await http.get("/v3/clusters")).json()["data"][0]["cluster_id"]
    v3 = await http.post(
        f"/v3/clusters/{cid}/topics/events/records",
        json={"value": {"type": "STRING", "data": "f"}},
        headers={"X-Pykaf-Custody": "journal"},
    )
    assert v3.json()["error_code"] == 50301, v3.text
    assert "Input/output error" in v3.json()["message"]
    # Health: Kafka answers, the journal does not write: 503, "failed", with the cause.
    health = await http.get("/healthz")
    assert health.status_code == 503, health.text
    document = health.json()
    assert document["status"] == "failed"
    assert document["kafka"]["reachable"] is True
    assert document["journal"]["state"] == "failed"
    assert "Input/output error" in document["journal"]["failure"]
    # Memory custody does not need the disk.
    memory = await http.post("/async/events?custody=memory", content=b"g")
    assert memory.status_code == 202, memory.text


async def test_healthz_says_the_journal_writes(http: httpx.AsyncClient) -> None:
    assert (await http.post("/safe/async/events", content=b"x")).status_code == 202
    document = (await http.get("/healthz")).json()
    assert document["status"] == "ok"
    assert document["journal"]["state"] == "ok"
    assert "failure" not in document["journal"]


@pytest.mark.usefixtures("failing_fsync")
async def test_a_failed_fsync_on_a_safe_sync_route_answers_503(http: httpx.AsyncClient) -> None:
    _assert_disk_failure(await http.post("/safe/sync/events", content=b"a"))
