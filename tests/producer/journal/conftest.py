"""A journal store in a fresh directory (1 MiB bound, 4 KiB segments), closed afterwards."""

from __future__ import annotations

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
