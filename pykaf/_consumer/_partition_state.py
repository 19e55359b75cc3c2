"""``PartitionState``: where one assigned partition stands, for fetching and handing out.

Apart from ``_fetch_state`` because it is a plain record with no lock and no I/O: the
fetcher, the consumers' hand-out paths and the tests read its fields, while only
``FetchState`` moves them (under its lock, which lives there, not here). So this module
stays pure (no threading), and the buffer's bookkeeping reads without the field list.

The fields:

- ``position``: the next offset to hand to the application; ``fetch_offset``: the next
  offset to ask the broker for (ahead of ``position`` by what is buffered). Only answers
  at the current ``generation`` count: ``seek`` and resets bump it, so an answer to a
  fetch sent before a seek is dropped, never merged. Offsets advance only through data
  answers and handed records, so leader moves and broker outages neither skip nor repeat.
- ``reset``: a ListOffsets target (earliest, latest, a timestamp) the fetcher must
  resolve before the partition is fetched again.
- ``buffered``: bytes of answers not yet handed out; prefetch stops per partition at
  ``max_partition_fetch_bytes`` and in total at ``buffer_max_bytes``.
- ``end_offset``: an offset where a fetch found nothing more (with the high watermark, or
  the last stable offset for read_committed, at or below it): the end of the log as of
  then, for the stream mode that stops at the end.
"""

from __future__ import annotations

from pykaf._consumer._completed_fetch import CompletedFetch
from pykaf._consumer._records import TopicPartition
from pykaf._errors import PykafError

__all__ = ["PartitionState"]


class PartitionState:
    """One assigned partition (see the module doc). Mutable and slotted: updated on
    every answer and every poll, under ``FetchState.lock``."""

    __slots__ = (
        "buffered",
        "end_offset",
        "error",
        "fetch_offset",
        "generation",
        "high_watermark",
        "in_flight",
        "last_stable_offset",
        "log_start_offset",
        "parked",
        "paused",
        "position",
        "position_epoch",
        "reset",
        "resetting",
        "retry_at",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.position: int | None = None
        self.position_epoch: int | None = None
        self.fetch_offset = 0
        self.generation = 0
        self.reset: int | None = None
        self.resetting = False  # a ListOffsets for ``reset`` is in flight
        self.paused = False
        self.in_flight = False
        self.buffered = 0
        self.retry_at = 0.0
        self.high_watermark = -1
        self.last_stable_offset = -1
        self.log_start_offset = -1
        self.end_offset: int | None = None
        self.error: PykafError | None = None
        # Answers held back while the partition is paused.
        self.parked: list[CompletedFetch[PartitionState]] = []

    def __repr__(self) -> str:
        return (
            f"<PartitionState {self.tp} position={self.position} fetch={self.fetch_offset}"
            f" reset={self.reset} buffered={self.buffered}>"
        )

    @property
    def has_position(self) -> bool:
        return self.position is not None and self.reset is None
