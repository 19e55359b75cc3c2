"""The cluster as the client sees it: which broker a target means, and keeping that true.

Resolves ``to=`` targets to connections: "any" (least loaded broker that is up; the
bootstrap addresses again when every known broker is unreachable), node ids, partition
leaders (metadata fetched on first use, refreshed by age and on stale errors), group and
transaction coordinators (FindCoordinator, cached until NOT_COORDINATOR), the controller.
Responses are read for the signs that this view is wrong (see ``_client._stale``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection
from typing import Any, Final

from pykaf._client._address import Address
from pykaf._client._connection import BrokerConnection
from pykaf._client._metadata import BrokerChanges, ClusterMetadata, MetadataCache, TopicInfo
from pykaf._client._pool import ConnectionPool
from pykaf._client._settings import ClientSettings
from pykaf._client._stale import (
    CONTROLLER_STALE_CODES,
    COORDINATOR_STALE_CODES,
    LEADER_APIS,
    METADATA_STALE_CODES,
    error_codes,
    partition_signals,
)
from pykaf._client._targets import Coordinator, CoordinatorType, Leader, Purpose, Target
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    NoBrokersError,
    PykafError,
    RemoteProtocolError,
    SaslError,
    TlsError,
)
from pykaf._kafka_errors import LeaderNotAvailableError, NotControllerError
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import LeaderMoved, MetadataRefreshed
from pykaf.protocol._messages import build_request

__all__ = ["ClusterView"]

_METADATA_KEY: Final = 3
_FIND_COORDINATOR_KEY: Final = 10
_COORDINATOR_RETRY_CODES: Final = frozenset({14, 15})  # LOAD_IN_PROGRESS, NOT_AVAILABLE
# Brokers asked in turn for one Metadata or FindCoordinator answer (the deadline bounds
# the time; this bounds the count).
_MAX_ASK_ATTEMPTS: Final = 8


class ClusterView:
    def __init__(
        self,
        bootstrap: tuple[Address, ...],
        pool: ConnectionPool,
        settings: ClientSettings,
        *,
        rand: Callable[[], float] = random.random,
        events: EventBus | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._events = events if events is not None else EventBus()
        # Rotated once at random, so that many clients with the same list do not all
        # start on its first entry.
        shift = int(rand() * len(bootstrap)) % len(bootstrap)
        self._bootstrap = bootstrap[shift:] + bootstrap[:shift]
        self.cache = MetadataCache(
            max_age=settings.metadata_max_age, min_refresh_interval=settings.retry_backoff
        )
        self._coordinators: dict[tuple[CoordinatorType, str], tuple[int, Address]] = {}
        # One Metadata request per topic set at a time; None is "every topic".
        self._refreshing: dict[frozenset[str] | None, asyncio.Future[ClusterMetadata]] = {}

    # -- targets ------------------------------------------------------------------------

    def ready_connection(self, to: Target, purpose: Purpose) -> BrokerConnection | None:
        """The open connection ``to`` resolves to right now, from the cache alone, or None
        when resolving it needs I/O (metadata, a coordinator, a connect): the fast path."""
        pool = self._pool
        if to == "any":
            best: BrokerConnection | None = None
            for broker in self.cache.brokers.values():
                conn = pool.usable(broker.address, purpose)
                if conn is not None and (best is None or conn.in_flight < best.in_flight):
                    best = conn
            return best
        node_id: int | None
        if isinstance(to, int):
            node_id = to
        elif isinstance(to, Leader):
            entry = self.cache.topic(to.topic)
            if (
                entry is None
                or to.partition >= len(entry.partitions)
                or self.cache.refresh_due(to.topic, asyncio.get_running_loop().time())
            ):
                return None
            node_id = entry.partitions[to.partition].leader
        elif isinstance(to, Coordinator):
            cached = self._coordinators.get((to.type, to.key))
            return None if cached is None else pool.usable(cached[1], purpose)
        else:
            node_id = self.cache.controller_id
        target = self.cache.brokers.get(node_id) if node_id is not None else None
        return None if target is None else pool.usable(target.address, purpose)

    async def connection(self, to: Target, purpose: Purpose, deadline: float) -> BrokerConnection:
        if to == "any":
            return await self.any_connection(purpose, deadline)
        if isinstance(to, Leader):
            node_id, address = await self.leader(to.topic, to.partition, deadline)
        elif isinstance(to, Coordinator):
            node_id, address = await self.coordinator(to, deadline)
        elif to == "controller":
            node_id, address = await self.controller(deadline)
        else:
            assert isinstance(to, int)
            node_id, address = await self.node(to, deadline)
        return await self._pool.get(address, node_id=node_id, purpose=purpose, deadline=deadline)

    def _candidates(self, purpose: Purpose) -> list[tuple[Address, int | None]]:
        known: list[tuple[Address, int | None]] = [
            (b.address, b.node_id) for b in self.cache.brokers.values()
        ]
        candidates = list(known)
        if not known or all(self._pool.failing(address) for address, _ in known):
            # Re-bootstrap: the list may be a load balancer, or brokers that replaced
            # every one we knew.
            seen = {address for address, _ in known}
            candidates += [(a, None) for a in self._bootstrap if a not in seen]
        pool = self._pool
        return sorted(
            candidates,
            # Up first; then one with a connection for this purpose (no handshake to
            # wait for), then any connection; then the least in flight.
            key=lambda c: (
                pool.failing(c[0]),
                not pool.connected(c[0], purpose),
                not pool.connected(c[0]),
                pool.load(c[0]),
            ),
        )

    async def any_connection(self, purpose: Purpose, deadline: float) -> BrokerConnection:
        """A connection to the least loaded broker that is up. Tries every candidate;
        when all fail, waits for the first reconnect backoff to end and tries again, up to
        ``deadline``: then ``NoBrokersError`` with the last failure of each."""
        ready = self.ready_connection("any", purpose)
        if ready is not None and ready.in_flight == 0:
            return ready  # an idle open connection: nothing to weigh
        loop = asyncio.get_running_loop()
        errors: dict[Address, PykafError] = {}
        while True:
            now = loop.time()
            candidates = self._candidates(purpose)
            round_errors: list[PykafError] = []
            for address, node_id in candidates:
                if self._pool.wait_before_connect(address, now) > 0:
                    continue
                try:
                    return await self._pool.get(
                        address, node_id=node_id, purpose=purpose, deadline=deadline
                    )
                except ClientClosedError:
                    raise
                except KafkaTimeoutError as exc:
                    if errors:  # say what failed before time ran out
                        raise _no_brokers(errors) from exc
                    raise
                except PykafError as exc:
                    errors[address] = exc
                    round_errors.append(exc)
            self._pool.outages.cluster_failed(
                [a for a, _ in candidates], self._bootstrap, errors, loop.time()
            )
            if round_errors and not any(_retriable(e) for e in round_errors):
                # Retrying cannot help (not Kafka, refused by the broker...): say so now.
                # Credentials or certificates refused by every broker: that error itself, so callers
                # (the producer's metadata wait) see its type, not a retriable wrapper.
                if len(errors) == 1 or all(
                    isinstance(e, SaslError | TlsError) for e in round_errors
                ):
                    raise round_errors[0]
                raise _no_brokers(errors)
            now = loop.time()
            wait = min((self._pool.wait_before_connect(a, now) for a, _ in candidates), default=0.0)
            next_try = now + max(wait, self._settings.retry_backoff, 0.001)
            if next_try >= deadline:
                raise _no_brokers(errors, candidates)
            await asyncio.sleep(next_try - now)

    async def node(self, node_id: int, deadline: float) -> tuple[int, Address]:
        broker = self.cache.brokers.get(node_id)
        if broker is None:
            await self.refresh(frozenset(), deadline)
            broker = self.cache.brokers.get(node_id)
        if broker is None:
            known = ", ".join(str(i) for i in sorted(self.cache.brokers)) or "none"
            raise BrokerConnectionError(
                f"no broker with node id {node_id} in the cluster metadata (known: {known})",
                node_id=node_id,
            )
        return node_id, broker.address

    async def leader(self, topic: str, partition: int, deadline: float) -> tuple[int, Address]:
        loop = asyncio.get_running_loop()
        if self.cache.refresh_due(topic, loop.time()):
            await self.refresh(frozenset({topic}), deadline)
        part = self.cache.leader(topic, partition)
        broker = self.cache.brokers.get(part.leader)
        if broker is None:
            self.cache.mark_stale(topic)
            raise LeaderNotAvailableError(
                f"(the leader of {topic}-{partition}, broker {part.leader}, is not in the"
                " broker list)"
            )
        return broker.node_id, broker.address

    async def controller(self, deadline: float) -> tuple[int, Address]:
        if self.cache.controller_id is None or self.cache.brokers_due(
            asyncio.get_running_loop().time()
        ):
            await self.refresh(frozenset(), deadline)
        controller = self.cache.controller_id
        if controller is None:
            raise NotControllerError("(the cluster metadata names no controller)")
        return await self.node(controller, deadline)

    async def coordinator(self, target: Coordinator, deadline: float) -> tuple[int, Address]:
        key = (target.type, target.key)
        cached = self._coordinators.get(key)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()

        def find(version: int) -> Any:
            return build_request(
                _FIND_COORDINATOR_KEY,
                version,
                key=target.key,
                key_type=int(target.type),
                coordinator_keys=[target.key],
            )

        # Bounded by the deadline: each pass sends one request or raises, then sleeps.
        while True:
            _, response = await self._ask_any(_FIND_COORDINATOR_KEY, find, deadline)
            version = int(type(response).__version__)
            entry = response.coordinators[0] if version >= 4 else response
            code = int(entry.error_code)
            if code == 0:
                found = (int(entry.node_id), Address(host=entry.host, port=int(entry.port)))
                self._coordinators[key] = found
                return found
            what = f"(FindCoordinator for {target.type.name.lower()} {target.key!r})"
            if code not in _COORDINATOR_RETRY_CODES:
                raise error_for_code(code, what)
            if loop.time() + self._settings.retry_backoff >= deadline:
                raise error_for_code(code, what)
            await asyncio.sleep(self._settings.retry_backoff)

    # -- metadata -----------------------------------------------------------------------

    async def refresh(self, topics: frozenset[str] | None, deadline: float) -> ClusterMetadata:
        """Fetch metadata for ``topics`` (None: every topic; empty: brokers only), sharing
        a request already on its way that covers them. Returns the cache's view of them.

        The first caller sends the request in its own task (no task per refresh) and
        publishes the outcome on a future that later callers wait on, each up to its own
        deadline; if the first caller gives up first, a later one asks again."""
        loop = asyncio.get_running_loop()
        shared = self._shared_refresh(topics)
        if shared is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    view = await asyncio.shield(shared)
                return view if topics is None else self.cache.snapshot(topics)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is None or current.cancelling():
                    raise  # we are the ones cancelled
                # else the caller that owned the request was: ask ourselves, below
            except TimeoutError as exc:
                if not isinstance(exc, PykafError):
                    raise KafkaTimeoutError("no metadata answer within the timeout") from None
                if loop.time() >= deadline:
                    raise
        outcome: asyncio.Future[ClusterMetadata] = loop.create_future()
        self._refreshing[topics] = outcome
        try:
            view = await self._fetch(topics, deadline)
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:
            outcome.set_exception(exc)
            outcome.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            outcome.set_result(view)
        finally:
            if self._refreshing.get(topics) is outcome:
                del self._refreshing[topics]
        return view if topics is None else self.cache.snapshot(topics)

    def _shared_refresh(
        self, topics: frozenset[str] | None
    ) -> asyncio.Future[ClusterMetadata] | None:
        pending = self._refreshing.get(topics)
        if pending is not None:
            return pending
        for pending_topics, pending in self._refreshing.items():
            if pending_topics is None or (topics is not None and topics <= pending_topics):
                return pending
        return None

    async def _ask_any(
        self, api_key: int, build: Callable[[int], Any], deadline: float
    ) -> tuple[BrokerConnection, Any]:
        """Send a read-only request (built for the broker's version) to any broker; on a
        broken connection, ask another (or the same, reconnected) until ``deadline``.
        Only for the client's own idempotent questions (Metadata, FindCoordinator): a
        caller's raw request is never re-sent behind its back."""
        last: BrokerConnectionError | None = None
        for _ in range(_MAX_ASK_ATTEMPTS):
            conn = await self.any_connection("other", deadline)
            assert conn.versions is not None
            request = build(conn.versions.version(api_key))
            try:
                return conn, await conn.send(request, deadline=deadline)
            except BrokerConnectionError as exc:
                last = exc
        assert last is not None
        raise last

    async def _fetch(self, topics: frozenset[str] | None, deadline: float) -> ClusterMetadata:
        loop = asyncio.get_running_loop()
        started = loop.time()
        names: Collection[str] | None = None if topics is None else sorted(topics)

        def request(version: int) -> Any:
            if version == 0 and names is not None and not names:
                # v0 has no "no topics": an empty list means every topic. Ask for one
                # that cannot exist (a space is not legal in a name): brokers only.
                wire_topics: list[dict[str, Any]] | None = [{"name": " "}]
            elif names is None:
                wire_topics = [] if version == 0 else None
            else:
                wire_topics = [{"name": n, "topic_id": None} for n in names]
            return build_request(
                _METADATA_KEY,
                version,
                topics=wire_topics,
                allow_auto_topic_creation=self._settings.allow_auto_topic_creation,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )

        conn, response = await self._ask_any(_METADATA_KEY, request, deadline)
        code = int(getattr(response, "error_code", 0))
        if code:
            raise error_for_code(code, f"(Metadata from {conn.describe()})")
        listening = self._events.active
        # What the cache said before this answer, to tell leader moves (only if heard).
        before: dict[str, TopicInfo | None] = {}
        if listening:
            before = {n: self.cache.topic(n) for n in names or self.cache.known_topics()}
        view, changes = self.cache.update(response, loop.time(), names)
        if not names and topics is not None:
            self.cache.note_broker_list_fetched(loop.time())
        self._follow(changes)
        if listening:
            self._tell_refreshed(view, before, loop.time() - started)
        return view

    def _tell_refreshed(
        self, view: ClusterMetadata, before: dict[str, TopicInfo | None], duration: float
    ) -> None:
        """MetadataRefreshed, then a LeaderMoved per partition whose leader changed in
        the cache (a topic seen for the first time has no leader to move from)."""
        bus, client_id, now = self._events, self._settings.client_id, time.time()
        bus.emit(
            MetadataRefreshed(
                time=now,
                client_id=client_id,
                brokers=len(view.brokers),
                topics=len(view.topics),
                duration=duration,
            )
        )
        for name in view.topics:
            old, new = before.get(name), self.cache.topic(name)
            if old is None or new is None:
                continue
            for part in new.partitions:
                if part.partition >= len(old.partitions):
                    continue
                old_leader = old.partitions[part.partition].leader
                if old_leader == part.leader:
                    continue
                bus.emit(
                    LeaderMoved(
                        time=now,
                        client_id=client_id,
                        topic=name,
                        partition=part.partition,
                        old_leader=old_leader if old_leader >= 0 else None,
                        new_leader=part.leader if part.leader >= 0 else None,
                        leader_epoch=part.leader_epoch if part.leader_epoch >= 0 else None,
                    )
                )

    def _follow(self, changes: BrokerChanges) -> None:
        if changes or self._pool.has_unnamed():
            for broker in self.cache.brokers.values():
                self._pool.set_node_id(broker.address, broker.node_id)
        if not changes:
            return
        gone = [b.address for b in changes.removed]
        gone += [
            before.address for before, after in changes.moved if before.address != after.address
        ]
        addresses_now = {b.address for b in self.cache.brokers.values()}
        gone = [a for a in gone if a not in addresses_now]
        if gone:
            self._pool.drop(gone, "the broker left this address (cluster metadata changed)")
        moved_ids = {b.node_id for b in changes.removed} | {a.node_id for a, _ in changes.moved}
        for key, (node_id, _) in list(self._coordinators.items()):
            if node_id in moved_ids:
                del self._coordinators[key]

    # -- learning from answers and failures ---------------------------------------------

    def observe(self, to: Target, api_key: int, response: Any) -> None:
        """Read a response for stale-view signals (errors are the caller's to handle)."""
        if response is None:
            return
        if api_key in LEADER_APIS:
            for signal in partition_signals(response):
                topic = signal.topic
                name = topic if isinstance(topic, str) else self.cache.topic_name(topic)
                if name is None:
                    continue
                if signal.error_code in METADATA_STALE_CODES:
                    self.cache.mark_stale(name)
                elif signal.leader_epoch >= 0:
                    self.cache.observe_leader_epoch(name, signal.partition, signal.leader_epoch)
        if isinstance(to, Coordinator):
            if error_codes(response) & COORDINATOR_STALE_CODES:
                self._coordinators.pop((to.type, to.key), None)
        elif to == "controller" and error_codes(response) & CONTROLLER_STALE_CODES:
            self.cache.controller_id = None

    def failed(self, to: Target, error: BaseException) -> None:
        """A request to ``to`` failed before an answer (or with one that could not be
        read): forget what pointed there. A coordinator that moved may answer in a way we
        cannot decode (librdkafka's mock writes nulls into NOT_COORDINATOR answers); asking
        FindCoordinator again is what gets the client unstuck."""
        if not isinstance(error, BrokerConnectionError | KafkaTimeoutError | RemoteProtocolError):
            return
        if isinstance(to, Leader):
            self.cache.mark_stale(to.topic)
        elif isinstance(to, Coordinator):
            self._coordinators.pop((to.type, to.key), None)
        elif to == "controller":
            self.cache.controller_id = None

    async def close(self) -> None:
        """Wake whoever waits on a shared refresh (its owner is stopped by the client)."""
        for outcome in self._refreshing.values():
            outcome.cancel()
        self._refreshing.clear()


def _retriable(error: PykafError) -> bool:
    return bool(getattr(error, "retriable", False))


def _no_brokers(
    errors: dict[Address, PykafError],
    candidates: list[tuple[Address, int | None]] | None = None,
) -> NoBrokersError:
    if errors:
        detail = "; ".join(str(e) for e in errors.values())
    else:
        tried = ", ".join(str(a) for a, _ in candidates or [])
        detail = f"every broker ({tried}) is in reconnect backoff"
    return NoBrokersError(f"no broker could be reached: {detail}", errors=tuple(errors.values()))
