"""A producer whose journal's disk fills up while every broker is away: produce() is
refused with a typed error (after ``max_block`` of back-pressure), and once the brokers
return and the records are delivered, the disk is free again and produce() goes on.
Both clients: ``Producer`` and ``AsyncProducer``.

Before, the DONE entries of the delivered records did not fit on the full disk either:
nothing was ever reclaimed, and every later record was refused (2,000 of 2,000) until
the process restarted, which then re-sent everything. Real filesystem (a 4 MiB tmpfs),
real broker (the embedded one, stopped and started), read back with confluent-kafka."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

import pytest
from peers.readback import read_back

from pykaf import AsyncProducer, Producer
from pykaf._errors import JournalDiskError
from pykaf.broker import BlockingCluster

PARTITIONS = 3
SEGMENTS = pytest.mark.parametrize(
    "segment_bytes",
    [1 << 20, 64 << 20],
    ids=["segments-of-a-quarter-disk", "one-segment-larger-than-the-disk"],
)


def _options(small_fs: Path, segment_bytes: int) -> dict[str, Any]:
    return {
        "custody": "journal",
        "journal_dir": str(small_fs / "j"),
        "journal_segment_bytes": segment_bytes,
        "buffer_memory": 1 << 20,
        "max_block": 0.2,
    }


def _value(phase: str, i: int) -> bytes:
    return b"%s-%06d-" % (phase.encode(), i) + b"x" * 1000


def _all_arrived_once(cluster: BlockingCluster, accepted: list[bytes]) -> None:
    log = read_back(cluster.bootstrap, "t", PARTITIONS, len(accepted) + 1)
    values = [value for rows in log.records.values() for _, _, value in rows]
    assert sorted(values) == sorted([*accepted, b"warm-up"])  # each once, none lost


@pytest.mark.parametrize("small_fs", ["4m"], indirect=True)
@SEGMENTS
def test_a_producer_whose_disk_filled_takes_records_again_once_they_are_delivered(
    small_fs: Path, segment_bytes: int
) -> None:
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", PARTITIONS)
        accepted: list[bytes] = []
        with Producer(cluster.bootstrap, **_options(small_fs, segment_bytes)) as producer:
            producer.send("t", b"warm-up").result(30)
            cluster.faults.broker_down(1)
            with pytest.raises(JournalDiskError) as full:  # noqa: PT012 (fill until it breaks)
                for i in range(20_000):  # 4 MiB of 1 KiB records: about 4,000 fit
                    producer.produce("t", _value("down", i))
                    accepted.append(_value("down", i))
            assert full.value.errno == errno.ENOSPC
            assert producer.pending() == len(accepted)
            cluster.faults.broker_up(1)
            assert producer.flush(60) == 0
            # Delivered: their segments are reclaimed, the disk has room again for as
            # many records again (delivered as they go now).
            for i in range(len(accepted)):
                producer.produce("t", _value("up", i))
                accepted.append(_value("up", i))
            assert producer.flush(60) == 0
        _all_arrived_once(cluster, accepted)


@pytest.mark.parametrize("small_fs", ["4m"], indirect=True)
@SEGMENTS
def test_an_async_producer_whose_disk_filled_takes_records_again(
    small_fs: Path, segment_bytes: int
) -> None:
    async def run(cluster: BlockingCluster) -> list[bytes]:
        accepted: list[bytes] = []
        async with AsyncProducer(
            cluster.bootstrap, **_options(small_fs, segment_bytes)
        ) as producer:
            await producer.send("t", b"warm-up")
            cluster.faults.broker_down(1)
            with pytest.raises(JournalDiskError) as full:  # noqa: PT012 (fill until it breaks)
                for i in range(20_000):
                    await producer.produce("t", _value("down", i))
                    accepted.append(_value("down", i))
            assert full.value.errno == errno.ENOSPC
            cluster.faults.broker_up(1)
            assert await producer.flush(60) == 0
            for i in range(len(accepted)):  # waits for room as reclaim frees it
                await producer.produce("t", _value("up", i))
                accepted.append(_value("up", i))
            assert await producer.flush(60) == 0
        return accepted

    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", PARTITIONS)
        _all_arrived_once(cluster, asyncio.run(run(cluster)))
