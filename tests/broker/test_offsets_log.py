"""Committed offsets on disk: an append-only log, compacted, that survives a torn tail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykaf.broker import ClusterState
from pykaf.broker._group_offsets import CommittedOffset, OffsetStore
from pykaf.broker._metastore import read_metadata, write_metadata
from pykaf.broker._offsets_log import OFFSETS_LOG_FILE, OffsetsLog
from pykaf.broker._segments import LogCorruptionError


def offset(value: int, state: ClusterState, topic: str = "t") -> CommittedOffset:
    return CommittedOffset(
        offset=value,
        leader_epoch=0,
        metadata="",
        commit_time_ms=1,
        topic_id=str(state.topics[topic].topic_id),
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ClusterState]:
    running = ClusterState(node_ids=[1], data_dir=tmp_path)
    running.create_topic("t", 4)
    yield running
    running.close()


def written_by_this_process() -> int:
    """Bytes this process handed to write() so far (Linux), whatever wrote them."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
@pytest.mark.parametrize("stored_groups", [1, 1000])
def test_a_commit_costs_the_same_bytes_whatever_the_stored_groups(
    state: ClusterState, stored_groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OffsetStore(state)
    for group in range(stored_groups):
        store.commit(f"group-{group}", [("t", p, offset(5, state)) for p in range(4)])
    documents: list[object] = []

    def counted(*args: Any) -> None:
        documents.append(args)
        write_metadata(*args)

    monkeypatch.setattr("pykaf.broker._state.write_metadata", counted)
    commits = 200
    before = written_by_this_process()
    for value in range(commits):
        store.commit("group-0", [("t", value % 4, offset(value, state))])
    per_commit = (written_by_this_process() - before) / commits
    # One small entry each (~100 bytes), not a document of every group (~100 KB here).
    assert per_commit < 400, per_commit
    assert documents == []  # the metadata document is not rewritten per commit


def test_compaction_keeps_the_file_bounded_and_the_latest_offsets(state: ClusterState) -> None:
    store = OffsetStore(state)
    log = store._log
    assert log is not None
    log.min_compact_bytes = 4096
    largest = 0
    for value in range(3000):
        store.commit(f"g{value % 20}", [("t", value % 4, offset(value, state))])
        largest = max(largest, (state.data_dir or Path()).joinpath(OFFSETS_LOG_FILE).stat().st_size)
    assert log.compactions > 5
    # 20 groups x 1 partition live: a few KB; never more than the threshold allows.
    assert largest < 2 * 4096 + 200
    store.delete_group("g3")
    store.delete("g4", "t", 0)
    log.close()
    again = OffsetStore(state)
    for value in range(3000 - 20, 3000):  # the last commit of each group
        group, partition = f"g{value % 20}", value % 4
        got = again.get(group, "t", partition)
        if group == "g3" or (group == "g4" and partition == 0):
            assert got is None
        else:
            assert got is not None
            assert got.offset == value


def test_offsets_from_the_old_metadata_document_move_into_the_log(tmp_path: Path) -> None:
    old = ClusterState(node_ids=[1], data_dir=tmp_path)
    topic_id = str(old.create_topic("t", 1).topic_id)
    old.group_data["offsets"] = {"g": {"t": {"0": [7, 0, "m", 1, topic_id]}}}
    old.close()
    state = ClusterState(node_ids=[1], data_dir=tmp_path)
    store = OffsetStore(state)
    got = store.get("g", "t", 0)
    assert got is not None
    assert (got.offset, got.metadata) == (7, "m")
    assert "offsets" not in (read_metadata(tmp_path) or {}).get("group_data", {})
    state.close()
    again = ClusterState(node_ids=[1], data_dir=tmp_path)
    moved = OffsetStore(again).get("g", "t", 0)
    assert moved is not None
    assert moved.offset == 7
    again.close()


def test_compaction_drops_offsets_of_deleted_topics(state: ClusterState) -> None:
    state.create_topic("gone", 1)
    store = OffsetStore(state)
    store.commit("g", [("gone", 0, offset(1, state, "gone")), ("t", 0, offset(2, state))])
    state.delete_topic("gone")
    assert store._log is not None
    store._log.compact(store._live())
    store._log.close()
    assert OffsetsLog(state.data_dir or Path()).open() == {
        "g": {"t": {0: [2, 0, "", 1, str(state.topics["t"].topic_id)]}}
    }


def test_every_torn_tail_is_cut_and_nothing_before_it(tmp_path: Path) -> None:
    log = OffsetsLog(tmp_path)
    log.open()
    log.append("g", [("t", 0, [1, 0, "", 1, "id"])])
    boundary = log.bytes_written
    log.append("g", [("t", 0, [2, 0, "", 1, "id"]), ("t", 1, [3, 0, "", 1, "id"])])
    log.close()
    path = tmp_path / OFFSETS_LOG_FILE
    whole = path.read_bytes()
    # Every cut inside the last entry (a crash mid-write) gives the state after the first
    # commit: the second one is all or nothing.
    for cut in range(boundary + 1, len(whole)):
        path.write_bytes(whole[:cut])
        again = OffsetsLog(tmp_path)
        assert again.open() == {"g": {"t": {0: [1, 0, "", 1, "id"]}}}, cut
        again.close()
        assert path.stat().st_size == boundary
    path.write_bytes(whole[:boundary] + bytes(100))  # zero-filled pages after an OS crash
    again = OffsetsLog(tmp_path)
    assert again.open() == {"g": {"t": {0: [1, 0, "", 1, "id"]}}}
    again.append("g", [("t", 0, [4, 0, "", 1, "id"])])
    again.close()
    last = OffsetsLog(tmp_path)
    assert last.open() == {"g": {"t": {0: [4, 0, "", 1, "id"]}}}
    last.close()


def test_damage_before_valid_entries_is_refused(tmp_path: Path) -> None:
    log = OffsetsLog(tmp_path)
    log.open()
    for value in range(3):
        log.append("g", [("t", 0, [value, 0, "", 1, "id"])])
    log.close()
    path = tmp_path / OFFSETS_LOG_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the second entry
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruptionError) as refused:
        OffsetsLog(tmp_path).open()
    assert refused.value.path == path
    assert path.read_bytes() == bytes(data)  # nothing was cut


