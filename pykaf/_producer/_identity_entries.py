"""The sender's journal entries before a Produce request (DESIGN.md "Custody").

A journaled idempotent producer writes one IDENTITY entry per batch before sending it
(producer id, epoch, base sequence, the journal serials of its records), so that a
re-send after a crash is the very same batch and the broker deduplicates it
(``_replay_identity``). Before them go the DONE entries the store could not take when
their reports came (``GroupCommit.take_dones``): the broker tells a re-sent batch from
new records only among the producer's last five batches of a partition, so no batch may
be sent while an acknowledged one still looks pending to a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from pykaf._errors import JournalError
from pykaf._producer._batches import Batch
from pykaf._producer._group_commit import GroupCommit
from pykaf._producer.journal import Done, Identity, JournalStore

__all__ = ["IdentityWriter"]

log = logging.getLogger("pykaf.producer.journal")


class IdentityWriter:
    """Writes the sender's entries into one journal store (``write``); says once per
    episode when it cannot."""

    def __init__(self, store: JournalStore, commit: GroupCommit) -> None:
        self.store = store
        self.commit = commit
        self._trouble = False  # entries could not be written (said once, until they can)

    def write(self, batches: list[Batch]) -> None:
        """The sender, before a Produce request: an IDENTITY entry for each batch that got
        its producer id, epoch and base sequence since it was last sent, so a re-send after
        a crash is the same idempotent batch. A copy into the mapped segment (a killed
        process loses nothing appended); an OS crash before the group fsync may lose it,
        and those records then fall back to at-least-once. Never raises: without its
        entry a batch is still sent (a crash then re-sends it unproven).

        First the DONE entries still queued for the journal's thread (the store's lock
        was busy when their reports came): a batch sent while an acknowledged one has
        no DONE entry could push that one out of the broker's five-batch window, and a
        crash then re-sent it as new records, a duplicate. Written here, what a crash
        leaves pending is never more than the batches in flight.

        The store's lock-free ``fast_identity`` (C) first; from the first entry it
        refuses on, the rest go through the locked ``append`` in order (which settles
        what the fast path wrote first)."""
        fast = self.store.fast_identity
        entries: list[Identity | Done] | None = None
        if self.commit.dones_waiting:
            entries = list(self.commit.take_dones())
        wrote = False
        for b in batches:
            identity: Any = b.identity
            if identity is None or b.journal_first < 0 or b.pinned is not None:
                continue  # not idempotent, a split half, or already journaled
            if b.originals is not None:
                continue  # transform_batch: a replay transforms anew (at-least-once)
            fields = (
                b.topic,
                b.partition,
                identity.producer_id,
                identity.epoch,
                b.base_sequence,
                b.journal_first,
                b.journal_last,
                len(b.records),
            )
            if entries is None:
                if fast(*fields) >= 0:
                    wrote = True
                    continue
                entries = []
            entries.append(Identity(*fields))
        if not entries:
            if wrote:
                self._trouble = False
            return
        try:
            self.store.append(entries)
        except BaseException as exc:  # never into the sender: its batches go without them
            dones = [entry for entry in entries if isinstance(entry, Done)]
            if dones:
                # The journal's thread tries them again (written twice, if the append
                # got that far before a Ctrl-C, changes nothing more).
                self.commit.add_dones(dones)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C on the loop's thread: the caller's to handle
            if not self._trouble:
                self._trouble = True
                # A stopped store was already said at WARNING, with its cause, once for
                # its episode: this consequence of it is not a second alarm. What is not
                # a journal's error (RuntimeError: closed under a last send) is a bug: at
                # ERROR, with its traceback.
                expected = isinstance(exc, JournalError | RuntimeError)
                level = logging.WARNING
                if not expected:
                    level = logging.ERROR
                elif self.store.failed is not None:
                    level = logging.INFO
                log.log(
                    level,
                    "journal %s: the identities of batches being sent cannot be journaled"
                    " (%s): after a crash they would be sent again unproven (duplicates"
                    " possible) instead of deduplicated by the broker",
                    self.store.directory,
                    exc,
                    exc_info=None if expected else exc,
                )
            return
        self._trouble = False
