"""``IdentityWriter`` (``JournalAccumulator.journal_identities``): the sender's IDENTITY
entries go through the store's lock-free ``fast_identity`` (C) while it takes them; from
the first it refuses on, every later one goes through the locked ``append``, in order, so
an entry never lands before one that was meant to precede it. DONE entries still queued
go first. A refused locked append is logged once per episode and never raises into the
sender."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from pykaf._errors import JournalError
from pykaf._producer._identity_entries import IdentityWriter
from pykaf._producer.journal import Done, Identity


class _Store:
    def __init__(self, fast_takes: int, fail: bool = False) -> None:
        self.fast_takes = fast_takes  # how many fast calls succeed before it refuses
        self.fail = fail
        self.fast: list[tuple[Any, ...]] = []
        self.locked: list[list[Identity]] = []
        self.directory = "/nowhere"
        self.failed = None

    def fast_identity(self, *fields: Any) -> int:
        if len(self.fast) >= self.fast_takes:
            return -1
        self.fast.append(fields)
        return 100

    def append(self, entries: list[Identity]) -> int:
        if self.fail:
            raise JournalError("the disk is gone")
        self.locked.append(list(entries))
        return 100


def _batch(partition: int, *, identity: bool = True) -> Any:
    return SimpleNamespace(
        identity=SimpleNamespace(producer_id=9, epoch=2) if identity else None,
        journal_first=partition * 10,
        journal_last=partition * 10 + 4,
        pinned=None,
        originals=None,
        topic="t",
        partition=partition,
        base_sequence=partition * 5,
        records=[None] * 5,
    )


def _fields(partition: int) -> tuple[Any, ...]:
    return ("t", partition, 9, 2, partition * 5, partition * 10, partition * 10 + 4, 5)


class _Commit:
    """The journal's thread, as far as the sender sees it: its queued DONE entries."""

    def __init__(self, dones: list[Done] | None = None) -> None:
        self.queued = list(dones or [])

    @property
    def dones_waiting(self) -> bool:
        return bool(self.queued)

    def take_dones(self) -> list[Done]:
        taken, self.queued = self.queued, []
        return taken

    def add_dones(self, dones: list[Done]) -> None:
        self.queued.extend(dones)


def _journal(
    store: _Store, batches: list[Any], trouble: bool = False, commit: _Commit | None = None
) -> Any:
    writer = IdentityWriter(store, commit or _Commit())  # type: ignore[arg-type]
    writer._trouble = trouble
    writer.write(batches)
    return writer


def test_all_through_the_fast_path_when_it_takes_them() -> None:
    store = _Store(fast_takes=10)
    owner = _journal(store, [_batch(0), _batch(1, identity=False), _batch(2)], trouble=True)
    assert store.fast == [_fields(0), _fields(2)]
    assert store.locked == []
    assert owner._trouble is False  # written again: a new episode may be logged


def test_from_the_first_refusal_on_the_rest_go_locked_in_order() -> None:
    # The second is refused; the third would fit the fast path but must not pass it.
    store = _Store(fast_takes=1)
    _journal(store, [_batch(0), _batch(1), _batch(2)])
    assert store.fast == [_fields(0)]
    assert store.locked == [[Identity(*_fields(1)), Identity(*_fields(2))]]


def test_a_failing_locked_append_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _Store(fast_takes=0, fail=True)
    with caplog.at_level(logging.WARNING, logger="pykaf.producer.journal"):
        owner = _journal(store, [_batch(0)])
        assert owner._trouble is True
        owner.write([_batch(1)])
    assert [r.getMessage().count("cannot be journaled") for r in caplog.records] == [1]


def test_nothing_to_journal_keeps_the_episode_open() -> None:
    store = _Store(fast_takes=10)
    owner = _journal(store, [_batch(0, identity=False)], trouble=True)
    assert store.fast == []
    assert owner._trouble is True


def test_queued_done_entries_go_first_before_the_next_identities() -> None:
    # DONE entries the store could not take when their reports came: written before
    # the identities of newer batches, in one locked append, so no batch is sent while
    # an acknowledged one still looks pending to a crash.
    done = Done("t", 0, 0, 4)
    store = _Store(fast_takes=10)
    commit = _Commit([done])
    _journal(store, [_batch(1), _batch(2)], commit=commit)
    assert store.fast == []  # (the fast path would pass the DONE entry)
    assert store.locked == [[done, Identity(*_fields(1)), Identity(*_fields(2))]]
    assert commit.queued == []


def test_queued_done_entries_go_back_to_the_journal_thread_when_the_append_fails() -> None:
    done = Done("t", 0, 0, 4)
    store = _Store(fast_takes=10, fail=True)
    commit = _Commit([done])
    _journal(store, [_batch(1)], commit=commit)
    assert commit.queued == [done]  # not lost: the journal's thread writes them later


def test_queued_done_entries_go_back_when_ctrl_c_lands_in_the_append() -> None:
    done = Done("t", 0, 0, 4)
    commit = _Commit([done])
    store = _Store(fast_takes=10)

    def interrupted(entries: list[Any]) -> int:
        raise KeyboardInterrupt

    store.append = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        _journal(store, [_batch(1)], commit=commit)
    assert commit.queued == [done]  # not lost with the interrupt
