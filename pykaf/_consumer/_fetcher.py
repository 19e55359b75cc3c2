"""The fetcher: keeps one Fetch in flight per broker, ahead of the application.

A single task plans; small tasks do the I/O. Each round the planner asks ``FetchState``
which partitions may be fetched (positioned, not paused, under the prefetch bounds),
groups them by leader (from the client's metadata cache, no I/O), and starts one fetch
per broker that has none in flight. Answers go into ``FetchState`` as bytes (decoded when
handed out) and the application is woken. Partitions waiting for a position get one
ListOffsets per leader; partitions whose leader is unknown, moved or unreachable wait a
backoff while the metadata is refreshed, then are fetched from the same offset at the new
leader: nothing skipped, nothing repeated.

Telemetry: one ``FetchDone`` per answer while someone listens (``_fetch_events``); with
nobody listening an answer costs one attribute test, and nothing is per record.

Versions: Fetch and ListOffsets at the highest version both sides speak (Fetch v13+ names
topics by id, so a topic without an id in the metadata caps the request at v12).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._stale import METADATA_STALE_CODES
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._fetch_events import emit_fetch_done
from pykaf._consumer._fetch_state import LATEST, FetchState
from pykaf._consumer._health import Health
from pykaf._consumer._offsets import list_offsets
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    PykafError,
)
from pykaf._kafka_errors import UnknownTopicOrPartitionError
from pykaf.protocol._messages import build_request

__all__ = ["Fetcher"]

logger = logging.getLogger("pykaf.consumer")

_FETCH: Final = 1
_LIST_OFFSETS: Final = 2
_FIRST_TOPIC_ID_FETCH: Final = 13
_NO_EPOCH: Final = -1
_UNKNOWN_TOPIC_OR_PARTITION: Final = 3
_UNKNOWN_TOPIC_ID: Final = 100
_OFFSET_OUT_OF_RANGE: Final = 1
# Retriable partition errors after which the leader may have moved: the metadata is asked
# again too (as the Java client does). REPLICA_NOT_AVAILABLE, OFFSET_NOT_AVAILABLE.
_MOVED_MAYBE: Final = frozenset({9, 78})
# Retriable to Kafka, but a fetch of the same offset would meet it again: raised, so the
# application can seek past it (as the Java client raises it).
_CORRUPT_MESSAGE: Final = 2
_READ_SIZE: Final = 8 * 1024 * 1024  # bytes per socket read on fetch connections
# "Do not wait" as a fetch max_wait: 1 ms, not 0, which tansu answers with no partition.
_NO_WAIT: Final = 0.001


class Fetcher:
    """Fetches for ``state`` in the background (``start``/``close``); see the module doc.

    ``on_data`` is called (in the loop) whenever something new can be handed out: records,
    an error, an end of log reached, a position resolved.
    """

    def __init__(
        self,
        client: AsyncClient,
        settings: ConsumerSettings,
        state: FetchState,
        *,
        on_data: Callable[[], None],
        health: Health | None = None,
    ) -> None:
        self._client = client
        self._health = health or Health(logger, None)
        # The cluster view's cache answers "who leads this partition" without I/O.
        self._cache = client._cluster.cache
        # Telemetry: one ``active`` test per fetch answer (the cost rule), no more.
        self._events = client.events
        self._settings = settings
        self._state = state
        self._on_data = on_data
        self._backoff = settings.client.retry_backoff
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._helpers: set[asyncio.Task[None]] = set()
        self._versions: dict[int, BrokerApiVersions] = {}
        self._tuned: set[int] = set()
        self._refresh_wanted: set[str] = set()
        # Partitions whose fetches a broker answers with a retriable error (an episode
        # each, logged once at WARNING; retried after the backoff, never raised).
        self._partitions_failing: set[TopicPartition] = set()
        self._refresh_task: asyncio.Task[None] | None = None
        self._last_refresh = -1e9
        self._closed = False
        #: An error that stopped the fetcher for good (raised to the application).
        self.failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None or self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._state.on_space = self.wake
        self._task = self._loop.create_task(self._run(), name="pykaf-fetcher")

    def wake(self) -> None:
        """Plan again soon; callable from any thread."""
        loop, event = self._loop, self._wakeup
        if loop is None or event is None or self._closed:
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(event.set)

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._task, self._refresh_task) if t is not None]
        tasks += list(self._fetches.values()) + list(self._helpers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- planning -----------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        assert self._loop is not None
        loop, wakeup, state = self._loop, self._wakeup, self._state
        try:
            while True:
                wakeup.clear()
                now = loop.time()
                due = state.resets_due(now)
                if due:
                    self._spawn(self._resolve_resets(due))
                fetchable = state.fetchable(now)
                if fetchable:
                    self._start_fetches(fetchable, now)
                wait = state.next_retry(now)
                timeout = None if wait is None else max(0.0, wait - now)
                if timeout is None:
                    await wakeup.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await wakeup.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: tell the application instead of hanging
            # Kept here, not raised: poll raises it, and a task exception nobody
            # retrieves would be printed by asyncio at exit.
            self.failure = exc
            self._on_data()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _leader(self, tp: TopicPartition, now: float) -> tuple[int, int] | None:
        """(node id, leader epoch) from the cache; None (and a refresh asked) if unknown."""
        cache = self._cache
        info = cache.topic(tp.topic)
        if info is None or cache.refresh_due(tp.topic, now):
            self._want_refresh(tp.topic)
        if info is None or info.error_code or tp.partition >= len(info.partitions):
            return None
        part = info.partitions[tp.partition]
        if part.leader < 0 or part.leader not in cache.brokers:
            self._want_refresh(tp.topic)
            return None
        return part.leader, part.leader_epoch

    def _start_fetches(self, fetchable: list[PartitionState], now: float) -> None:
        assert self._loop is not None
        by_node: dict[int, list[tuple[PartitionState, int]]] = {}
        waiting: list[PartitionState] = []
        for st in fetchable:
            leader = self._leader(st.tp, now)
            if leader is None:
                waiting.append(st)
            elif leader[0] not in self._fetches:
                by_node.setdefault(leader[0], []).append((st, leader[1]))
        if waiting:
            self._state.delay(waiting, now + self._backoff)
        if not by_node:
            return
        held = self._held_behind(now)
        for node, parts in by_node.items():
            if any(self._behind(st) for st, _ in parts):
                max_wait = _NO_WAIT  # data is waiting on the broker: no long poll
            elif node in held:
                # Every fetchable partition is caught up, and one with data waiting on
                # this broker is only held back by its buffer: a long poll now would
                # keep it out of the broker's one fetch for fetch_max_wait. Wait for it.
                continue
            else:
                max_wait = self._settings.fetch_max_wait
            states = [p[0] for p in parts]
            started = self._state.fetch_started(states)
            sent = [
                (st, epoch, gen, off)
                for (st, epoch), (gen, off) in zip(parts, started, strict=True)
            ]
            task = self._loop.create_task(self._fetch(node, sent, max_wait))
            self._fetches[node] = task

    def _behind(self, st: PartitionState) -> bool:
        """Has the broker more for ``st`` than fetched (as of its last answer)?"""
        end = st.last_stable_offset if self._settings.read_committed else st.high_watermark
        return end < 0 or st.fetch_offset < end

    def _held_behind(self, now: float) -> set[int]:
        """Brokers leading a partition that is behind but not fetchable for its buffer."""
        out: set[int] = set()
        for st in list(self._state.partitions.values()):
            if st.buffered and not st.paused and st.error is None and self._behind(st):
                leader = self._leader(st.tp, now)
                if leader is not None:
                    out.add(leader[0])
        return out

    # -- metadata -----------------------------------------------------------------------

    def _want_refresh(self, topic: str) -> None:
        self._refresh_wanted.add(topic)
        if self._refresh_task is None and not self._closed:
            assert self._loop is not None
            self._refresh_task = self._loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        assert self._loop is not None
        loop = self._loop
        try:
            wait = self._last_refresh + self._backoff - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            topics, self._refresh_wanted = self._refresh_wanted, set()
            self._last_refresh = loop.time()
            try:
                view = await self._client.metadata(sorted(topics))
            except (BrokerConnectionError, KafkaTimeoutError):
                return  # asked again by the next fetch that needs it
            except ClientClosedError:
                raise
            except PykafError as exc:
                logger.info("metadata refresh for the fetcher failed: %s", exc)
                return
            for name in topics:
                info = view.topics.get(name)
                if info is not None and info.error_code in (
                    _UNKNOWN_TOPIC_OR_PARTITION,
                    _UNKNOWN_TOPIC_ID,
                ):
                    self._topic_gone(name)
        except ClientClosedError:
            return
        except Exception as exc:  # a bug: stop instead of retrying forever
            self.failure = exc
        finally:
            self._refresh_task = None
            if self._refresh_wanted and not self._closed:
                self._refresh_task = loop.create_task(self._refresh())
            self.wake()

    def _topic_gone(self, topic: str) -> None:
        with self._state.lock:
            for tp, st in self._state.partitions.items():
                if tp.topic == topic and st.error is None:
                    st.error = UnknownTopicOrPartitionError(
                        f"(topic {topic!r} does not exist: check its name, or create it"
                        " first; unassign it to stop this error)"
                    )
        self._on_data()

    # -- fetching -----------------------------------------------------------------------

    async def _versions_of(self, node: int) -> BrokerApiVersions:
        versions = self._versions.get(node)
        if versions is None:
            # What the pool learnt on any connection to that broker, else ask (connects).
            broker = self._cache.brokers.get(node)
            versions = None if broker is None else self._client._pool.versions(broker.address)
            if versions is None:
                versions = await self._client.api_versions(node)
            self._versions[node] = versions
        return versions

    def _tune_reads(self, node: int) -> None:
        """Read fetch answers in large chunks. asyncio reads a socket 256 KiB per loop
        iteration; in the blocking consumer the loop thread must win the GIL back from
        the application's thread for each one (up to the 5 ms switch interval): that
        capped reading at ~50 MB/s. One read of what the socket holds needs one win."""
        if node in self._tuned:
            return
        broker = self._cache.brokers.get(node)
        conn = None if broker is None else self._client._pool.usable(broker.address, "fetch")
        transport = getattr(conn, "_transport", None)
        if transport is not None and hasattr(transport, "max_size"):
            transport.max_size = _READ_SIZE
            self._tuned.add(node)

    def _fetch_request(
        self, version: int, sent: list[tuple[PartitionState, int, int, int]], max_wait: float
    ) -> tuple[Any, dict[uuid.UUID, str]]:
        settings = self._settings
        topics: dict[str, list[dict[str, Any]]] = {}
        ids: dict[str, uuid.UUID | None] = {}
        for st, epoch, _, offset in sent:
            tp = st.tp
            if tp.topic not in topics:
                info = self._cache.topic(tp.topic)
                ids[tp.topic] = None if info is None else info.topic_id
                topics[tp.topic] = []
            topics[tp.topic].append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": epoch if epoch >= 0 else _NO_EPOCH,
                    "fetch_offset": offset,
                    "last_fetched_epoch": _NO_EPOCH,
                    "log_start_offset": -1,
                    "partition_max_bytes": settings.max_partition_fetch_bytes,
                }
            )
        if version >= _FIRST_TOPIC_ID_FETCH and any(i is None for i in ids.values()):
            version = _FIRST_TOPIC_ID_FETCH - 1
        if settings.stop_at_end:
            max_wait = _NO_WAIT  # at the end of the log, a stream that stops there must not wait
        request = build_request(
            _FETCH,
            version,
            cluster_id=None,
            replica_id=-1,
            replica_state={"replica_id": -1, "replica_epoch": -1},
            max_wait=round(max_wait * 1000),
            min_bytes=settings.fetch_min_bytes,
            max_bytes=settings.fetch_max_bytes,
            isolation_level=settings.isolation_code,
            session_id=0,
            session_epoch=-1,  # no fetch session (KIP-227): every request is full
            topics=[
                {"topic": name, "topic_id": ids[name], "partitions": parts}
                for name, parts in topics.items()
            ],
            forgotten_topics_data=[],
            rack_id="",
        )
        by_id = {i: name for name, i in ids.items() if i is not None}
        return request, by_id

    async def _fetch(
        self, node: int, sent: list[tuple[PartitionState, int, int, int]], max_wait: float
    ) -> None:
        assert self._loop is not None
        loop, state = self._loop, self._state
        answered: set[int] = set()
        try:
            versions = await self._versions_of(node)
            request, by_id = self._fetch_request(versions.version(_FETCH), sent, max_wait)
            timeout = self._settings.client.request_timeout + self._settings.fetch_max_wait
            response = await self._client.request(
                request, to=node, purpose="fetch", timeout=timeout
            )
            self._answer(node, response, sent, by_id, answered)
            if self._events.active:
                emit_fetch_done(
                    self._events,
                    self._settings.client.client_id,
                    node,
                    response,
                    sent,
                    by_id,
                    answered,
                    read_committed=self._settings.read_committed,
                )
            self._tune_reads(node)
            self._health.recovered(f"fetch {node}", f"fetches from broker {node} answered again")
        except (BrokerConnectionError, KafkaTimeoutError) as exc:
            if isinstance(exc, KafkaTimeoutError) or self._health.failing(f"fetch {node}"):
                # A fetch never answered would otherwise only show as empty polls. The
                # connection was closed by the timeout; the next fetch opens a new one.
                self._health.failed(
                    f"fetch {node}",
                    f"fetch from broker {node} failed: {exc}",
                    hint="the connection is opened again and fetching resumes;"
                    " check that broker's health and load",
                )
            self._versions.pop(node, None)
            self._tuned.discard(node)
            for st, _, _, _ in sent:
                self._want_refresh(st.tp.topic)
        except ClientClosedError:
            pass
        except PykafError as exc:
            if getattr(exc, "retriable", False):
                # A whole answer with a retriable error code: a failing broker, retried
                # after the backoff like one that does not answer (nothing to raise).
                self._health.failed(
                    f"fetch {node}",
                    f"fetch from broker {node} failed: {exc}",
                    hint="fetching resumes after the backoff; check that broker's health",
                )
            else:
                # Not a broker going away: e.g. a version neither side speaks. Say so.
                with state.lock:
                    for st, _, _, _ in sent:
                        st.error = exc
        except Exception as exc:  # a bug: stop instead of retrying forever
            self.failure = exc
        finally:
            retry_at = loop.time() + self._backoff
            for i, (st, _, gen, _) in enumerate(sent):
                if i not in answered:
                    state.fetch_failed(st, gen, retry_at)
            if self._fetches.get(node) is asyncio.current_task():
                del self._fetches[node]
            self._on_data()
            self.wake()

    def _answer(
        self,
        node: int,
        response: Any,
        sent: list[tuple[PartitionState, int, int, int]],
        by_id: dict[uuid.UUID, str],
        answered: set[int],
    ) -> None:
        code = int(response.error_code)
        if code:
            raise error_for_code(code, "(a whole Fetch answer)")
        index = {(st.tp.topic, st.tp.partition): i for i, (st, _, _, _) in enumerate(sent)}
        state = self._state
        read_committed = self._settings.read_committed
        stop_at_end = self._settings.stop_at_end
        for topic in response.responses:
            name = getattr(topic, "topic", None)
            if not name:
                topic_id = getattr(topic, "topic_id", None)
                name = None if topic_id is None else by_id.get(topic_id)
            if name is None:
                continue
            for part in topic.partitions:
                i = index.get((name, part.partition_index))
                if i is None or i in answered:
                    continue
                st, _, gen, offset = sent[i]
                error = int(part.error_code)
                if error in METADATA_STALE_CODES:
                    self._want_refresh(name)
                    continue  # not answered: fetch_failed retries after the backoff
                if error and error != _OFFSET_OUT_OF_RANGE and self._retriable(node, st, error):
                    if error in _MOVED_MAYBE:
                        self._want_refresh(name)
                    continue  # as above: retried after the backoff, not raised
                if self._partitions_failing and st.tp in self._partitions_failing:
                    self._partitions_failing.discard(st.tp)
                    self._health.recovered(
                        f"fetch {st.tp}", f"fetching {st.tp} from broker {node} works again"
                    )
                aborted = None
                if read_committed and part.aborted_transactions:
                    aborted = [
                        (int(a.first_offset), int(a.producer_id)) for a in part.aborted_transactions
                    ]
                answered.add(i)
                state.fetch_answered(
                    st,
                    gen,
                    offset,
                    error_code=error,
                    high_watermark=int(part.high_watermark),
                    last_stable_offset=int(part.last_stable_offset),
                    log_start_offset=int(part.log_start_offset),
                    records=part.records,
                    aborted=aborted,
                    stop_at_end=stop_at_end,
                )

    def _retriable(self, node: int, st: PartitionState, code: int) -> bool:
        """Whether a partition's error ``code`` is one to retry (Kafka's retriable flag):
        then counted in the partition's episode, whose first failure is logged at
        WARNING. A consumer's poll raises only what retrying cannot mend."""
        error = error_for_code(code, f"(fetching {st.tp} from broker {node})")
        if not getattr(error, "retriable", False) or code == _CORRUPT_MESSAGE:
            return False
        self._partitions_failing.add(st.tp)
        self._health.failed(
            f"fetch {st.tp}",
            f"fetching {st.tp} failed: {error}",
            hint="retried after the backoff; check the broker's health",
        )
        return True

    # -- positions ----------------------------------------------------------------------

    async def _resolve_resets(self, due: list[tuple[PartitionState, int, int]]) -> None:
        """ListOffsets for partitions waiting for a position, one request per leader."""
        assert self._loop is not None
        loop, state = self._loop, self._state
        done: set[int] = set()
        failed: PykafError | None = None
        try:
            results = await list_offsets(
                self._client,
                {st.tp: target for st, target, _ in due},
                isolation_level=self._settings.isolation_code,
            )
            for i, (st, _, gen) in enumerate(due):
                found = results.get(st.tp)
                if isinstance(found, PykafError):
                    if getattr(found, "retriable", False):
                        continue
                    done.add(i)
                    state.reset_failed(st, gen, loop.time(), found)
                elif found is not None:
                    done.add(i)
                    offset, _, epoch = found
                    if offset < 0:  # no record at or after that timestamp: the end
                        state.retarget(st, gen, LATEST)
                    else:
                        state.reset_done(st, gen, offset, epoch)
        except (BrokerConnectionError, KafkaTimeoutError, ClientClosedError):
            pass
        except PykafError as exc:  # not a broker going away: the application must know
            failed = exc
        except Exception as exc:  # a bug: stop instead of retrying forever
            self.failure = exc
        finally:
            now = loop.time()
            for i, (st, _, gen) in enumerate(due):
                if i not in done:
                    state.reset_failed(st, gen, now, failed)
            self._on_data()
            self.wake()
