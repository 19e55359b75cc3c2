"""``AsyncClient``: any Kafka request to any broker, and the cluster view behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from pykaf._client._address import parse_bootstrap
from pykaf._client._cluster import ClusterView
from pykaf._client._ctrl_c import defer_in_main_thread, release_handler
from pykaf._client._fork import refusal, watch
from pykaf._client._loop_bound import elsewhere
from pykaf._client._metadata import ClusterMetadata
from pykaf._client._pool import ConnectionPool
from pykaf._client._settings import ClientSettings
from pykaf._client._targets import Purpose, Target, check_purpose, check_target
from pykaf._client._validate import settings_or_options
from pykaf._client._versions import BrokerApiVersions
from pykaf._errors import ClientClosedError
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._client_stats import ClientStats
from pykaf._telemetry._stats import Stats
from pykaf.protocol._messages import Payload, payload_api

__all__ = ["AsyncClient"]

_T = TypeVar("_T")


class AsyncClient:
    """A connection to a Kafka cluster, for raw requests and metadata.

    ``bootstrap`` is ``"host:port,host:port"`` or a list of ``"host:port"`` (any one that
    answers is enough). Nothing connects before the first call. Settings are keyword
    options (see ``ClientSettings``), or ``settings=ClientSettings(...)``.

    ``async with AsyncClient(...) as client:`` closes it on exit; ``close()`` is bounded by
    ``close_timeout`` and fails every pending call with ``ClientClosedError``.

    ``events``: the client's telemetry bus (``pykaf.events``): connections opened, failed
    and closed, requests answered, throttling, metadata refreshes, leader moves. The
    ``on_event=`` setting subscribes at construction; ``events.subscribe`` any time.
    Cluster downtime events are the producer's (``on_cluster_outage`` feeds its custody,
    which knows what was saved meanwhile); this client emits none.
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        settings: ClientSettings | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings_or_options(settings, options, ClientSettings.from_options)
        self.bootstrap = parse_bootstrap(bootstrap)
        self.events = EventBus(self.settings.on_event)
        self._stats = ClientStats(
            self.events,
            self.settings.client_id,
            interval=self.settings.stats_interval,
            callback=self.settings.on_stats,
        )
        self._pool = ConnectionPool(self.settings, events=self.events)
        self._cluster = ClusterView(self.bootstrap, self._pool, self.settings, events=self.events)
        # Tasks inside a call (and how many calls deep), for close() to stop them.
        self._callers: dict[asyncio.Task[Any], int] = {}
        self._cancelled_by_close: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._closed = False
        self._ctrl_c_asked = False  # whether its first call asked for pykaf's SIGINT handler
        self._forked_from = 0  # in a forked child: the pid of the process that forked it
        # The loop of its first call, which it belongs to (``_loop_bound``), and how a
        # call from elsewhere names it: the client of an ``AsyncAdmin``, say, its owner.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.kind = ("AsyncClient", "pykaf.Client")
        watch(self)
        self._defers_ctrl_c = False

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<AsyncClient {','.join(map(str, self.bootstrap))} {state}>"

    def on_cluster_outage(self, listener: Callable[[bool], object]) -> None:
        """``listener(down)`` hears every cluster outage episode begin (True: no broker
        can be reached) and end (False), on the client's loop."""
        self._pool.outages.on_cluster.append(listener)

    @property
    def closed(self) -> bool:
        return self._closing

    def stats(self) -> Stats:
        """This client's statistics now, a plain ``pykaf.telemetry.Stats`` value (counters,
        gauges, per broker, per partition, latency histograms), built from its events.
        Counting starts at the first call, or with the client when ``stats_interval`` is
        set; with neither, nothing listens and nothing is counted."""
        return self._stats.snapshot()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- operations ---------------------------------------------------------------------

    async def request(
        self,
        request: Payload,
        *,
        to: Target = "any",
        purpose: Purpose = "other",
        timeout: float | None = None,
    ) -> Any:
        """Send a kio request entity at its class's version; return the decoded response.

        ``to``: "any", a node id, ``Leader(topic, partition)``, ``Coordinator(key, type=)``
        or "controller". ``purpose``: the connection to use ("produce", "fetch", "group",
        "other"), so a long poll never delays a produce. ``timeout`` (seconds, default
        ``request_timeout``) bounds everything: finding the broker, connecting, the answer.

        Error codes inside the response are returned as they are, not raised. Raised:
        ``UnsupportedVersionError`` if the broker does not speak that version,
        ``BrokerConnectionError`` (retriable) if the broker cannot be reached,
        ``KafkaTimeoutError``, ``ClientClosedError``, or a ``BrokerError`` from resolving
        the target (unknown topic, no leader, no coordinator).
        """
        target = check_target(to)
        purpose = check_purpose(purpose)
        payload_api(request)  # refuse a non-request before anything connects
        return await self._run(self._request(request, target, purpose, timeout))

    async def _request(
        self, request: Payload, to: Target, purpose: Purpose, timeout: float | None
    ) -> Any:
        deadline = self._deadline(timeout)
        api_key, _ = payload_api(request)
        try:
            conn = self._cluster.ready_connection(to, purpose)
            if conn is None:
                conn = await self._cluster.connection(to, purpose, deadline)
            response = await conn.send(request, deadline=deadline)
        except BaseException as exc:
            self._cluster.failed(to, exc)
            raise
        self._cluster.observe(to, api_key, response)
        return response

    async def metadata(
        self, topics: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> ClusterMetadata:
        """Fresh metadata for ``topics`` (None: every topic in the cluster); the cache is
        updated with it. Topics that do not exist come back with their error code."""
        wanted: frozenset[str] | None = None
        if topics is not None:
            if isinstance(topics, str):
                raise TypeError("topics is a list of names; wrap a single name in a list")
            wanted = frozenset(topics)
        return await self._run(self._cluster.refresh(wanted, self._deadline(timeout)))

    async def api_versions(
        self, node: Target | None = None, *, timeout: float | None = None
    ) -> BrokerApiVersions:
        """The API versions of the broker ``node`` names (a node id, ``Leader(...)``,
        ``Coordinator(...)``, ``"controller"``; None: any broker), as negotiated on
        connect."""
        target: Target = "any" if node is None else check_target(node)
        return await self._run(self._api_versions(target, self._deadline(timeout)))

    async def _api_versions(self, to: Target, deadline: float) -> BrokerApiVersions:
        conn = await self._cluster.connection(to, "other", deadline)
        assert conn.versions is not None  # set by the handshake, before any use
        return conn.versions

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            timeout = self.settings.request_timeout
        elif not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        return asyncio.get_running_loop().time() + timeout

    async def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        # Runs in the caller's own task (no task per call: cheaper, and the caller's
        # context and traceback stay whole). close() cancels the callers still inside a
        # call; that cancellation, and only that one, is turned into ClientClosedError.
        if self._closing:
            coro.close()
            if self._forked_from:
                raise refusal("client", self._forked_from)
            raise ClientClosedError("the client is closed")
        loop = asyncio._get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                coro.close()
                raise elsewhere(*self.kind, self._loop)
            self._loop = loop  # bound at its first call
        if not self._ctrl_c_asked:
            self.hold_ctrl_c()
        task = asyncio.current_task()
        if task is None:  # not in a task (a bare callback): nothing close() could cancel
            return await coro
        self._callers[task] = self._callers.get(task, 0) + 1
        try:
            return await coro
        except asyncio.CancelledError:
            if task in self._cancelled_by_close:
                self._cancelled_by_close.discard(task)
                if task.uncancel() == 0:
                    raise ClientClosedError("the client was closed during the call") from None
            raise
        finally:
            count = self._callers.pop(task) - 1
            if count:
                self._callers[task] = count
            if not self._callers and self._idle is not None:
                self._idle.set()

    def hold_ctrl_c(self) -> None:
        """On a loop in the main thread under Python's own SIGINT handler, install pykaf's
        until this client is closed (once; its first call does it, the producer and the
        consumer at their start): a Ctrl-C then waits until the loop waits for I/O
        (``_ctrl_c``). Where it landed before: a request's bookkeeping (a connection's
        in-flight slot taken for good), the producer's batches and tasks, the
        consumer's fetch state."""
        if not self._ctrl_c_asked:
            self._ctrl_c_asked = True
            self._defers_ctrl_c = defer_in_main_thread()

    # -- closing ------------------------------------------------------------------------

    def forked(self, parent_pid: int) -> None:
        # In a forked child (``_fork``): its connections are the parent's sockets, which
        # the child must not write; calls refuse, close() has nothing to do.
        self._forked_from = parent_pid
        self._closing = True

    async def close(self) -> None:
        """Close every connection; pending calls fail with ``ClientClosedError``. Takes at
        most ``close_timeout`` seconds, whatever state the brokers are in."""
        if self._closing:
            return
        self._closing = True
        if self._defers_ctrl_c:
            self._defers_ctrl_c = False
            release_handler()
        self._stats.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.close_timeout
        current = asyncio.current_task()
        # Calls waiting anywhere (an answer, a backoff, a connect, a refresh) are
        # cancelled; _run turns that into ClientClosedError. Then the connections close.
        for task in self._callers:
            if task is not current and not task.done():
                self._cancelled_by_close.add(task)
                task.cancel()
        await self._pool.close(self.settings.close_timeout * 0.8)
        await self._cluster.close()
        waiting = [t for t in self._callers if t is not current]
        if waiting:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._idle.wait()
        self._closed = True
