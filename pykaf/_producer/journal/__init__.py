"""Custody on disk (issue 12): the producer's write-ahead journal.

``_format`` is the entry format (pure), ``_pending`` which records still await a report
(pure), ``_lock`` the one-writer lock, ``_recovery`` reading a directory back,
``_durability`` one sync and what a failed one cuts, ``_disk`` disk errors mapped and
logged, ``_segments`` the store (``JournalStore``): appends, syncs, reclaim.
The producer builds on it with ``custody="journal"`` or ``"journal_sync"``: see
``pykaf._producer._custody`` (the level, recovery's replay), ``_journaled`` (the append
path) and ``_group_commit`` (the syncing thread).
"""

from pykaf._producer.journal._format import Done, Identity, JournalRecord
from pykaf._producer.journal._recovery import Recovery, TornTail
from pykaf._producer.journal._segments import JournalStore

__all__ = ["Done", "Identity", "JournalRecord", "JournalStore", "Recovery", "TornTail"]
