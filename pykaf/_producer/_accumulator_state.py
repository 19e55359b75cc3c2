"""The accumulator's shared state: one lock, the queues, the memory count, the serials.

The accumulator is one object with several sides (appending, topic table, readiness and
drain, flush bookkeeping), each in its own module as a mixin of ``Accumulator``. They all
read and write the same few fields under the same lock, so the fields live here, declared
and initialised once, with the small operations every side needs (sealing a batch, the
wake flag, memory charges, close). Mixins rather than separate objects: the append path
reads these fields once per record, and an object of its own would add an attribute hop
there (see ``_accumulator``).

Ctrl-C and the lock: CPython runs a signal handler, so raises Ctrl-C's
``KeyboardInterrupt``, at its first check after a call returns: after ``lock.acquire()``,
before the ``try`` that releases the lock. The lock then stayed held for good: the loop's
next charge blocked on it, so did ``close()``, and the process hung (3 Ctrl-Cs of 30 in a
``produce()`` loop). ``with`` has no such check between taking the lock and its block, and
takes it everywhere but in the two per-record paths (``append``, and the journaled one),
where it cost 80 ns a record (13% of a ``produce()``). They take it inside an outer
``try`` whose handler releases it if this thread still holds it
(``_release_if_interrupted``): an ``RLock``, which knows its owner. An acquire the
interrupt cut short (the lock was not taken) leaves nothing to release.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pykaf._producer._batches import (
    PYTHON_RECORD_COST,
    PYTHON_REPORT_COST,
    Batch,
    PartitionQueue,
    TopicQueues,
)
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import BlockWhenFull, WhenFull
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = ["AccumulatorState"]


def _nothing() -> None:
    return None


class AccumulatorState:
    """The fields of one accumulator and what every side of it does with them."""

    def __init__(
        self,
        settings: ProducerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        when_full: WhenFull | None = None,
        rng: Any = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._wall_ms = wall_ms
        self._rng = rng
        self.when_full: WhenFull = when_full or BlockWhenFull(clock)
        # Reentrant only to know its owner (module doc: Ctrl-C); never taken twice.
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)
        self._topics: dict[str, TopicQueues] = {}
        self._by_node: dict[int, list[PartitionQueue]] = {}
        self._drain_from: dict[int, int] = {}
        self._limit = settings.buffer_memory
        self._used = 0
        self._serial = 0
        self._records_sealed = 0  # records of sealed batches, ever (records_taken)
        # Batches not finished yet, oldest first (insertion order is serial order).
        self._incomplete: dict[int, Batch] = {}
        self._wake_pending = False
        self._timer_at: float | None = None
        self._flushing = 0
        self._flush_watchers: list[tuple[int, Callable[[], object]]] = []
        self._closed = False
        self._delivery_timeout = settings.delivery_timeout
        self._max_request = settings.max_request_size
        # Records up to this estimated size need no exact size check.
        self._plain_limit = min(
            settings.max_request_size - BATCH_OVERHEAD - 32, settings.buffer_memory
        )
        # Called (lock held, loop thread) when memory was freed: wakes asyncio waiters.
        self.on_space: Callable[[], None] | None = None
        # Hooks the producer sets (see ``Accumulator.append``).
        self.wake: Callable[[], None] = _nothing
        self.fetch_topic: Callable[[str], None] | None = None
        self.max_block = settings.max_block

    def _seal(self, batch: Batch) -> None:
        """Lock held: ``batch`` takes no more records. Its reservation counted wire bytes
        only; now it also holds what its records cost as Python objects (reservations
        grow per batch, not per record: the append path stays as it was)."""
        if batch.sealed:
            return
        batch.sealed = True
        count = len(batch.records)
        self._records_sealed += count
        held = count * PYTHON_RECORD_COST
        if batch.reports is not None:
            held += len(batch.reports) * PYTHON_REPORT_COST
        batch.reserved += held
        self._used += held

    def charge(self, held: Iterable[tuple[Batch, int]]) -> None:
        """More bytes held for each batch until it completes (its encoded copy, kept
        for retries), in one lock round. Any thread."""
        with self._lock:
            for batch, extra in held:
                whole = batch
                while whole.parent is not None:  # a split half: its whole is the unit
                    whole = whole.parent
                whole.reserved += extra
                self._used += extra

    def _release_if_interrupted(self) -> None:
        """An exception left ``append`` (module doc): release the lock if this thread
        still holds it, as after an interrupt between ``acquire()`` and ``try``."""
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            lock.release()

    @property
    def wake_pending(self) -> bool:
        """A wake of the loop was promised (``_wake``) and the loop has not looked since."""
        return self._wake_pending

    def _wake(self, wake: bool) -> bool:
        # Lock held. At most one wake pending: ``ready`` clears the flag when it looks.
        if not wake or self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def close(self) -> None:
        """Take no more records; waiting appends raise ``ProducerClosedError``."""
        with self._lock:
            self._closed = True
            self._space.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def used(self) -> int:
        return self._used

    @property
    def incomplete(self) -> int:
        """Batches not finished yet."""
        return len(self._incomplete)

    def records_taken(self) -> int:
        """Records taken since the producer opened (sealed batches, plus the open ones):
        what a memory producer's downtime counts as saved. Once per outage, not per record."""
        with self._lock:
            taken = self._records_sealed
            for t in self._topics.values():
                for part in t.parts:
                    if part.open is not None:
                        taken += len(part.open.records)
            return taken

    def unfinished(self) -> list[Batch]:
        """The batches not finished yet, wherever they are (for the close's last sweep)."""
        with self._lock:
            return list(self._incomplete.values())
