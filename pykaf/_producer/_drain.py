"""The accumulator's loop side: which batches are ready, taking them out, putting back.

The event loop (the engine and its senders) looks here, never the callers: ``ready``
says which brokers have a batch to send and when to look again, ``drain`` takes one
request's worth for one broker, ``put_back`` returns batches to retry in order,
``complete`` frees the memory of finished ones. Apart from the append path because it
runs on another thread and rhythm (once per loop turn or response, not per record) and
decides readiness (linger, backoff, in-flight limits, leader moves), which appends never do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from pykaf._producer._accumulator_state import AccumulatorState
from pykaf._producer._batches import Batch, PartitionQueue, split_batch

__all__ = ["Draining", "ReadyState"]

# A partition's linger-ready batch that could not be sent for this long (its broker is
# down, say) is closed, so records that follow get a fresh timestamp in a new batch.
_MAX_OPEN_AFTER_READY: Final = 1.0


class ReadyState:
    """What one look at the accumulator found (see ``Draining.ready``)."""

    __slots__ = ("expired", "flush_watchers", "next_at", "nodes", "unled")

    def __init__(self) -> None:
        self.nodes: set[int] = set()  # brokers with a batch ready to go
        self.next_at: float | None = None  # when something else becomes ready
        self.expired: list[Batch] = []  # queued batches past delivery_timeout
        self.unled: set[str] = set()  # topics with batches for leaderless partitions
        # (serial, callback) left by ``watch_flush`` since the last look: the loop calls
        # each once the batches up to its serial are finished.
        self.flush_watchers: list[tuple[int, Callable[[], object]]] = []


class Draining(AccumulatorState):
    """The loop's side of ``Accumulator`` (a mixin over its shared state)."""

    def ready(self, now: float) -> ReadyState:
        """Which brokers have a batch ready, when to look again, and the queued batches
        past their delivery deadline (taken out: the caller fails them)."""
        state = ReadyState()
        next_at: float | None = None
        with self._lock:
            self._wake_pending = False
            if self._flush_watchers:
                state.flush_watchers, self._flush_watchers = self._flush_watchers, []
            flushing = self._flushing > 0 or self._closed
            for t in self._topics.values():
                linger = t.linger
                for part in t.parts:
                    batches = part.batches
                    if not batches:
                        continue
                    while batches and batches[0].deadline <= now:
                        expired = batches.popleft()
                        if expired is part.open:
                            self._seal(expired)
                            part.open = None
                        state.expired.append(expired)
                    if not batches:
                        continue
                    head = batches[0]
                    when = head.deadline
                    if part.returned:
                        pass  # waits for its in-flight batches to come back
                    elif part.retry_at > now:
                        when = min(when, part.retry_at)
                    elif head.sealed or flushing or len(batches) > 1:
                        if part.leader >= 0:
                            state.nodes.add(part.leader)
                        else:
                            state.unled.add(t.name)
                    else:
                        due = head.created + linger
                        if due <= now:
                            if part.leader >= 0:
                                state.nodes.add(part.leader)
                            else:
                                state.unled.add(t.name)
                            if due + _MAX_OPEN_AFTER_READY <= now and head is part.open:
                                self._seal(head)
                                part.open = None
                        else:
                            when = min(when, due)
                    if next_at is None or when < next_at:
                        next_at = when
            self._timer_at = next_at
        state.next_at = next_at
        return state

    def drain(
        self,
        node: int,
        now: float,
        max_bytes: int,
        gate: Callable[[PartitionQueue, Batch], bool],
        max_in_flight: int = 5,
    ) -> list[Batch]:
        """Take at most one ready batch per partition led by ``node``, up to
        ``max_bytes`` (at least one batch), for one Produce request.

        A partition is skipped while: a batch of it waits to be retried (``returned``),
        it backs off, it has ``max_in_flight`` batches out, or batches in flight to
        another broker (a leader change: they come back first, so order holds). ``gate``
        (idempotence) may hold a batch back; it is called last, and only for a batch that
        will be taken if it agrees."""
        out: list[Batch] = []
        with self._lock:
            parts = self._by_node.get(node)
            if not parts:
                return out
            flushing = self._flushing > 0 or self._closed
            total = 0
            count = len(parts)
            start = self._drain_from.get(node, 0) % count
            for step in range(count):
                part = parts[(start + step) % count]
                batches = part.batches
                if not batches or part.returned or part.retry_at > now:
                    continue
                if part.in_flight and (
                    part.in_flight >= max_in_flight or part.in_flight_node != node
                ):
                    continue
                head = batches[0]
                if not (
                    head.sealed
                    or flushing
                    or len(batches) > 1
                    or head.created + part.topic.linger <= now
                ):
                    continue
                if head.size > part.topic.batch_limit and _splittable(head):
                    head = self._split_to_cap(part, head)
                if out and total + head.size > max_bytes:
                    break
                if not gate(part, head):
                    continue
                batches.popleft()
                if head is part.open:
                    part.open = None
                self._seal(head)
                total += head.size
                out.append(head)
            self._drain_from[node] = start + 1
        return out

    def _split_to_cap(self, part: PartitionQueue, head: Batch) -> Batch:
        """Lock held: ``head``, never sent, is larger than its topic's batches are capped at
        now (a batch of the topic was refused as too large: ``refused_as_too_large``).
        Put it in the queue as parts that fit, before it is sent and refused too; its
        memory stays its own, as a refused batch's does. The first part."""
        self._seal(head)
        if head is part.open:
            part.open = None
        part.batches.popleft()
        pieces = split_batch(head, -(-head.size // part.topic.batch_limit))
        part.batches.extendleft(reversed(pieces))
        return pieces[0]

    def put_back(self, part: PartitionQueue, batches: Iterable[Batch]) -> None:
        """Return failed batches to the front of their partition, oldest first."""
        ordered = sorted(batches, key=lambda b: b.serial)
        with self._lock:
            for batch in reversed(ordered):
                batch.sealed = True
                part.batches.appendleft(batch)

    def complete(self, batches: Iterable[Batch]) -> None:
        """Batches that got their reports: free their memory."""
        with self._lock:
            freed = 0
            for batch in batches:
                if self._incomplete.pop(batch.serial, None) is not None:
                    freed += batch.reserved
            if freed:
                self._used -= freed
                self._space.notify_all()
                if self.on_space is not None:
                    self.on_space()

    def take_topic(self, topic: str) -> list[Batch]:
        """Every queued batch of ``topic``, taken out (its records cannot be sent)."""
        out: list[Batch] = []
        with self._lock:
            t = self._topics.get(topic)
            if t is not None:
                for part in t.parts:
                    out.extend(part.batches)
                    part.batches.clear()
                    part.open = None
        return out

    def take_orphaned(self) -> list[Batch]:
        """Every queued batch of a partition the topic no longer has (deleted and made
        again with fewer partitions), taken out: no leader will ever take it."""
        out: list[Batch] = []
        with self._lock:
            for t in self._topics.values():
                for part in t.parts[t.count :]:
                    out.extend(part.batches)
                    part.batches.clear()
                    part.open = None
        return out

    def take_all(self) -> list[Batch]:
        """Every queued batch (not in flight, not waiting for a retry), taken out."""
        out: list[Batch] = []
        with self._lock:
            for t in self._topics.values():
                for part in t.parts:
                    out.extend(part.batches)
                    part.batches.clear()
                    part.open = None
        return out


def _splittable(batch: Batch) -> bool:
    # Never sent (no sequence yet), not a part already, more than one record, and not a
    # batch whose identity or records are fixed (a journaled replay, a transformed one).
    return (
        batch.attempts == 0
        and batch.base_sequence < 0
        and batch.parent is None
        and batch.pinned is None
        and batch.originals is None
        and len(batch.records) > 1
    )
