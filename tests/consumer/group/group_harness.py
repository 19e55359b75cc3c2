"""Test harness for GroupMembership: members that poll in the background, record their
callbacks, and a bounded wait for a settled group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from pykaf._client._async_client import AsyncClient
from pykaf._client._settings import ClientSettings
from pykaf._consumer._records import TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer.group._driver import GroupMembership
from pykaf._consumer.group._membership import AssignmentChange

FAST_CLIENT = {
    "reconnect_backoff": 0.01,
    "reconnect_backoff_max": 0.2,
    "retry_backoff": 0.02,
    "request_timeout": 10.0,
}
LIMIT = 20.0  # every wait on a group is bounded by this


def consumer_settings(**overrides: Any) -> ConsumerSettings:
    options: dict[str, Any] = {
        "session_timeout": 6.0,
        "heartbeat_interval": 0.1,
        "max_poll_interval": 30.0,
        "enable_auto_commit": False,
        "partition_assignment_strategy": ("range",),
    }
    client = overrides.pop("client", {})
    options.update(overrides)
    return ConsumerSettings(**options, client=ClientSettings(**{**FAST_CLIENT, **client}))


def partitions(topic: str, count: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(count)}


class Member:
    """A GroupMembership with its own client, a recorder of callbacks, and a poller task
    standing in for a consumer that polls every few milliseconds."""

    def __init__(
        self, bootstrap: str, group: str, topics: Any, *, name: str = "", **settings: Any
    ) -> None:
        self.name = name
        self.topics = topics
        self.settings = consumer_settings(**settings)
        self.client = AsyncClient(bootstrap, settings=self.settings.client)
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []
        self.changes: list[AssignmentChange] = []
        self.positions: dict[TopicPartition, int] = {}
        self.group = GroupMembership(
            self.client,
            self.settings,
            group_id=group,
            on_assigned=self._callback("assigned"),
            on_revoked=self._async_callback("revoked"),
            on_lost=self._callback("lost"),
            current_positions=lambda: self.positions,
        )
        self.polling = True  # False: the application "stops polling" (max_poll_interval)
        self.errors: list[BaseException] = []
        self._task: asyncio.Task[None] | None = None

    def _callback(self, kind: str) -> Callable[[frozenset[TopicPartition]], None]:
        def record(partitions: frozenset[TopicPartition]) -> None:
            self.events.append((kind, partitions))

        return record

    def _async_callback(self, kind: str) -> Callable[[frozenset[TopicPartition]], Any]:
        async def record(partitions: frozenset[TopicPartition]) -> None:
            await asyncio.sleep(0)
            self.events.append((kind, partitions))

        return record

    def kinds(self, kind: str) -> list[frozenset[TopicPartition]]:
        return [parts for k, parts in self.events if k == kind]

    async def start(self) -> Member:
        await self.group.subscribe(self.topics)
        self._task = asyncio.create_task(self._poll())
        return self

    async def _poll(self) -> None:
        while True:
            if self.polling:
                self.group.poll_happened()
                try:
                    change = await self.group.ensure_active(timeout=0.05)
                except Exception as exc:  # recorded: tests assert on them
                    self.errors.append(exc)
                    change = None
                if change is not None:
                    self.changes.append(change)
            await asyncio.sleep(0.01)

    async def stop_polling_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop_polling_task()
        await self.group.close()
        await self.client.close()

    async def crash(self) -> None:
        """Stop everything without leaving the group (a killed process)."""
        await self.stop_polling_task()
        for task in (self.group._heartbeat_task, self.group._join_task, self.group._watch_task):
            if task is not None:
                task.cancel()
        await self.client.close()


async def until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    """Wait (bounded) for a condition the test cannot await directly."""
    try:
        async with asyncio.timeout(limit):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {limit}s: {what}") from None


def settled(members: Iterable[Member], expected: set[TopicPartition]) -> bool:
    """Every member stable, none about to rejoin, assignments disjoint and covering."""
    members = list(members)
    seen: list[TopicPartition] = []
    for m in members:
        if not m.group._state.stable or m.group.rejoin_needed or m.group._join_task is not None:
            return False
        seen += m.group.assignment
    generations = {m.group.generation.generation_id for m in members}
    return len(seen) == len(set(seen)) and set(seen) == expected and len(generations) == 1


async def wait_settled(members: Iterable[Member], expected: set[TopicPartition], what: str) -> None:
    members = list(members)
    await until(lambda: settled(members, expected), what)
