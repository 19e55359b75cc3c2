"""The journal's errors: importable from pykaf.errors, messages that say what to do, and
intact through pickle and copy (they cross process and thread boundaries in reports)."""

from __future__ import annotations

import copy
import errno
import pickle

import pytest

from pykaf import errors
from pykaf._errors import (
    JournalCorruptError,
    JournalDiskError,
    JournalError,
    JournalFailedError,
    JournalFullError,
    JournalLockedError,
    JournalSyncError,
)

SAMPLES: list[JournalError] = [
    JournalCorruptError("/j/00000000000000000000.journal", 4242, "a CRC mismatch"),
    JournalLockedError("/j", 1234),
    JournalLockedError("/j", None),
    JournalFullError("/j", 1000, 1024, 100),
    JournalDiskError("no space", errno=errno.ENOSPC, path="/j/x.journal", operation="write"),
    JournalSyncError("fsync failed", errno=errno.EIO, path="/j/x", first_unsynced_serial=7),
    JournalFailedError("stopped", errno=errno.EIO, path="/j/x", operation="fsync"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_pickle_and_copy_keep_message_and_attributes(error: JournalError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.__dict__ == error.__dict__


def test_every_journal_error_is_public_and_under_one_root() -> None:
    for error in SAMPLES:
        assert type(error).__name__ in errors.__all__
        assert isinstance(error, errors.PykafError)
        assert isinstance(error, JournalError)


def test_messages_say_what_to_do() -> None:
    corrupt, locked, _, full = SAMPLES[:4]
    assert "byte 4242" in str(corrupt)
    assert "truncate the file to 4242 bytes" in str(corrupt)
    assert "process 1234" in str(locked)
    assert "journal_dir" in str(locked)
    assert "journal_max_bytes" in str(full)
    assert JournalFullError.retriable
