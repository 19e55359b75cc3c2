"""Which journaled IDENTITY entries still speak for records awaiting a report.

A journaled producer writes one IDENTITY entry per idempotent batch before sending it
(producer id, epoch, base sequence, and the serial range of its records). After a crash,
every such batch whose records are all still pending is re-sent as exactly the same batch,
so a broker that wrote it already recognises it (DESIGN.md "Custody"). Recovery therefore
keeps every relevant entry, not only the newest per partition: per partition, one per
first serial (a batch sent again under a new identity, after a reset, writes a new entry
for the same range: the later one wins), dropped when the DONE entry of its very range
is read (the usual case, so what is kept stays small however long the journal is), and
at the end only the entries whose whole range is still pending. A range with some of its
records done and others pending cannot be sent as the same batch again: it is left out,
and its records are replayed like records that were never sent. Pure bookkeeping.
"""

from __future__ import annotations

from pykaf._producer.journal._format import Done, Identity
from pykaf._producer.journal._pending import PendingIndex

__all__ = ["BatchIdentities"]


class BatchIdentities:
    """The IDENTITY entries read so far, per partition and first serial."""

    __slots__ = ("_by_partition",)

    def __init__(self) -> None:
        self._by_partition: dict[tuple[str, int], dict[int, Identity]] = {}

    def add(self, identity: Identity) -> None:
        key = (identity.topic, identity.partition)
        found = self._by_partition.get(key)
        if found is None:
            found = self._by_partition[key] = {}
        found[identity.first_serial] = identity

    def done(self, entry: Done) -> None:
        found = self._by_partition.get((entry.topic, entry.partition))
        if found is None:
            return
        identity = found.get(entry.first_serial)
        if identity is not None and identity.last_serial <= entry.last_serial:
            del found[entry.first_serial]

    def relevant(self, index: PendingIndex) -> dict[tuple[str, int], tuple[Identity, ...]]:
        """Per partition, in serial order, the entries whose records are all pending."""
        out: dict[tuple[str, int], tuple[Identity, ...]] = {}
        for (topic, partition), found in self._by_partition.items():
            kept = tuple(
                identity
                for first, identity in sorted(found.items())
                if identity.record_count > 0
                and index.pending_between(topic, partition, first, identity.last_serial)
                == identity.record_count
            )
            if kept:
                out[topic, partition] = kept
        return out
