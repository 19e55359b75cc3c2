"""Connections by broker address and purpose, with reconnect backoff per address.

Keyed by address, not node id: a bootstrap connection becomes the connection of the broker
Metadata advertises at the same address, and a broker that moves gets a new connection.
One connect attempt per (address, purpose) at a time: concurrent callers share it. The
attempt runs in its own task, so a caller that gives up (timeout, cancellation) does not
cancel it for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import math
import random
from collections.abc import Callable, Iterable

from pykaf._client._address import Address
from pykaf._client._backoff import Backoff, ReconnectState
from pykaf._client._broker_errors import describe_broker
from pykaf._client._connection import BrokerConnection
from pykaf._client._outages import OutageLog
from pykaf._client._settings import ClientSettings
from pykaf._client._targets import Purpose
from pykaf._client._versions import BrokerApiVersions
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    PykafError,
)
from pykaf._telemetry._bus import EventBus
from pykaf.protocol._messages import API_VERSIONS_KEY

__all__ = ["ConnectionPool"]

_Key = tuple[Address, Purpose]


class ConnectionPool:
    def __init__(
        self,
        settings: ClientSettings,
        *,
        rand: Callable[[], float] = random.random,
        events: EventBus | None = None,
    ) -> None:
        self._settings = settings
        # The client's telemetry bus, handed to every connection (they emit on it).
        self.events = events if events is not None else EventBus()
        self._rand = rand
        self._backoff = Backoff(
            initial=settings.reconnect_backoff, maximum=settings.reconnect_backoff_max
        )
        self._conns: dict[_Key, BrokerConnection] = {}
        self._connecting: dict[_Key, asyncio.Task[BrokerConnection]] = {}
        self._reconnect: dict[Address, ReconnectState] = {}
        self._versions: dict[Address, BrokerApiVersions] = {}
        self._closed = False
        # Called with (address, error) when a connection attempt fails or an open
        # connection is lost; the cluster view uses it to notice that every broker is down.
        self.on_failure: Callable[[Address, PykafError], None] | None = None
        # Outages in the log: WARNING once per episode, INFO on recovery.
        self.outages = OutageLog()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- state for choosing a broker ----------------------------------------------------

    def _state(self, address: Address) -> ReconnectState:
        state = self._reconnect.get(address)
        if state is None:
            state = self._reconnect[address] = ReconnectState(self._backoff)
        return state

    def failing(self, address: Address) -> bool:
        """True after a failure to reach ``address``, until a connection succeeds."""
        state = self._reconnect.get(address)
        return state is not None and state.failing

    def wait_before_connect(self, address: Address, now: float) -> float:
        state = self._reconnect.get(address)
        return 0.0 if state is None else state.wait(now)

    def last_error(self, address: Address) -> BaseException | None:
        state = self._reconnect.get(address)
        return None if state is None else state.last_error

    def connected(self, address: Address, purpose: Purpose | None = None) -> bool:
        purposes = (purpose,) if purpose is not None else None
        return any(
            conn.usable
            for (addr, p), conn in self._conns.items()
            if addr == address and (purposes is None or p in purposes)
        )

    def usable(self, address: Address, purpose: Purpose) -> BrokerConnection | None:
        conn = self._conns.get((address, purpose))
        return conn if conn is not None and conn.usable else None

    def load(self, address: Address) -> int:
        """Requests in flight to ``address`` over all its connections."""
        return sum(c.in_flight for (a, _), c in self._conns.items() if a == address)

    def versions(self, address: Address) -> BrokerApiVersions | None:
        return self._versions.get(address)

    # -- getting a connection -----------------------------------------------------------

    async def get(
        self, address: Address, *, node_id: int | None, purpose: Purpose, deadline: float
    ) -> BrokerConnection:
        """An open connection to ``address`` for ``purpose``, connecting if needed (after
        the reconnect backoff, if the last attempt failed). One attempt per call: a failed
        attempt raises its ``BrokerConnectionError``; ``deadline`` (loop clock) bounds the
        whole wait with a ``KafkaTimeoutError``."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        key = (address, purpose)
        conn = self._conns.get(key)
        if conn is not None and conn.usable:
            return conn
        loop = asyncio.get_running_loop()
        task = self._connecting.get(key)
        if task is None:
            wait = self.wait_before_connect(address, loop.time())
            if wait > 0:
                if loop.time() + wait >= deadline:
                    raise self._backing_off(address, node_id, wait)
                await asyncio.sleep(wait)
                if self._closed:
                    raise ClientClosedError("the client is closed")
                return await self.get(address, node_id=node_id, purpose=purpose, deadline=deadline)
            task = loop.create_task(self._open(key, node_id))
            # Every caller may have given up on it (timeout, cancel): its failure is
            # already recorded and logged by _open, so asyncio need not report it lost.
            task.add_done_callback(_retrieve_outcome)
            self._connecting[key] = task
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError as exc:
            if isinstance(exc, PykafError):
                raise
            raise KafkaTimeoutError(
                f"{describe_broker(address, node_id)}: still connecting at the timeout",
                address=str(address),
            ) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and task.cancelled() and (current is None or not current.cancelling()):
                raise ClientClosedError("the client was closed while connecting") from None
            raise

    def _backing_off(self, address: Address, node_id: int | None, wait: float) -> PykafError:
        last = self.last_error(address)
        if isinstance(last, PykafError):
            error = copy.copy(last)
            error.args = (f"{last} (next attempt in {wait:.3g}s, after the deadline)",)
            return error
        return BrokerConnectionError(
            f"{describe_broker(address, node_id)}: reconnecting in {wait:.3g}s, after the deadline",
            address=str(address),
            node_id=node_id,
        )

    def _api_versions_version(self, address: Address) -> int | None:
        # The broker told us its ApiVersions range on the first connection: later ones
        # ask at the highest version both speak, with no UNSUPPORTED_VERSION round trip.
        versions = self._versions.get(address)
        if versions is None:
            return None
        return versions.negotiated.get(API_VERSIONS_KEY)

    async def _open(self, key: _Key, node_id: int | None) -> BrokerConnection:
        address, purpose = key
        try:
            conn = await BrokerConnection.open(
                address,
                node_id=node_id,
                purpose=purpose,
                settings=self._settings,
                # Bounded by connect_timeout alone: the attempt is shared, and each
                # caller bounds its own wait for it by its own deadline.
                deadline=math.inf,
                api_versions_version=self._api_versions_version(address),
                on_lost=self._lost,
                events=self.events,
            )
        except PykafError as exc:
            if not self._closed:
                self._record_failure(address, exc)
                self.outages.broker_failed(address, node_id, exc, asyncio.get_running_loop().time())
            raise
        finally:
            if self._connecting.get(key) is asyncio.current_task():
                del self._connecting[key]
        if self._closed:
            conn.close()
            raise ClientClosedError("the client was closed while connecting")
        self._state(address).succeeded()
        self.outages.broker_reached(address, conn.node_id, asyncio.get_running_loop().time())
        if conn.versions is not None:
            self._versions[address] = conn.versions
        old = self._conns.get(key)
        if old is not None and old is not conn:
            old.retire()  # dead (closes now) or its session ending (once answered)
        self._conns[key] = conn
        return conn

    def _record_failure(self, address: Address, error: PykafError) -> None:
        loop = asyncio.get_running_loop()
        self._state(address).failed(loop.time(), self._rand(), error)
        if self.on_failure is not None:
            self.on_failure(address, error)

    def _lost(self, conn: BrokerConnection, error: PykafError) -> None:
        key = (conn.address, conn.purpose)
        if self._conns.get(key) is conn:
            del self._conns[key]
        if not self._closed and isinstance(error, BrokerConnectionError):
            # Reconnect after a backoff, so a broker that drops every connection is not
            # hammered with reconnects.
            self._record_failure(conn.address, error)
            if conn.unanswered_at_loss:
                # Requests were lost with it: the broker failed. An idle connection the
                # broker closed (connections.max.idle.ms) is no outage: the next attempt
                # to reconnect tells.
                self.outages.broker_failed(
                    conn.address, conn.node_id, error, asyncio.get_running_loop().time()
                )

    # -- following the cluster ----------------------------------------------------------

    def has_unnamed(self) -> bool:
        """Is a connection (a bootstrap one) still without its broker's node id?"""
        return any(conn.node_id is None for conn in self._conns.values())

    def set_node_id(self, address: Address, node_id: int) -> None:
        """Metadata says ``address`` is broker ``node_id``: name it in later errors."""
        for (addr, _), conn in self._conns.items():
            if addr == address and conn.node_id != node_id:
                conn.node_id = node_id
                if conn.versions is not None:
                    conn.versions = dataclasses.replace(conn.versions, node_id=node_id)
        versions = self._versions.get(address)
        if versions is not None and versions.node_id != node_id:
            self._versions[address] = dataclasses.replace(versions, node_id=node_id)

    def drop(self, addresses: Iterable[Address], reason: str) -> None:
        """Close every connection to ``addresses`` (a broker removed or moved); requests
        on them fail with a retriable ``BrokerConnectionError``."""
        targets = set(addresses)
        for key, conn in list(self._conns.items()):
            if key[0] in targets:
                del self._conns[key]
                conn.close(
                    BrokerConnectionError(
                        f"{conn.describe()}: {reason}",
                        address=str(conn.address),
                        node_id=conn.node_id,
                    )
                )
        for address in targets:
            self._versions.pop(address, None)

    # -- closing ------------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Fail everything pending with ``ClientClosedError`` and close every connection,
        in at most ``timeout`` seconds (connections still open then are aborted)."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._connecting.values())
        self._connecting.clear()
        for task in tasks:
            task.cancel()
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await asyncio.gather(*tasks, return_exceptions=True)
        remaining = max(0.0, deadline - loop.time())
        await asyncio.gather(*(c.wait_closed(remaining) for c in conns))


def _retrieve_outcome(task: asyncio.Task[BrokerConnection]) -> None:
    if not task.cancelled():
        task.exception()
