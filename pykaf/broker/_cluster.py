"""Running an embedded cluster: ``Cluster`` (asyncio) and ``BlockingCluster`` (a thread).

``async with Cluster(brokers=3) as cluster:`` starts N listeners on 127.0.0.1 sharing one
``ClusterState`` in the current event loop. Blocking clients (confluent-kafka, kafka-python)
must not run in that loop's thread, or they would wait for a broker that cannot run:
use ``BlockingCluster`` (or ``Cluster.run_in_thread()``), which runs the loop in a daemon
thread, for synchronous tests and scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pykaf.broker._faults import Faults, HeldResponses, api_key_of
from pykaf.broker._groups import group_coordinator
from pykaf.broker._oauth import OAuthValidator
from pykaf.broker._sasl_auth import DEFAULT_SASL_MECHANISMS, BrokerUsers
from pykaf.broker._segments import DEFAULT_SEGMENT_BYTES
from pykaf.broker._server import (
    DEFAULT_CONNECTIONS_MAX_IDLE,
    DEFAULT_QUEUED_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_RECEIVE_TIMEOUT,
    BrokerServer,
    Interceptor,
    check_read_limits,
)
from pykaf.broker._state import ClusterState, TopicState
from pykaf.broker._tls import listener_contexts, security_protocol_name
from pykaf.protocol._framing import DEFAULT_MAX_FRAME_SIZE

__all__ = ["BlockingCluster", "BlockingFaults", "BlockingHeldResponses", "BrokerAddress", "Cluster"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    """Where one broker of the cluster listens."""

    node_id: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Cluster:
    """N Kafka-compatible brokers in this process and event loop (see the module doc).

    ``port=0`` lets every broker pick a free port; ``port=N`` binds N, N+1, ... Node ids
    are 1..N. ``data_dir`` makes the logs and metadata survive a restart (a crash of
    the process loses nothing acknowledged); ``fsync=True`` also makes every append
    durable against an OS crash or power loss, at the cost of an fsync per write.

    Per broker, as Kafka's settings of the same names: ``queued_max_request_bytes`` caps
    the bytes reserved by partially received requests (connections needing more are not
    read until space frees), ``connections_max_idle`` closes a connection silent that many
    seconds, and ``request_receive_timeout`` closes one whose started request frame has not
    completed in that many seconds.

    ``security_protocol="SSL"`` serves TLS with ``ssl_certfile`` and ``ssl_keyfile`` (PEM;
    ``pykaf certs DIR`` makes a throwaway set); with ``ssl_cafile`` every client must show
    a certificate signed by that CA (mutual TLS). Advertised addresses stay the same.
    ``extra_listeners=["PLAINTEXT"]`` (or ``[("PLAINTEXT", first_port)]``) adds a listener
    of that protocol beside the main one on every broker: a client is told the addresses
    of the listener it came in on (``bootstrap_for("PLAINTEXT")``), as Kafka does.

    ``security_protocol="SASL_SSL"`` (TLS as above) or ``"SASL_PLAINTEXT"`` authenticates
    every connection as one of ``users`` (name -> password) with one of
    ``sasl_mechanisms`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; default all three). The
    passwords are turned into salted SCRAM credentials here and not kept. Extra listeners
    may be SASL ones too. ``"OAUTHBEARER"`` in ``sasl_mechanisms`` accepts tokens that
    ``oauth_validator(token, extensions)`` turns into a principal (or ``(principal,
    expires_at)``: the session then ends with the token, KIP-368); by default Kafka's
    unsecured JWT validator, for tests (``pykaf.broker.unsecured_token("alice")``).
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        port: int = 0,
        data_dir: str | Path | None = None,
        auto_create_topics: bool = True,
        default_partitions: int = 1,
        default_replication_factor: int | None = None,
        host: str = "127.0.0.1",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = False,
        queued_max_request_bytes: int = DEFAULT_QUEUED_MAX_REQUEST_BYTES,
        connections_max_idle: float = DEFAULT_CONNECTIONS_MAX_IDLE,
        request_receive_timeout: float = DEFAULT_REQUEST_RECEIVE_TIMEOUT,
        security_protocol: str = "PLAINTEXT",
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
        ssl_cafile: str | Path | None = None,
        extra_listeners: Sequence[str | tuple[str, int]] = (),
        sasl_mechanisms: Sequence[str] = DEFAULT_SASL_MECHANISMS,
        users: Mapping[str, str] | None = None,
        oauth_validator: OAuthValidator | None = None,
    ) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        if not 0 <= port <= 65535 or (port and port + brokers - 1 > 65535):
            raise ValueError(f"port {port} with {brokers} brokers leaves the 0..65535 range")
        self._count = brokers
        self._port = port
        self._host = host
        self._max_frame_size = max_frame_size
        check_read_limits(queued_max_request_bytes, connections_max_idle, request_receive_timeout)
        self._read_limits: dict[str, Any] = {
            "queued_max_request_bytes": queued_max_request_bytes,
            "connections_max_idle": connections_max_idle,
            "request_receive_timeout": request_receive_timeout,
        }
        extra = [(e, 0) if isinstance(e, str) else (e[0], e[1]) for e in extra_listeners]
        for name, first in extra:
            if type(first) is not int or not 0 <= first <= 65535 - brokers + 1:
                raise ValueError(f"listener {name}: port {first!r} with {brokers} brokers")
        self.security_protocol = security_protocol_name(security_protocol)
        self._extra_ports = {security_protocol_name(name): first for name, first in extra}
        sasl = [n for n in (self.security_protocol, *self._extra_ports) if n.startswith("SASL_")]
        password_mechanisms = [m for m in sasl_mechanisms if str(m).upper() != "OAUTHBEARER"]
        if sasl and not users and password_mechanisms:
            raise ValueError(
                f"security protocol {sasl[0]} needs users: users={{'alice': 'secret'}}"
                " (--user alice:secret), or sasl_mechanisms=['OAUTHBEARER'] alone"
            )
        if (users or oauth_validator) and not sasl:
            raise ValueError(
                "users (or an oauth_validator) given without a SASL listener: use"
                " security_protocol 'SASL_SSL' or 'SASL_PLAINTEXT'"
            )
        # Salted now; the passwords go out of scope with the caller's mapping.
        #: The users of the SASL listeners (names and mechanisms; no password is kept).
        self.users = (
            BrokerUsers(users, sasl_mechanisms, oauth_validator=oauth_validator) if sasl else None
        )
        self._read_limits["users"] = self.users
        # Built once (the files are read now: a bad one is refused here).
        main_tls, *extra_tls = listener_contexts(
            [self.security_protocol, *self._extra_ports],
            certfile=ssl_certfile,
            keyfile=ssl_keyfile,
            cafile=ssl_cafile,
        )
        self._read_limits["security_protocol"] = self.security_protocol
        self._read_limits["tls"] = main_tls
        self._read_limits["extra_listeners"] = dict(zip(self._extra_ports, extra_tls, strict=True))
        self._state_args: dict[str, Any] = {
            "auto_create_topics": auto_create_topics,
            "default_partitions": default_partitions,
            "default_replication_factor": default_replication_factor,
            "data_dir": data_dir,
            "segment_bytes": segment_bytes,
            "fsync": fsync,
        }
        self._state: ClusterState | None = None
        self._servers: list[BrokerServer] = []
        self._interceptor: Interceptor | None = None
        self.faults = Faults(self, self._install_interceptors)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        if self._servers:
            return self
        state = ClusterState(
            node_ids=range(1, self._count + 1), host=self._host, **self._state_args
        )
        servers = [
            BrokerServer(node, state, max_frame_size=self._max_frame_size, **self._read_limits)
            for node in state.brokers.values()
        ]
        try:
            if state.data_dir is not None:
                # Read the stored offsets now: damage refuses the start, not a request.
                group_coordinator(state)
            for index, server in enumerate(servers):
                server.interceptor = self._effective_interceptor()
                for name, first in self._extra_ports.items():
                    server.node.listener_ports[name] = first + index if first else 0
                await server.start(self._port + index if self._port else 0)
        except BaseException:
            for server in servers:
                await server.stop()
            state.close()
            raise
        self._state = state
        self._servers = servers
        return self

    async def stop(self) -> None:
        """Stop every listener and close the logs (flushing the metadata document)."""
        servers, self._servers = self._servers, []
        for server in servers:
            await server.stop()
        if self._state is not None:
            self._state.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- what tests and tools use -------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise RuntimeError("the cluster is not running (use start() or async with)")
        return self._state

    @property
    def servers(self) -> tuple[BrokerServer, ...]:
        """The listeners, one per broker (the fault-injection seam lives on them)."""
        return tuple(self._servers)

    @property
    def brokers(self) -> tuple[BrokerAddress, ...]:
        return tuple(
            BrokerAddress(node_id=s.node.node_id, host=s.node.host, port=s.node.port)
            for s in self._servers
        )

    @property
    def bootstrap(self) -> str:
        """``host:port,host:port,...`` for ``bootstrap.servers``."""
        return ",".join(str(b) for b in self.brokers)

    @property
    def listeners(self) -> tuple[str, ...]:
        """The security protocols listened with: the main listener's first."""
        return (self.security_protocol, *self._extra_ports)

    def bootstrap_for(self, listener: str) -> str:
        """``bootstrap`` of the listener of this security protocol (``listeners``)."""
        name = listener.upper()
        if name == self.security_protocol:
            return self.bootstrap
        if name not in self._extra_ports:
            raise ValueError(f"no {listener!r} listener; listeners: {', '.join(self.listeners)}")
        return ",".join(f"{s.node.host}:{s.node.listener_ports[name]}" for s in self._servers)

    def set_interceptor(self, interceptor: Interceptor | None) -> None:
        """Route every request of every broker through ``interceptor`` (None: remove it).

        See ``BrokerServer.dispatch``: ``await interceptor(ctx, request, call_next)``.
        """
        self._interceptor = interceptor
        self._install_interceptors()

    def _effective_interceptor(self) -> Interceptor | None:
        # The faults sit in front of the caller's interceptor, and only while armed.
        self.faults.downstream = self._interceptor
        return self.faults.intercept if self.faults.active else self._interceptor

    def _install_interceptors(self) -> None:
        interceptor = self._effective_interceptor()
        for server in self._servers:
            server.interceptor = interceptor

    async def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        replication_factor: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> TopicState:
        """Create a topic directly (no request). Raises the Kafka error (``BrokerError``)."""
        return self.state.create_topic(name, partitions, replication_factor, configs)

    async def delete_topic(self, name: str) -> None:
        self.state.delete_topic(name)

    def run_in_thread(self, *, timeout: float = 10.0) -> BlockingCluster:
        """Start this cluster in a private event loop in a daemon thread."""
        return BlockingCluster._wrap(self).start(timeout=timeout)


class BlockingCluster:
    """A ``Cluster`` whose event loop runs in a daemon thread, for blocking code.

    ``with BlockingCluster(brokers=3) as cluster: ...`` (same arguments as ``Cluster``).
    ``close()`` is bounded by its timeout even if the loop is stuck. The cluster state
    belongs to the loop's thread: read it for assertions, change it through ``call()``.
    """

    def __init__(self, brokers: int = 3, **kwargs: Any) -> None:
        self.cluster = Cluster(brokers, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def _wrap(cls, cluster: Cluster) -> BlockingCluster:
        self = cls.__new__(cls)
        self.cluster = cluster
        self._loop = None
        self._thread = None
        return self

    def start(self, *, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            # Cancel whatever is left (connection tasks of a stop that timed out).
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

        thread = threading.Thread(target=run, name="pykaf-broker", daemon=True)
        thread.start()
        ready.wait(timeout)
        self._loop, self._thread = loop, thread
        try:
            self.run(self.cluster.start(), timeout=timeout)
        except BaseException:
            self.close()
            raise
        return self

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = 30.0) -> T:
        """Run ``coro`` in the cluster's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the cluster is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call(self, func: Callable[[], Awaitable[T] | T], *, timeout: float | None = 30.0) -> T:
        """Call ``func`` in the cluster's loop (state is owned by that loop)."""

        async def call() -> T:
            result = func()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                return await result  # type: ignore[no-any-return]
            return result  # type: ignore[return-value]

        return self.run(call(), timeout=timeout)

    def close(self, *, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                self.run(self.cluster.stop(), timeout=timeout)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def state(self) -> ClusterState:
        return self.cluster.state

    @property
    def brokers(self) -> tuple[BrokerAddress, ...]:
        return self.cluster.brokers

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def bootstrap_for(self, listener: str) -> str:
        return self.cluster.bootstrap_for(listener)

    def set_interceptor(self, interceptor: Interceptor | None) -> None:
        self.call(lambda: self.cluster.set_interceptor(interceptor))

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        replication_factor: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> TopicState:
        return self.run(
            self.cluster.create_topic(
                name, partitions, replication_factor=replication_factor, configs=configs
            )
        )

    def delete_topic(self, name: str) -> None:
        self.run(self.cluster.delete_topic(name))

    @property
    def faults(self) -> BlockingFaults:
        """``cluster.faults`` for blocking code: every call runs in the cluster's loop."""
        return BlockingFaults(self)


class BlockingHeldResponses:
    """A ``HeldResponses`` handle usable from any thread."""

    def __init__(self, owner: BlockingCluster, hold: HeldResponses) -> None:
        self._owner = owner
        self._hold = hold

    @property
    def hold_id(self) -> int:
        return self._hold.hold_id

    @property
    def held(self) -> int:
        """Responses waiting now."""
        return self._owner.call(lambda: self._hold.held)

    @property
    def total(self) -> int:
        """Responses held so far, released or not."""
        return self._owner.call(lambda: self._hold.total)

    def wait_held(self, count: int = 1, *, timeout: float = 10.0) -> None:
        """Block until ``count`` responses in all were held (``TimeoutError`` after
        ``timeout`` seconds)."""
        self._owner.run(asyncio.wait_for(self._hold.wait_held(count), timeout), timeout=None)

    def release(self) -> None:
        self._owner.call(self._hold.release)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class BlockingFaults:
    """``Faults`` of a ``BlockingCluster``, callable from any thread (see ``Faults``)."""

    def __init__(self, owner: BlockingCluster) -> None:
        self._owner = owner

    @property
    def _faults(self) -> Faults:
        return self._owner.cluster.faults

    def broker_down(self, node_id: int) -> None:
        self._owner.run(self._faults.broker_down(node_id))

    def broker_up(self, node_id: int) -> None:
        self._owner.run(self._faults.broker_up(node_id))

    def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        self._owner.call(lambda: self._faults.move_leader(topic, partition, node_id))

    def push_errors(
        self, api: int | str, codes: int | Iterable[int], *, broker: int | None = None
    ) -> None:
        api_key_of(api)  # raise the caller's mistake in the caller's thread
        codes = [codes] if isinstance(codes, int) else list(codes)
        self._owner.call(lambda: self._faults.push_errors(api, codes, broker=broker))

    def set_latency(
        self, seconds: float, *, broker: int | None = None, api: int | str | None = None
    ) -> None:
        self._owner.call(lambda: self._faults.set_latency(seconds, broker=broker, api=api))

    def set_throttle(
        self, seconds: float, *, broker: int | None = None, api: int | str | None = None
    ) -> None:
        self._owner.call(lambda: self._faults.set_throttle(seconds, broker=broker, api=api))

    def drop_connection_after(
        self,
        api: int | str,
        *,
        count: int = 1,
        broker: int | None = None,
        before_response: bool = True,
    ) -> None:
        self._owner.call(
            lambda: self._faults.drop_connection_after(
                api, count=count, broker=broker, before_response=before_response
            )
        )

    def hold_responses(self, api: int | str, *, broker: int | None = None) -> BlockingHeldResponses:
        hold = self._owner.call(lambda: self._faults.hold_responses(api, broker=broker))
        return BlockingHeldResponses(self._owner, hold)

    def clear(self) -> None:
        self._owner.call(self._faults.clear)

    def pending_errors(self, api: int | str | None = None, *, broker: int | None = None) -> int:
        return self._owner.call(lambda: self._faults.pending_errors(api, broker=broker))

    def summary(self) -> dict[str, Any]:
        return self._owner.call(self._faults.summary)
