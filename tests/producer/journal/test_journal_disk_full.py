"""A producer whose journal's disk fills up while every broker is away: produce() is
refused with a typed error (after ``max_block`` of back-pressure), and once the brokers
return and the records are delivered, the disk is free again and produce() goes on.

Before, the DONE entries of the delivered records did not fit on the full disk either:
nothing was ever reclaimed, and every later record was refused (2,000 of 2,000) until
the process restarted, which then re-sent everything. Real filesystem (a 4 MiB tmpfs),
real broker (the embedded one, stopped and started), read back with confluent-kafka."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from peers.readback import read_back

from pykaf import Producer
from pykaf._errors import JournalDiskError
from pykaf.broker import BlockingCluster

PARTITIONS = 3


@pytest.mark.parametrize("small_fs", ["4m"], indirect=True)
@pytest.mark.parametrize(
    "segment_bytes",
    [1 << 20, 64 << 20],
    ids=["segments-of-a-quarter-disk", "one-segment-larger-than-the-disk"],
)
def test_a_producer_whose_disk_filled_takes_records_again_once_they_are_delivered(
    small_fs: Path, segment_bytes: int
) -> None:
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", PARTITIONS)
        accepted: list[bytes] = []
        with Producer(
            cluster.bootstrap,
            custody="journal",
            journal_dir=str(small_fs / "j"),
            journal_segment_bytes=segment_bytes,
            buffer_memory=1 << 20,
            max_block=0.2,
        ) as producer:
            producer.send("t", b"warm-up").result(30)
            cluster.faults.broker_down(1)
            with pytest.raises(JournalDiskError) as full:  # noqa: PT012 (fill until it breaks)
                for i in range(20_000):  # 4 MiB of 1 KiB records: about 4,000 fit
                    value = b"down-%06d-" % i + b"x" * 1000
                    producer.produce("t", value)
                    accepted.append(value)
            assert full.value.errno == errno.ENOSPC
            assert producer.pending() == len(accepted)
            cluster.faults.broker_up(1)
            assert producer.flush(60) == 0
            # Delivered: their segments are reclaimed, the disk has room again for as
            # many records again (delivered as they go now).
            for i in range(len(accepted)):
                value = b"up-%06d-" % i + b"x" * 1000
                producer.produce("t", value)
                accepted.append(value)
            assert producer.flush(60) == 0
        log = read_back(cluster.bootstrap, "t", PARTITIONS, len(accepted) + 1)
        values = [value for rows in log.records.values() for _, _, value in rows]
        assert sorted(values) == sorted([*accepted, b"warm-up"])  # each once, none lost
