"""Fault injection for an embedded cluster: ``cluster.faults``.

In the spirit of librdkafka's mock cluster and franz-go's kfake, a test can take a broker
down and up, move a partition leader, queue error codes per API (the next N requests of
that API are answered with them, like ``rd_kafka_mock_push_request_errors``), add latency,
throttle (answers carry a throttle time, as a broker over its quota answers), drop a
connection after a request, and hold responses back until released.

Everything here goes through the interceptor seam of ``BrokerServer.dispatch``; the
cluster installs ``Faults.intercept`` only while some fault is armed, so an idle cluster
pays nothing. ``Faults`` belongs to the cluster's event loop: its plain methods only
change bookkeeping and must run on that loop's thread (``BlockingCluster.faults`` marshals
every call there); ``broker_down``/``broker_up`` are coroutines because listeners start
and stop.

An injected error code is an answer built for the request's own API and version with the
code in every error field (per partition for Produce and Fetch), without running the
handler: a Produce answered NOT_LEADER_OR_FOLLOWER appended nothing, as in the mock
cluster. Read-only APIs (Metadata, ListOffsets, FindCoordinator...) run their handler and
get their error fields overwritten, so the answer keeps brokers and offsets a client reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from types import NoneType, UnionType
from typing import Any, Final, Protocol, Union, cast, get_args, get_origin

from pykaf._kafka_errors import ERRORS_BY_CODE
from pykaf.broker._registry import CloseConnection, RequestContext
from pykaf.broker._server import BrokerServer, CallNext, Interceptor
from pykaf.broker._state import ClusterState
from pykaf.protocol._apis import api_spec
from pykaf.protocol._messages import Payload, response_class

__all__ = ["Faults", "HeldResponses", "error_response", "with_throttle"]

# Request-shaped answers would lose what these APIs' clients read even on an error
# (brokers, offsets, coordinators), and answering them changes nothing: run the handler,
# then overwrite its error codes.
_READ_ONLY_APIS: Final = frozenset({2, 3, 9, 10, 15, 16, 18, 23, 32, 60})
# Fetch's top-level error_code speaks of the fetch session, not of the partitions.
_SESSION_ERROR_APIS: Final = frozenset({1})
PRODUCE_KEY: Final = 0

# How a response list is named in the request it answers (same name first).
_LIST_SOURCES: Final[Mapping[str, tuple[str, ...]]] = {
    "responses": ("topic_data", "topics", "topic_names"),
    "partition_responses": ("partition_data", "partitions"),
    "results": ("topics", "resources"),
    "coordinators": ("coordinator_keys",),
    "partitions": ("partition_indexes",),
}
_SCALAR_SOURCES: Final[Mapping[str, tuple[str, ...]]] = {
    "partition_index": ("partition", "index"),
    "index": ("partition_index", "partition"),
    "partition": ("partition_index", "index"),
    "name": ("topic",),
    "topic": ("name",),
}
# Request values copied into the answer: identities only (names, ids, partition numbers).
_COPIED_INTS: Final = frozenset({"index", "partition_index", "partition"})
# A request list of plain values (topic names, partition numbers) becomes response
# entries with the first of these fields set to the value.
_PRIMITIVE_TARGETS: Final = ("name", "key", "group_id", "partition_index", "topic")
_INT_TYPES: Final = frozenset({"int8", "int16", "int32", "int64", "uint16"})
_MISSING: Final = object()

Key = tuple[int | None, int | None]  # (broker or None: all, api key or None: all)


class _ClusterLike(Protocol):
    @property
    def servers(self) -> tuple[BrokerServer, ...]: ...

    @property
    def state(self) -> ClusterState: ...


def api_key_of(api: int | str) -> int:
    """The key of an API named by key or name (``UnknownApiError`` if there is none)."""
    return api_spec(api).key


def _check_code(code: object) -> int:
    if type(code) is not int or not (code == 0 or code in ERRORS_BY_CODE):
        raise ValueError(f"{code!r} is not a Kafka error code")
    return code


# -- answers carrying an injected error code ----------------------------------------------


def _field_shape(f: dataclasses.Field[Any]) -> tuple[str, type | None, bool]:
    """(kind, nested entity class, optional) of a kio field: kind is "entity",
    "entities", "values" or "value"."""
    tp: Any = f.type
    optional = False
    if get_origin(tp) in (UnionType, Union):
        args = [a for a in get_args(tp) if a is not NoneType]
        optional = len(args) != len(get_args(tp))
        tp = args[0]
    if get_origin(tp) is tuple:
        elem = get_args(tp)[0]
        if dataclasses.is_dataclass(elem):
            return "entities", cast(type, elem), optional
        return "values", None, optional
    if dataclasses.is_dataclass(tp):
        return "entity", cast(type, tp), optional
    return "value", None, optional


def _lookup(source: object, names: Iterable[str]) -> object:
    for name in names:
        if isinstance(source, Mapping):
            if name in source:
                return source[name]
        elif source is not None and hasattr(source, name):
            return getattr(source, name)
    return _MISSING


def _zero(kafka_type: str | None, optional: bool) -> object:
    if kafka_type in _INT_TYPES:
        return -1  # Kafka's "unknown" for the ids, offsets and epochs of an error answer
    if kafka_type in ("string", "bytes", "records", "uuid"):
        return None if optional or kafka_type in ("records", "uuid") else ""
    if kafka_type == "bool":
        return False
    if kafka_type == "float64":
        return 0.0
    return 0  # durations (throttle time), timestamps


def _shaped(cls: type, source: object, code: int, *, top: bool, top_error: bool) -> dict[str, Any]:
    """Plain values for ``cls`` mirroring ``source`` (the request, or one of its
    entries): lists follow the request's lists, identities are copied, every error
    field carries ``code``, everything else is Kafka's "unknown"."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind, nested, optional = _field_shape(f)
        kafka_type = f.metadata.get("kafka_type")
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if kafka_type == "error_code":
            out[f.name] = 0 if top and not top_error else code
        elif kind == "entities":
            assert nested is not None
            items = _lookup(source, (f.name, *_LIST_SOURCES.get(f.name, ())))
            if not isinstance(items, tuple | list):
                if not has_default:
                    out[f.name] = None if optional else []
                continue
            out[f.name] = [_entry(nested, item, code) for item in items]
        elif kind == "entity":
            if not has_default and "tag" not in f.metadata:
                assert nested is not None
                inner = _lookup(source, (f.name,))
                out[f.name] = _shaped(nested, inner, code, top=False, top_error=True)
        elif kind == "values":
            if not has_default:
                out[f.name] = None if optional else []
        else:
            value = _lookup(source, (f.name, *_SCALAR_SOURCES.get(f.name, ())))
            copied = isinstance(value, str | uuid.UUID) or (
                f.name in _COPIED_INTS and type(value) is int
            )
            if copied and value is not _MISSING:
                out[f.name] = value
            elif not has_default:
                out[f.name] = _zero(kafka_type, optional)
    return out


