"""The journal writer's memory: the pages it wrote leave the process (RSS) as it goes on,
so a long outage does not grow the process by a whole segment; nothing written is lost
for it, neither while the process lives nor when it is killed right after."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykaf._producer.journal import JournalStore
from pykaf._producer.journal._mapped import DROP_STEP

SEGMENT = 64 << 20  # the default segment size: one segment holds the whole test
WRITTEN = 48 << 20
VALUE = 1024


def _mapped_file_kib() -> int:
    """Resident pages of file (and shmem: a tmpfs ``/tmp``) maps in this process, KiB."""
    fields: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("RssFile", "RssShmem"):
                fields[name] = int(rest.split()[0])
    if len(fields) != 2:
        pytest.skip("no RssFile/RssShmem in /proc/self/status")
    return fields["RssFile"] + fields["RssShmem"]


def _value(serial: int) -> bytes:
    return random.Random(serial).randbytes(VALUE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    opened = JournalStore(tmp_path, max_bytes=1 << 30, segment_bytes=SEGMENT)
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_long_append_keeps_the_written_pages_out_of_memory(store: JournalStore) -> None:
    store.append_record(0, "t", 0, 0, None, _value(0), None)  # maps the segment
    before = _mapped_file_kib()
    peak = 0
    serial = 1
    while store.used_bytes < WRITTEN:
        store.append_record(serial, "t", serial % 3, serial, None, _value(serial), None)
        serial += 1
        if serial % 1024 == 0:
            peak = max(peak, _mapped_file_kib() - before)
    # Without dropping, the 48 MiB written would all be resident in the map.
    assert peak * 1024 < 4 * DROP_STEP, f"{peak} KiB of written pages held"
    pending = list(store.read_pending(0, store.next_serial))
    assert [r.serial for r in pending] == list(range(serial))
    assert all(r.value == _value(r.serial) for r in pending)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_sync_leaves_no_written_page_in_the_map(store: JournalStore) -> None:
    # Less than DROP_STEP written: only the sync drops them. A page still mapped when the
    # fsync writes it back costs a TLB flush (an interrupt to the other cores) each.
    store.append_record(0, "t", 0, 0, None, _value(0), None)  # maps the segment
    store.sync()
    before = _mapped_file_kib()
    serial = 1
    while store.used_bytes < DROP_STEP // 2:
        store.append_record(serial, "t", 0, serial, None, _value(serial), None)
        serial += 1
    written = _mapped_file_kib() - before
    assert written * 1024 >= DROP_STEP // 4, f"only {written} KiB mapped: nothing to drop"
    store.sync()
    left = _mapped_file_kib() - before
    assert left <= 8, f"{left} KiB of written pages still mapped after the sync"
    pending = list(store.read_pending(0, store.next_serial))
    assert [r.serial for r in pending] == list(range(serial))


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_pages_dropped_from_the_map_are_still_written_by_a_sync(
    store: JournalStore, tmp_path: Path
) -> None:
    # Dropping a dirty page from a MAP_SHARED map leaves it dirty in the page cache: the
    # sync writes it. Had the drop lost the dirty bit, the sync would skip the page and
    # evicting it from the cache would leave zeros on disk.
    serial = 0
    while store.used_bytes < 3 * DROP_STEP:
        store.append_record(serial, "t", 0, serial, None, _value(serial), None)
        serial += 1
    store.sync()
    (path,) = tmp_path.glob("*.journal")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages leave the cache
    finally:
        os.close(fd)
    pending = list(store.read_pending(0, store.next_serial))
    assert [r.serial for r in pending] == list(range(serial))
    assert all(r.value == _value(r.serial) for r in pending)


_CHILD = textwrap.dedent(
    """
    import os, random, signal, sys
    from pykaf._producer.journal import JournalStore
    store = JournalStore(sys.argv[1], max_bytes=1 << 30, segment_bytes=64 << 20)
    store.open()
    serial = 0
    while store.used_bytes < int(sys.argv[2]):
        value = random.Random(serial).randbytes(1024)
        store.append_record(serial, "t", 0, serial, None, value, None)
        serial += 1
    print(serial, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no sync, no close: the page cache has it all
    """
)


def test_a_process_killed_after_dropping_its_pages_loses_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(6 * DROP_STEP)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    count = int(done.stdout)
    store = JournalStore(tmp_path, max_bytes=1 << 30, segment_bytes=SEGMENT)
    recovery = store.open()
    try:
        assert recovery.torn_tail is None
        pending = list(store.read_pending(0, store.next_serial))
        assert [r.serial for r in pending] == list(range(count))
        assert all(r.value == _value(r.serial) for r in pending)
    finally:
        store.close()
