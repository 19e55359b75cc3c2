"""Custody settings (issue 12): the level, the journal directory and its bounds, checked
when the producer is built, with errors that say what to fix; "memory" stays the plain
producer (no journal, no thread, the accumulator's own append as ``produce``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pykaf._producer._accumulator import Accumulator
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._producer import Producer
from pykaf._producer._settings import ProducerSettings


def test_defaults() -> None:
    settings = ProducerSettings()
    assert settings.custody == "memory"
    assert settings.journal_dir is None
    assert settings.journal_max_bytes == 1 << 30
    assert settings.journal_segment_bytes == 64 << 20
    assert settings.journal_fsync_interval == 0.005


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"custody": "disk"}, "custody must be one of 'memory', 'journal', 'journal_sync'"),
        ({"custody": "journal"}, "custody='journal' needs journal_dir"),
        ({"custody": "journal_sync", "journal_dir": ""}, "needs journal_dir"),
        ({"journal_dir": 3}, "journal_dir must be a path"),
        ({"journal_max_bytes": 100}, "journal_max_bytes must be an int in 4096.."),
        ({"journal_max_bytes": 1.5e9}, "journal_max_bytes must be an int"),
        ({"journal_segment_bytes": 10}, "journal_segment_bytes must be an int in 4096.."),
        (
            {"journal_max_bytes": 8192, "journal_segment_bytes": 16384},
            "journal_segment_bytes (16384) must be <= journal_max_bytes (8192)",
        ),
        ({"journal_fsync_interval": -1}, "journal_fsync_interval must be a finite number"),
        ({"journal_fsync_interval": float("nan")}, "journal_fsync_interval must be a finite"),
    ],
)
def test_bad_settings_say_what_to_fix(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ProducerSettings.from_options(options)
    assert message in str(caught.value)


def test_journal_settings_accepted(tmp_path: Path) -> None:
    settings = ProducerSettings.from_options(
        {
            "custody": "journal_sync",
            "journal_dir": tmp_path,
            "journal_max_bytes": 1 << 20,
            "journal_segment_bytes": 1 << 16,
            "journal_fsync_interval": 0,
        }
    )
    assert settings.custody == "journal_sync"
    assert settings.journal_dir == tmp_path
    assert settings.journal_fsync_interval == 0.0


def test_memory_custody_is_the_plain_accumulator() -> None:
    # Nothing connects before the first record: no broker is needed to look.
    producer = Producer("127.0.0.1:9")
    try:
        assert type(producer._accumulator) is Accumulator
        assert producer._custody is None
        assert producer.produce == producer._accumulator.append  # no wrapper per record
        assert producer.recovered() == {}
    finally:
        producer.close(0)


def test_journal_custody_builds_the_journaled_accumulator(tmp_path: Path) -> None:
    producer = Producer("127.0.0.1:9", custody="journal", journal_dir=tmp_path / "j")
    try:
        assert type(producer._accumulator) is JournalAccumulator
        assert producer.produce == producer._accumulator.append
        assert (tmp_path / "j" / "LOCK").exists()
    finally:
        producer.close(0)