_APPEND_FOREVER = """
import sys
from pathlib import Path
from pykaf.broker._offsets_log import OffsetsLog
log = OffsetsLog(Path(sys.argv[1]), min_compact_bytes=2048)
log.open()
value = 0
while True:
    value += 1
    log.append("g", [("t", p, [value, 0, "x" * (value % 50), 1, "id"]) for p in range(3)])
    if log.compaction_due():
        log.compact([("g", [("t", p, [value, 0, "", 1, "id"]) for p in range(3)])])
    if value % 100 == 0:
        print(value, flush=True)  # acknowledged: appended before this line
"""


@pytest.mark.parametrize("after", [300, 1000, 2500])
def test_sigkill_mid_commit_loses_nothing_acknowledged(tmp_path: Path, after: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _APPEND_FOREVER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        acknowledged = 0
        while acknowledged < after:
            line = proc.stdout.readline()
            assert line, "the writer died"
            acknowledged = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    log = OffsetsLog(tmp_path)
    stored = log.open()["g"]["t"]
    log.close()
    values = {entry[0] for entry in stored.values()}
    assert len(values) == 1  # every commit whole, never part of one
    assert values.pop() >= acknowledged


def test_a_commit_that_cannot_be_written_is_not_served(
    state: ClusterState, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = OffsetStore(state)
    store.commit("g", [("t", 0, offset(1, state))])

    def full(fd: int, chunk: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full)
        for value in (2, 3):
            with pytest.raises(OSError):
                store.commit("g", [("t", 0, offset(value, state))])
    got = store.get("g", "t", 0)
    assert got is not None
    assert got.offset == 1
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
