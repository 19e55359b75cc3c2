"""``StatsdBridge``: a client's events pushed to statsd over UDP.

Names follow ekaf where it had one (ekaf's callbacks, under ``prefix``): per partition
``<topic>.flush.broker<N>.<partition>`` (gauge: records in the batch sent) and
``<topic>.flushed_replied.broker<N>.<partition>`` (records acknowledged), per broker
``worker_up.broker<N>`` / ``worker_down.broker<N>`` and ``time_to_connect.broker<N>``
(ms), and for the cluster ``mainbroker_unreachable``, ``time_down`` (ms),
``downtime_saved`` and ``downtime_replayed`` (records). The rest are dotted names of our
own (``records.sent``, ``requests.Produce``, ``request_latency.Fetch``, ...).

The cost rule: handling an event adds to dicts under a lock, nothing more. A flusher
thread of its own sums counters, keeps the last gauge, and writes everything every
``flush_interval`` seconds (sooner when ``max_pending`` timer samples wait) in datagrams
of at most ``max_datagram`` bytes: never one syscall per event, never on the client's
threads. A send that fails is counted (``send_errors``) and said at WARNING once per
episode (until a send works again); nothing is raised into the client.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._dispatch import handlers_of
from pykaf._telemetry._events import (
    BatchAcknowledged,
    BatchFailed,
    BatchRetried,
    BatchSent,
    BufferFill,
    CommitDone,
    CommitFailed,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    DowntimeBegan,
    DowntimeEnded,
    Event,
    FetchDone,
    GroupJoined,
    GroupLost,
    GroupRebalanced,
    JournalFill,
    LeaderMoved,
    MetadataRefreshed,
    ReplayFinished,
    ReplayStarted,
    RequestAnswered,
    Throttled,
)

__all__ = ["StatsdBridge"]

log = logging.getLogger("pykaf.telemetry")

#: Fits one Ethernet frame with IP and UDP headers (what statsd clients commonly use).
DEFAULT_MAX_DATAGRAM = 1432


def _broker(node: int | None) -> str:
    return "broker-1" if node is None else f"broker{node}"


class StatsdBridge:
    """Listens to ``bus`` and pushes to statsd at ``host:port`` (see the module doc)."""

    def __init__(
        self,
        bus: EventBus,
        host: str = "127.0.0.1",
        port: int = 8125,
        prefix: str = "pykaf",
        *,
        flush_interval: float = 0.5,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        max_pending: int = 2000,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be a UDP port (1-65535), not {port!r}")
        if not isinstance(flush_interval, int | float) or not (
            math.isfinite(flush_interval) and flush_interval > 0
        ):
            raise ValueError(f"flush_interval must be a positive number, not {flush_interval!r}")
        if not isinstance(max_datagram, int) or max_datagram < 64:
            raise ValueError(f"max_datagram must be an int of 64 bytes or more: {max_datagram!r}")
        if not isinstance(prefix, str) or any(c in prefix for c in ":|@\n"):
            raise ValueError(f"prefix must be a str without ':', '|', '@' or newlines: {prefix!r}")
        # Resolved once, here: a name that does not resolve is a setup error, said now.
        try:
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ValueError(f"statsd host {host!r} does not resolve: {exc}") from exc
        family, _, _, _, address = resolved[0]
        self._address = address
        self._where = f"{host}:{port}"
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._prefix = f"{prefix}." if prefix else ""
        self._max_datagram = max_datagram
        self._max_pending = max_pending
        self.flush_interval = float(flush_interval)
        #: Datagrams written, and sends that failed (counted, said once per episode).
        self.datagrams_sent = 0
        self.send_errors = 0
        self._failing = False
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._timers: list[tuple[str, float]] = []
        self._handlers = handlers_of(self)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._unsubscribe = bus.subscribe(self.observe)
        self._thread = threading.Thread(target=self._run, name="pykaf-statsd", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<StatsdBridge {self._where} prefix={self._prefix!r}>"

    def __enter__(self) -> StatsdBridge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the client's side: add to dicts, nothing else -----------------------------------

    def observe(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        with self._lock:
            handler(event)
            if len(self._timers) >= self._max_pending:
                self._wake.set()

    def _count(self, name: str, amount: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + amount

    def _time(self, name: str, seconds: float) -> None:
        self._timers.append((name, seconds * 1000.0))

    def _on_batch_sent(self, e: BatchSent) -> None:
        self._count("records.sent", e.records)
        self._count("batches.sent")
        self._count("bytes.sent", e.bytes)
        self._gauges[f"{e.topic}.flush.{_broker(e.broker)}.{e.partition}"] = e.records

    def _on_batch_acknowledged(self, e: BatchAcknowledged) -> None:
        self._count("records.acknowledged", e.records)
        self._count("batches.acknowledged")
        self._count("bytes.acknowledged", e.bytes)
        self._count(f"{e.topic}.flushed_replied.{_broker(e.broker)}.{e.partition}", e.records)
        self._time("batch.ack_latency", e.latency)

    def _on_batch_retried(self, e: BatchRetried) -> None:
        self._count("records.retried", e.records)
        self._count("batches.retried")

    def _on_batch_failed(self, e: BatchFailed) -> None:
        self._count("records.failed", e.records)
        self._count("batches.failed")

    def _on_request_answered(self, e: RequestAnswered) -> None:
        self._count(f"requests.{e.api}")
        self._count("request.bytes", e.request_bytes)
        self._count("response.bytes", e.response_bytes)
        self._time(f"request_latency.{e.api}", e.latency)

    def _on_connection_opened(self, e: ConnectionOpened) -> None:
        self._count(f"worker_up.{_broker(e.broker)}")
        self._time(f"time_to_connect.{_broker(e.broker)}", e.time_to_connect)

    def _on_connection_failed(self, e: ConnectionFailed) -> None:
        self._count(f"worker_down.{_broker(e.broker)}")
        self._count("connections.failed")

    def _on_connection_closed(self, e: ConnectionClosed) -> None:
        self._count("connections.closed")
        if e.error is not None:
            self._count(f"worker_down.{_broker(e.broker)}")

    def _on_throttled(self, e: Throttled) -> None:
        self._time(f"throttled.{e.api}", e.throttle_time)

    def _on_metadata_refreshed(self, e: MetadataRefreshed) -> None:
        self._count("metadata.refreshed")
        self._time("metadata.duration", e.duration)

    def _on_leader_moved(self, e: LeaderMoved) -> None:
        self._count("leader_moved")

    def _on_buffer_fill(self, e: BufferFill) -> None:
        self._gauges["buffer.used_bytes"] = e.used_bytes
        self._gauges["buffer.limit_bytes"] = e.limit_bytes

    def _on_journal_fill(self, e: JournalFill) -> None:
        self._gauges["journal.used_bytes"] = e.used_bytes
        self._gauges["journal.limit_bytes"] = e.limit_bytes
        self._gauges["journal.pending_records"] = e.pending_records

    def _on_downtime_began(self, e: DowntimeBegan) -> None:
        self._count("mainbroker_unreachable")

    def _on_downtime_ended(self, e: DowntimeEnded) -> None:
        self._time("time_down", e.seconds)
        self._count("downtime_saved", e.records_saved)

    def _on_replay_started(self, e: ReplayStarted) -> None:
        self._count("replay.started")

    def _on_replay_finished(self, e: ReplayFinished) -> None:
        self._count("downtime_replayed", e.records)
        self._time("replay.duration", e.seconds)

    def _on_group_joined(self, e: GroupJoined) -> None:
        self._count("group.joined")
        self._time("group.join_time", e.duration)
        self._gauges["group.assigned_partitions"] = len(e.assignment)

    def _on_group_rebalanced(self, e: GroupRebalanced) -> None:
        self._count("group.rebalanced")
        self._time("group.rebalance_time", e.duration)

    def _on_group_lost(self, e: GroupLost) -> None:
        self._count("group.lost")

    def _on_commit_done(self, e: CommitDone) -> None:
        self._count("commits")
        self._time("commit.latency", e.latency)

    def _on_commit_failed(self, e: CommitFailed) -> None:
        self._count("commits.failed")

    def _on_fetch_done(self, e: FetchDone) -> None:
        self._count("fetches")
        self._count("records.fetched", e.records)
        self._count("bytes.fetched", e.bytes)
        for topic, partition, lag in e.lag:
            self._gauges[f"{topic}.consumer_lag.{partition}"] = lag

    # -- the flusher's side ----------------------------------------------------------------

    def _run(self) -> None:
        broken = False  # an episode of failing flushes, said once
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                # A bug, not the network (``_send`` handles that): said once, with its
                # traceback, and the flusher goes on; that interval's metrics are lost.
                # Before, the thread ended here and no metric was sent again.
                if not broken:
                    broken = True
                    log.exception("statsd: a flush to %s failed; the next ones go on", self._where)
            else:
                broken = False

    def _lines(self) -> list[str]:
        with self._lock:
            counters, self._counters = self._counters, {}
            gauges, self._gauges = self._gauges, {}
            timers, self._timers = self._timers, []
        prefix = self._prefix
        lines = [f"{prefix}{name}:{value}|c" for name, value in counters.items()]
        # A negative gauge would be read as a decrement: none of ours is negative.
        lines.extend(f"{prefix}{name}:{value:g}|g" for name, value in gauges.items())
        lines.extend(f"{prefix}{name}:{ms:.3f}|ms" for name, ms in timers)
        return lines

    def flush(self) -> None:
        """Write what is pending now (the flusher calls it; so does ``close()``)."""
        lines = self._lines()
        if not lines:
            return
        limit = self._max_datagram
        datagram: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode()
            if datagram and size + 1 + len(data) > limit:
                self._send(b"\n".join(datagram))
                datagram, size = [], 0
            datagram.append(data)
            size += len(data) + (1 if size else 0)
        if datagram:
            self._send(b"\n".join(datagram))

    def _send(self, datagram: bytes) -> None:
        try:
            self._socket.sendto(datagram, self._address)
        except OSError as exc:
            self.send_errors += 1
            if not self._failing:
                self._failing = True
                log.warning(
                    "statsd: sending to %s failed (%s: %s); metrics are dropped until a"
                    " send works again (counted in send_errors)",
                    self._where,
                    type(exc).__name__,
                    exc,
                )
            return
        self.datagrams_sent += 1
        if self._failing:
            self._failing = False
            log.info("statsd: sending to %s works again", self._where)

    def close(self) -> None:
        """Stop listening, write what is pending, close the socket."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self.flush_interval + 5.0)
        self.flush()
        with contextlib.suppress(OSError):
            self._socket.close()