def _entry(cls: type, item: object, code: int) -> dict[str, Any]:
    if dataclasses.is_dataclass(item) or isinstance(item, Mapping):
        return _shaped(cls, item, code, top=False, top_error=True)
    names = {f.name for f in dataclasses.fields(cls)}
    target = next((n for n in _PRIMITIVE_TARGETS if n in names), None)
    return _shaped(cls, {target: item} if target else None, code, top=False, top_error=True)


def _overwritten(entity: Any, code: int, *, top: bool, top_error: bool) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.metadata.get("kafka_type") == "error_code":
            if not top or top_error:
                changes[f.name] = type(value)(code)  # kio's ErrorCode enum
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            changes[f.name] = tuple(_overwritten(v, code, top=False, top_error=True) for v in value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = _overwritten(value, code, top=False, top_error=True)
    return dataclasses.replace(entity, **changes)


def error_response(ctx: RequestContext, request: Any, code: int) -> Payload:
    """The answer to ``request`` with ``code`` in its error fields, built without
    running the handler (the request has no effect)."""
    cls = response_class(ctx.api_key, ctx.api_version)
    top_error = ctx.api_key not in _SESSION_ERROR_APIS
    return ctx.respond(**_shaped(cls, request, code, top=True, top_error=top_error))


def with_throttle(response: Payload, seconds: float) -> Payload:
    """``response`` carrying a throttle time of ``seconds``: kio answers have
    ``throttle_time`` (a timedelta), the hand-encoded Fetch answer ``throttle_time_ms``;
    an answer with neither (ApiVersions v0, SASL) goes unchanged."""
    millis = round(seconds * 1000)
    fields = {f.name for f in dataclasses.fields(response)}
    if "throttle_time" in fields:
        return dataclasses.replace(response, throttle_time=timedelta(milliseconds=millis))
    if "throttle_time_ms" in fields:
        return dataclasses.replace(response, throttle_time_ms=millis)
    return response


def with_error_code(ctx: RequestContext, response: Payload, code: int) -> Payload:
    """``response`` with ``code`` in every error field (see ``error_response``)."""
    top_error = ctx.api_key not in _SESSION_ERROR_APIS
    return _overwritten(response, code, top=True, top_error=top_error)


# -- held responses ------------------------------------------------------------------------


class HeldResponses:
    """Responses of one API (and broker) held back until ``release()``.

    Requests are processed as usual; their responses wait. The loop-side object: use it
    on the cluster's event loop (``BlockingCluster.faults`` hands out a proxy)."""

    def __init__(self, hold_id: int, key: Key, on_release: Callable[[HeldResponses], None]):
        self.hold_id = hold_id
        self.broker, self.api_key = key
        self._on_release = on_release
        self._released = asyncio.Event()
        self._arrived = asyncio.Event()
        self.held = 0  # responses waiting now
        self.total = 0  # responses that were held at some point

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        """Let every held response go, and hold no more."""
        if not self._released.is_set():
            self._released.set()
            self._on_release(self)

    async def wait_held(self, count: int = 1) -> None:
        """Wait until ``count`` responses in all have been held (bound it with a timeout)."""
        while self.total < count:
            await self._arrived.wait()

    async def hold_one(self) -> None:
        """Wait here (one response) until released."""
        self.held += 1
        self.total += 1
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        try:
            await self._released.wait()
        finally:
            self.held -= 1


@dataclasses.dataclass(slots=True)
class _Drop:
    # Mutable on purpose: the count goes down as requests are dropped.
    remaining: int
    processed: bool


# -- the faults of one cluster ---------------------------------------------------------------


class Faults:
    """The fault injection of one ``Cluster`` (see the module doc). Methods that only
    change bookkeeping are plain; ``broker_down``/``broker_up`` are coroutines."""

    def __init__(self, cluster: _ClusterLike, on_change: Callable[[], None]) -> None:
        self._cluster = cluster
        self._on_change = on_change
        self._errors: dict[Key, deque[int]] = {}
        self._latency: dict[Key, float] = {}
        self._throttles: dict[Key, float] = {}
        self._drops: dict[Key, _Drop] = {}
        self._holds: dict[int, HeldResponses] = {}
        self._hold_ids = itertools.count(1)
        # The cluster's own interceptor (``set_interceptor``) runs after the faults.
        self.downstream: Interceptor | None = None

    @property
    def active(self) -> bool:
        """True while any fault is armed (the cluster then routes requests here)."""
        return bool(self._errors or self._latency or self._throttles or self._drops or self._holds)

    # -- brokers and leaders ---------------------------------------------------------------

    def _server(self, node_id: int) -> BrokerServer:
        for server in self._cluster.servers:
            if server.node.node_id == node_id:
                return server
        raise ValueError(f"no broker {node_id} in this cluster")

    async def broker_down(self, node_id: int) -> None:
        """Take a broker down: its leaderships move to live replicas (or to nobody), its
        listener stops and its connections close. Metadata no longer lists it."""
        server = self._server(node_id)
        self._cluster.state.set_broker_up(node_id, False)
        await server.stop()

    async def broker_up(self, node_id: int) -> None:
        """Bring a broker back on its old port; it leads the partitions left leaderless."""
        server = self._server(node_id)
        await server.start()
        self._cluster.state.set_broker_up(node_id, True)

    def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        """Make ``node_id`` (a live replica) the partition's leader, in a new epoch."""
        state = self._cluster.state
        part = state.partition(topic, partition)
        if part is None:
            raise ValueError(f"no partition {topic}-{partition}")
        if node_id not in part.replicas:
            raise ValueError(f"broker {node_id} is not a replica of {topic}-{partition}")
        if not state.brokers[node_id].up:
            raise ValueError(f"broker {node_id} is down")
        state.move_leader(part, node_id)

    # -- request faults -----------------------------------------------------------------------

    def push_errors(
        self, api: int | str, codes: int | Iterable[int], *, broker: int | None = None
    ) -> None:
        """The next requests of ``api`` (to ``broker``, or to any) are answered with
        these codes, one per request, in order. 0 lets one request through."""
        key = (broker, api_key_of(api))
        values = [_check_code(c) for c in ([codes] if isinstance(codes, int) else codes)]
        if values:
            self._errors.setdefault(key, deque()).extend(values)
            self._on_change()

    def set_latency(
        self, seconds: float, *, broker: int | None = None, api: int | str | None = None
    ) -> None:
        """Delay every request (of ``api``, to ``broker``) by ``seconds`` before it is
        handled; 0 removes that delay. The most specific setting applies."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        key = (broker, None if api is None else api_key_of(api))
        if seconds:
            self._latency[key] = float(seconds)
        else:
            self._latency.pop(key, None)
        self._on_change()

    def set_throttle(
        self, seconds: float, *, broker: int | None = None, api: int | str | None = None
    ) -> None:
        """Answer every request (of ``api``, to ``broker``) with a throttle time of
        ``seconds`` (whole milliseconds on the wire), as a broker does to a client over its
        quota; 0 removes it. The most specific setting applies. Only the answer says so:
        the connection is not muted (a real broker mutes it for that long, KIP-219)."""
        if not 0 <= seconds <= (2**31 - 1) / 1000:
            raise ValueError("a throttle time is 0 to 2147483.647 seconds (int32 ms)")
        key = (broker, None if api is None else api_key_of(api))
        if seconds:
            self._throttles[key] = float(seconds)
        else:
            self._throttles.pop(key, None)
        self._on_change()

    def drop_connection_after(
        self,
        api: int | str,
        *,
        count: int = 1,
        broker: int | None = None,
        before_response: bool = True,
    ) -> None:
        """Close the connection of the next ``count`` requests of ``api`` once received.

        ``before_response=True``: the request is processed first (a Produce is appended)
        and the connection closes before the answer leaves, so the client cannot know.
        ``False``: the request is dropped unprocessed."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._drops[(broker, api_key_of(api))] = _Drop(remaining=count, processed=before_response)
        self._on_change()

    def hold_responses(self, api: int | str, *, broker: int | None = None) -> HeldResponses:
        """Hold the responses of ``api`` back until the returned handle is released."""
        hold = HeldResponses(next(self._hold_ids), (broker, api_key_of(api)), self._released)
        self._holds[hold.hold_id] = hold
        self._on_change()
        return hold

    def hold(self, hold_id: int) -> HeldResponses:
        return self._holds[hold_id]

    def _released(self, hold: HeldResponses) -> None:
        if self._holds.pop(hold.hold_id, None) is not None:
            self._on_change()

    def clear(self) -> None:
        """Remove every armed fault and release every held response (brokers that are
        down stay down: bring them up with ``broker_up``)."""
        holds = list(self._holds.values())
        self._errors.clear()
        self._latency.clear()
        self._throttles.clear()
        self._drops.clear()
        self._holds.clear()
        for hold in holds:
            hold.release()
        self._on_change()

    def pending_errors(self, api: int | str | None = None, *, broker: int | None = None) -> int:
        """How many queued error codes are left (for ``api``/``broker``, or all)."""
        key = None if api is None else api_key_of(api)
        return sum(
            len(codes)
            for (b, k), codes in self._errors.items()
            if (key is None or k == key) and (broker is None or b == broker)
        )

    def summary(self) -> dict[str, Any]:
        """What is armed, as JSON-friendly values (the control endpoint's status)."""

        def name(key: Key) -> str:
            broker, api = key
            api_name = "*" if api is None else api_spec(api).name
            return f"{api_name}@{'*' if broker is None else broker}"

        return {
            "errors": {name(k): list(v) for k, v in self._errors.items()},
            "latency": {name(k): v for k, v in self._latency.items()},
            "throttle": {name(k): v for k, v in self._throttles.items()},
            "drops": {
                name(k): {"remaining": d.remaining, "before_response": d.processed}
                for k, d in self._drops.items()
            },
            "holds": {
                str(h.hold_id): {"api": name((h.broker, h.api_key)), "held": h.held}
                for h in self._holds.values()
            },
        }

    # -- the interceptor --------------------------------------------------------------------

    @staticmethod
    def _most_specific(settings: dict[Key, float], broker: int, api: int) -> float:
        for key in ((broker, api), (broker, None), (None, api), (None, None)):
            seconds = settings.get(key)
            if seconds is not None:
                return seconds
        return 0.0

    def _take_error(self, broker: int, api: int) -> int | None:
        for key in ((broker, api), (None, api)):
            codes = self._errors.get(key)
            if codes:
                code = codes.popleft()
                if not codes:
                    del self._errors[key]
                    self._on_change()
                return code
        return None

    def _take_drop(self, broker: int, api: int) -> _Drop | None:
        for key in ((broker, api), (None, api)):
            drop = self._drops.get(key)
            if drop is not None:
                drop.remaining -= 1
                if drop.remaining <= 0:
                    del self._drops[key]
                    self._on_change()
                return drop
        return None

    def _hold_for(self, broker: int, api: int) -> HeldResponses | None:
        for hold in self._holds.values():
            if hold.api_key == api and hold.broker in (None, broker):
                return hold
        return None

    async def _next(self, ctx: RequestContext, request: Payload, call_next: CallNext) -> Any:
        downstream = self.downstream
        if downstream is not None:
            return await downstream(ctx, request, call_next)
        return await call_next(ctx, request)

    async def intercept(
        self, ctx: RequestContext, request: Payload, call_next: CallNext
    ) -> Payload | None:
        """The interceptor the cluster installs while a fault is armed."""
        broker, api = ctx.node_id, ctx.api_key
        delay = self._most_specific(self._latency, broker, api)
        if delay:
            await asyncio.sleep(delay)
        drop = self._take_drop(broker, api)
        if drop is not None:
            if drop.processed:
                await self._next(ctx, request, call_next)
            raise CloseConnection(
                f"fault injection: connection dropped after {api_spec(api).name}"
                + (" (processed, unanswered)" if drop.processed else " (not processed)")
            )
        code = self._take_error(broker, api)
        response: Payload | None
        if not code:  # none queued, or a queued 0: answer normally
            response = await self._next(ctx, request, call_next)
        elif api in _READ_ONLY_APIS:
            response = await self._next(ctx, request, call_next)
            if response is not None:
                response = with_error_code(ctx, response, code)
        else:
            if api == PRODUCE_KEY and getattr(request, "acks", 1) == 0:
                # Kafka's way to fail an acks=0 produce: there is no answer to carry it.
                raise CloseConnection(f"fault injection: error {code} on an acks=0 produce")
            response = error_response(ctx, request, code)
        throttle = self._most_specific(self._throttles, broker, api)
        if throttle and response is not None:
            response = with_throttle(response, throttle)
        hold = self._hold_for(broker, api)
        if hold is not None:
            await hold.hold_one()
        return response
