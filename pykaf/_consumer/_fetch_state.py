"""Fetch cursors: where each assigned partition stands, and the fetched bytes waiting.

State with no I/O and no clock (``now`` is passed in), shared by the event loop's fetcher
and the application's thread (the blocking consumer drains in the caller's thread, so a
poll costs no thread hop): every method takes ``lock``, briefly. That lock is why this
module is not in the purity contract; its cursors (``_partition_state``) are.

Each partition's cursor is a ``_partition_state.PartitionState`` (what its fields mean
is said there); this module owns the set of them and the answers buffered for them, and
every move of a cursor (seek, reset, answers, hand-outs) goes through it, under the lock.

Answers are kept as the broker's bytes and decoded when handed out
(``_completed_fetch.CompletedFetch``).
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from pykaf._consumer._completed_fetch import (
    BATCH_OVERHEAD,
    LOG_OVERHEAD,
    CompletedFetch,
    next_fetch_offset,
)
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._error_codes import error_for_code
from pykaf._errors import PykafError
from pykaf._kafka_errors import MessageTooLargeError, OffsetOutOfRangeError
from pykaf.protocol._compression import DEFAULT_MAX_DECOMPRESSED

__all__ = ["EARLIEST", "LATEST", "FetchState"]

EARLIEST: Final = -2  # ListOffsets timestamps
LATEST: Final = -1
_OFFSET_OUT_OF_RANGE: Final = 1


class FetchState:
    """Every assigned partition, and the answers waiting to be handed out."""

    def __init__(
        self,
        *,
        max_partition_bytes: int,
        buffer_max_bytes: int,
        read_committed: bool,
        verify_crc: bool,
        reset_policy: str,
        retry_backoff: float,
        max_decompressed_batch_bytes: int = DEFAULT_MAX_DECOMPRESSED,
    ) -> None:
        self.lock = threading.Lock()
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self._completed: deque[CompletedFetch[PartitionState]] = deque()
        self.buffered = 0
        # A partition is fetched again while less than two answers' worth is buffered:
        # one answer being handed out, the next on its way (measured: one alone leaves
        # the broker idle while the application works through the buffer).
        self._prefetch_bytes = 2 * max_partition_bytes
        self._buffer_max_bytes = buffer_max_bytes
        self._read_committed = read_committed
        self._verify_crc = verify_crc
        self._max_decompressed = max_decompressed_batch_bytes
        self._reset_policy = reset_policy
        self._retry_backoff = retry_backoff
        # Called (outside the lock) when a partition may have become fetchable again:
        # the fetcher's wakeup, thread-safe when the application drains from its thread.
        self.on_space: Callable[[], None] = lambda: None

    # -- assignment and positions (the application's side) ------------------------------

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Make ``tps`` the whole assignment; new partitions have no position yet."""
        wanted = set(tps)
        with self.lock:
            for tp in [tp for tp in self.partitions if tp not in wanted]:
                self._drop(self.partitions.pop(tp))
            for tp in wanted:
                if tp not in self.partitions:
                    self.partitions[tp] = PartitionState(tp)

    def add(self, tps: Iterable[TopicPartition]) -> None:
        with self.lock:
            for tp in tps:
                if tp not in self.partitions:
                    self.partitions[tp] = PartitionState(tp)

    def remove(self, tps: Iterable[TopicPartition]) -> None:
        with self.lock:
            for tp in tps:
                state = self.partitions.pop(tp, None)
                if state is not None:
                    self._drop(state)

    def _drop(self, state: PartitionState) -> None:
        """Forget ``state``'s buffered answers and outdate its fetch in flight."""
        state.generation += 1
        if state.buffered:
            self._completed = deque(cf for cf in self._completed if cf.state is not state)
            self.buffered -= state.buffered
            state.buffered = 0
        state.parked.clear()
        state.end_offset = None
        state.error = None

    def seek(self, tp: TopicPartition, offset: int, epoch: int | None = None) -> None:
        with self.lock:
            state = self.partitions[tp]
            self._drop(state)
            state.position = state.fetch_offset = offset
            state.position_epoch = epoch
            state.reset = None
            state.retry_at = 0.0

    def request_reset(self, tp: TopicPartition, target: int) -> None:
        """Position ``tp`` by ListOffsets(``target``): EARLIEST, LATEST or a timestamp."""
        with self.lock:
            self._request_reset(self.partitions[tp], target)

    def _request_reset(self, state: PartitionState, target: int) -> None:
        self._drop(state)
        state.reset = target
        state.retry_at = 0.0

    def pause(self, tp: TopicPartition) -> None:
        with self.lock:
            state = self.partitions[tp]
            if state.paused:
                return
            state.paused = True
            if state.buffered:
                state.parked = [cf for cf in self._completed if cf.state is state]
                self._completed = deque(cf for cf in self._completed if cf.state is not state)

    def resume(self, tp: TopicPartition) -> None:
        with self.lock:
            state = self.partitions[tp]
            state.paused = False
            self._completed.extend(state.parked)
            state.parked = []
        self.on_space()

    def restart_end_detection(self) -> None:
        """Forget the ends seen: a new stop-at-end iteration looks for the end again."""
        with self.lock:
            for state in self.partitions.values():
                state.end_offset = None

    def all_at_end(self) -> bool:
        """Every partition has a position, handed out up to an end seen by a fetch, and
        nothing buffered (paused partitions count as at their end)."""
        with self.lock:
            for state in self.partitions.values():
                if state.paused:
                    continue
                end = state.end_offset
                if end is None or not state.has_position or state.buffered:
                    return False
                assert state.position is not None
                if state.position < end:
                    return False
            return True

    # -- handing records out (the application's side) -----------------------------------

    def take(self, max_records: int) -> list[ConsumerRecord]:
        """Up to ``max_records`` records, in fetch order, positions advanced past them.
        Raises a partition's pending error when there is no record to return first."""
        freed = False
        with self.lock:
            out: list[ConsumerRecord] = []
            completed = self._completed
            verify = self._verify_crc
            while completed and len(out) < max_records:
                cf = completed[0]
                state = cf.state
                if cf.generation != state.generation or state.position is None:
                    self._finish(completed.popleft())
                    freed = True
                    continue
                try:
                    records = cf.chunk(state.position, max_records - len(out), verify)
                except PykafError as exc:
                    self._refetch(state)
                    freed = True
                    if out:
                        state.error = exc
                        break
                    raise
                if cf.next_position >= 0:
                    state.position = cf.next_position
                    state.position_epoch = cf.next_position_epoch
                if records is None:
                    self._finish(completed.popleft())
                    freed = True
                    continue
                if out:
                    out += records
                else:
                    out = records
            if not out:
                self._raise_pending()
        if freed:
            self.on_space()
        return out

    def take_chunk(self, limit: int) -> tuple[PartitionState, list[ConsumerRecord], int] | None:
        """The next records of one partition (up to ``limit``), for iteration: (state,
        records, position before them); the position is already past them. None when
        nothing is buffered. Raises a pending error as ``take`` does."""
        freed = False
        try:
            with self.lock:
                completed = self._completed
                while completed:
                    cf = completed[0]
                    state = cf.state
                    if cf.generation != state.generation or state.position is None:
                        self._finish(completed.popleft())
                        freed = True
                        continue
                    before = state.position
                    try:
                        records = cf.chunk(before, limit, self._verify_crc)
                    except PykafError:
                        self._refetch(state)
                        freed = True
                        raise
                    if cf.next_position >= 0:
                        state.position = cf.next_position
                        state.position_epoch = cf.next_position_epoch
                    if records is None:
                        self._finish(completed.popleft())
                        freed = True
                        continue
                    if records:
                        return state, records, before
                self._raise_pending()
                return None
        finally:
            if freed:
                self.on_space()

    def _refetch(self, state: PartitionState) -> None:
        """Undecodable data: drop what is buffered and fetch again from the position
        (never past it: the application sees the error until it seeks elsewhere)."""
        self._drop(state)
        if state.position is not None:
            state.fetch_offset = state.position

    def _finish(self, cf: CompletedFetch[PartitionState]) -> None:
        state = cf.state
        if cf.generation == state.generation:
            state.buffered -= cf.size
            self.buffered -= cf.size

    def _raise_pending(self) -> None:
        for state in self.partitions.values():
            error = state.error
            if error is not None:
                state.error = None
                raise error

    # -- the fetcher's side -------------------------------------------------------------

    def resets_due(self, now: float) -> list[tuple[PartitionState, int, int]]:
        """Partitions waiting for a ListOffsets: (state, target, generation); they are
        marked ``resetting`` until ``reset_done``/``retarget``/``reset_failed``. A fetch
        in flight does not hold a reset back: the reset outdated it (``_drop``), and
        ``position()`` waits for the reset, which would otherwise wait out a long poll
        (up to fetch_max_wait)."""
        with self.lock:
            due = []
            for state in self.partitions.values():
                if state.reset is not None and not state.resetting and state.retry_at <= now:
                    state.resetting = True
                    due.append((state, state.reset, state.generation))
            return due

    def reset_done(
        self, state: PartitionState, generation: int, offset: int, epoch: int | None
    ) -> None:
        with self.lock:
            state.resetting = False
            if generation != state.generation:
                return
            state.reset = None
            state.position = state.fetch_offset = offset
            state.position_epoch = epoch
            state.end_offset = None

    def retarget(self, state: PartitionState, generation: int, target: int) -> None:
        """Resolve ``state``'s reset with ``target`` instead (a timestamp past the end)."""
        with self.lock:
            state.resetting = False
            if generation == state.generation:
                state.reset = target

    def reset_failed(
        self, state: PartitionState, generation: int, now: float, error: PykafError | None
    ) -> None:
        """A ListOffsets did not resolve: retried after the backoff; ``error`` (if not
        None) is raised to the application."""
        with self.lock:
            state.resetting = False
            if generation != state.generation:
                return
            state.retry_at = now + self._retry_backoff
            if error is not None:
                state.error = error

    def fetchable(self, now: float) -> list[PartitionState]:
        """Partitions to fetch now: positioned, not paused, nothing in flight, under the
        per-partition prefetch bound; none at all while the buffer is full."""
        with self.lock:
            if self.buffered >= self._buffer_max_bytes:
                return []
            limit = self._prefetch_bytes
            return [
                state
                for state in self.partitions.values()
                if state.reset is None
                and state.position is not None
                and not state.paused
                and not state.in_flight
                and state.retry_at <= now
                and state.buffered < limit
                and state.end_offset is None
                and state.error is None
            ]

    def next_retry(self, now: float) -> float | None:
        """The earliest ``retry_at`` after ``now`` among partitions waiting, if any."""
        with self.lock:
            times = [
                s.retry_at
                for s in self.partitions.values()
                if not s.in_flight and not s.resetting and now < s.retry_at < float("inf")
            ]
            return min(times, default=None)

    def fetch_started(self, states: list[PartitionState]) -> list[tuple[int, int]]:
        """Mark ``states`` in flight; their (generation, fetch offset) to send."""
        with self.lock:
            out = []
            for state in states:
                state.in_flight = True
                out.append((state.generation, state.fetch_offset))
            return out

    def delay(self, states: Iterable[PartitionState], until: float) -> None:
        """Do not fetch ``states`` before ``until`` (their leader is not known yet)."""
        with self.lock:
            for state in states:
                state.retry_at = until

    def fetch_failed(self, state: PartitionState, generation: int, retry_at: float) -> None:
        """No answer for ``state`` (a broker error, a stale leader): ask again later."""
        with self.lock:
            state.in_flight = False
            if generation == state.generation:
                state.retry_at = retry_at

    def fetch_answered(
        self,
        state: PartitionState,
        generation: int,
        fetch_offset: int,
        *,
        error_code: int,
        high_watermark: int,
        last_stable_offset: int,
        log_start_offset: int,
        records: bytes | None,
        aborted: list[tuple[int, int]] | None,
        stop_at_end: bool,
    ) -> bool:
        """A partition's part of a fetch answer (error codes that need the metadata are
        the fetcher's: it calls ``fetch_failed``). True if records were buffered."""
        with self.lock:
            state.in_flight = False
            if generation != state.generation:
                return False
            state.high_watermark = high_watermark
            state.last_stable_offset = last_stable_offset
            state.log_start_offset = log_start_offset
            if error_code == _OFFSET_OUT_OF_RANGE:
                self._out_of_range(state, fetch_offset)
                return False
            if error_code:
                state.error = error_for_code(error_code, f"(fetching {state.tp} at {fetch_offset})")
                return False
            if records:
                next_offset = next_fetch_offset(records, fetch_offset)
                if next_offset > fetch_offset:
                    state.fetch_offset = next_offset
                    cf = CompletedFetch(
                        state,
                        generation,
                        records,
                        aborted if self._read_committed else None,
                        self._max_decompressed,
                    )
                    if state.paused:
                        state.parked.append(cf)
                    else:
                        self._completed.append(cf)
                    state.buffered += cf.size
                    self.buffered += cf.size
                    return True
                if len(records) >= BATCH_OVERHEAD and next_offset == fetch_offset:
                    (length,) = struct.unpack_from(">i", records, 8)
                    if length + LOG_OVERHEAD > len(records):
                        state.error = _too_large(state, fetch_offset, length)
                        return False
            end = last_stable_offset if self._read_committed else high_watermark
            if stop_at_end and end >= 0 and fetch_offset >= end:
                state.end_offset = fetch_offset
            return False

    def _out_of_range(self, state: PartitionState, fetch_offset: int) -> None:
        if state.position != fetch_offset:
            return  # a prefetch past data not handed yet: decide once the position is here
        if self._reset_policy == "error":
            error = OffsetOutOfRangeError(
                f"(partition {state.tp}, offset {fetch_offset}; the log holds"
                f" {state.log_start_offset}..{state.high_watermark}) auto_offset_reset is"
                " 'error': seek to a valid offset, or set auto_offset_reset"
            )
            error.partition = state.tp  # type: ignore[attr-defined]
            error.offset = fetch_offset  # type: ignore[attr-defined]
            state.error = error
            state.retry_at = float("inf")  # not fetched again until a seek
            return
        self._request_reset(state, EARLIEST if self._reset_policy == "earliest" else LATEST)

    def positions(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        with self.lock:
            return {
                tp: (s.position if s.reset is None else None, s.position_epoch)
                for tp, s in self.partitions.items()
            }


def _too_large(state: PartitionState, offset: int, length: int) -> PykafError:
    return MessageTooLargeError(
        f"(partition {state.tp} at offset {offset}: a batch of {length + LOG_OVERHEAD}"
        " bytes does not fit max_partition_fetch_bytes; raise it)"
    )
