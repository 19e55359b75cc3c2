"""Where an ``AsyncConsumer`` reads next, and where each log begins and ends.

Apart from ``_async_consumer`` because none of it is on the poll path: seeking (to an
offset, the beginning, the end, a time), ``position()``, pausing, and the ListOffsets
questions (``beginning_offsets``, ``end_offsets``, ``offsets_for_times``) are calls the
application makes now and then. Each moves the fetch cursors through ``FetchState`` and
first cuts the chunk being handed out (``_hand_out.HandOutTracker``), so a record from
before a seek is never handed after it. ``AsyncConsumer`` keeps the public methods (and
their documentation) and hands the work here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._assignment import AssignedPartitions
from pykaf._consumer._fetch_state import EARLIEST, LATEST, FetchState
from pykaf._consumer._fetcher import Fetcher
from pykaf._consumer._hand_out import HandOutTracker
from pykaf._consumer._offsets import lookup_offsets
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._errors import KafkaTimeoutError, NotAssignedError

__all__ = ["Positions"]

# position() looks again this often while a position is being looked up.
_POSITION_NAP: Final = 0.005


class Positions:
    """Seeking, pausing and log-bound lookups of one consumer (see the module doc).
    ``check_open`` raises once the consumer is closed; ``start`` starts it (idempotent)."""

    def __init__(
        self,
        client: AsyncClient,
        settings: ConsumerSettings,
        state: FetchState,
        fetcher: Fetcher,
        assignment: AssignedPartitions,
        handed: HandOutTracker[PartitionState],
        *,
        check_open: Callable[[], None],
        start: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._settings = settings
        self._state = state
        self._fetcher = fetcher
        self._assignment = assignment
        self._handed = handed
        self._check_open = check_open
        self._start = start

    def assigned(self, tp: TopicPartition) -> PartitionState:
        """``tp``'s cursor; a clear error if ``tp`` is no TopicPartition or not assigned."""
        self._check_open()
        if not isinstance(tp, TopicPartition):
            raise TypeError(f"expected a TopicPartition(topic, partition), not {tp!r}")
        state = self._state.partitions.get(tp)
        if state is None:
            raise NotAssignedError(
                f"{tp} is not assigned to this consumer: assign() or subscribe() first"
                f" (assigned: {', '.join(map(str, sorted(self._state.partitions))) or 'none'})"
            )
        return state

    def _targets(self, tps: tuple[TopicPartition, ...]) -> list[TopicPartition]:
        for tp in tps:
            self.assigned(tp)
        return list(tps) if tps else list(self._state.partitions)

    # -- seeking ------------------------------------------------------------------------

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.assigned(tp)
        if type(offset) is not int or offset < 0:
            raise ValueError(f"seek needs an offset >= 0, not {offset!r}")
        self._handed.cut(tp)
        self._assignment.unpositioned.discard(tp)  # placed: no committed offset over it
        self._state.seek(tp, offset)
        self._fetcher.wake()

    def reset(self, tps: tuple[TopicPartition, ...], target: int) -> None:
        """Position ``tps`` (none: every assigned one) by ListOffsets(``target``)."""
        for tp in self._targets(tps):
            self._handed.cut(tp)
            self._assignment.unpositioned.discard(tp)
            self._state.request_reset(tp, target)
        self._fetcher.wake()

    async def seek_to_timestamp(
        self, tp_or_mapping: TopicPartition | Mapping[TopicPartition, int], ts_ms: int | None
    ) -> None:
        if isinstance(tp_or_mapping, TopicPartition):
            if ts_ms is None:
                raise ValueError("seek_to_timestamp(tp, ts_ms) needs the timestamp")
            mapping: Mapping[TopicPartition, int] = {tp_or_mapping: ts_ms}
        else:
            mapping = tp_or_mapping
        for tp, ts in mapping.items():
            self.assigned(tp)
            if type(ts) is not int or ts < 0:
                raise ValueError(f"a timestamp is milliseconds since the epoch >= 0, not {ts!r}")
        found = await self.offsets_for_times(mapping)
        ends = [tp for tp, hit in found.items() if hit is None]
        end_offsets = await self.end_offsets(ends) if ends else {}
        for tp in mapping:
            self._handed.cut(tp)
            self._assignment.unpositioned.discard(tp)
            hit = found[tp]
            self._state.seek(tp, hit[0] if hit is not None else end_offsets[tp])
        self._fetcher.wake()

    async def position(self, tp: TopicPartition) -> int:
        state = self.assigned(tp)
        await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.client.request_timeout
        while True:
            # Closed meanwhile (another task): the position will never be found. Before,
            # this waited out request_timeout (30 s) and raised KafkaTimeoutError.
            self._check_open()
            positions = self._handed.positions()
            if tp in positions and state.reset is None:
                return positions[tp]
            if state.error is not None:
                error, state.error = state.error, None
                raise error
            if loop.time() >= deadline:
                raise KafkaTimeoutError(f"the position of {tp} was not found within the timeout")
            if tp in self._assignment.unpositioned:
                await self._assignment.position_new()
            # A short nap, not the data event: a poll waiting on it must not miss a wakeup.
            await asyncio.sleep(_POSITION_NAP)

    # -- pausing ------------------------------------------------------------------------

    def pause(self, tps: tuple[TopicPartition, ...]) -> None:
        for tp in tps:
            self.assigned(tp)
            self._handed.cut(tp)
            self._state.pause(tp)

    def resume(self, tps: tuple[TopicPartition, ...]) -> None:
        for tp in tps:
            self.assigned(tp)
            self._state.resume(tp)

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._state.partitions.items() if s.paused}

    # -- where the logs begin and end ---------------------------------------------------

    async def _offsets(
        self, queries: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int, int | None]]:
        self._check_open()
        for tp in queries:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"expected a TopicPartition(topic, partition), not {tp!r}")
        await self._assignment.topics_metadata(tp.topic for tp in queries)
        return await lookup_offsets(
            self._client,
            queries,
            isolation_level=self._settings.isolation_code,
            timeout=self._settings.client.request_timeout,
            retry_backoff=self._settings.client.retry_backoff,
        )

    async def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._offsets(dict.fromkeys(tps, EARLIEST))
        return {tp: v[0] for tp, v in found.items()}

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._offsets(dict.fromkeys(tps, LATEST))
        return {tp: v[0] for tp, v in found.items()}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        for ts in timestamps.values():
            if type(ts) is not int or ts < 0:
                raise ValueError(f"a timestamp is milliseconds since the epoch >= 0, not {ts!r}")
        found = await self._offsets(timestamps)
        return {tp: (v[0], v[1]) if v[0] >= 0 else None for tp, v in found.items()}
