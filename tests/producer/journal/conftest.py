"""A journal store in a fresh directory (1 MiB bound, 4 KiB segments), closed afterwards;
and a small real filesystem that fills up (``small_fs``: a tmpfs of 1 MiB, or of the
size an indirect parameter gives, mounted when the tests run as root with
CAP_SYS_ADMIN, skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykaf._producer.journal import JournalStore

SEGMENT_BYTES = 4096


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    journal = JournalStore(tmp_path / "j", max_bytes=1 << 20, segment_bytes=SEGMENT_BYTES)
    journal.open()
    yield journal
    journal.close()


def _mount(target: Path, *options: str) -> bool:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return done.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    target = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    size = getattr(request, "param", "1m")
    if os.geteuid() != 0 or not _mount(target, f"size={size}"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=30)
