"""The statsd bridge: a UDP listener on 127.0.0.1 receives ekaf's names and ours, batched
into datagrams; a failing send is counted and said once, never raised into the client."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from _synthetic import make

from pykaf import telemetry
from pykaf.events import (
    BatchAcknowledged,
    BatchSent,
    ConnectionOpened,
    DowntimeBegan,
    DowntimeEnded,
    EventBus,
    FetchDone,
    ReplayFinished,
    RequestAnswered,
)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


def receive(sock: socket.socket, until: set[str], limit: int = 10_000) -> dict[str, list[str]]:
    """Metric name -> its values ("3|c", "1.500|ms") from datagrams, until every name in
    ``until`` was seen (each datagram waits at most the socket's timeout)."""
    seen: dict[str, list[str]] = {}
    for _ in range(limit):
        if until <= seen.keys():
            break
        datagram = sock.recv(65536)
        for line in datagram.decode().split("\n"):
            name, _, value = line.partition(":")
            seen.setdefault(name, []).append(value)
    return seen


def test_events_reach_statsd_under_ekaf_names(listener: socket.socket) -> None:
    bus = EventBus()
    port = listener.getsockname()[1]
    bridge = telemetry.statsd(bus, "127.0.0.1", port, prefix="app")
    bus.emit(
        make(ConnectionOpened, broker=2, address="h:2", purpose="produce", time_to_connect=0.0035)
    )
    bus.emit(
        make(
            BatchSent,
            topic="orders",
            partition=1,
            broker=2,
            records=7,
            bytes=700,
            compression_ratio=1.0,
        )
    )
    bus.emit(
        make(
            BatchAcknowledged,
            topic="orders",
            partition=1,
            broker=2,
            records=7,
            bytes=700,
            base_offset=0,
            latency=0.012,
        )
    )
    bus.emit(make(DowntimeBegan))
    bus.emit(make(DowntimeEnded, seconds=1.5, records_saved=4))
    bus.emit(make(ReplayFinished, records=4, seconds=0.25))
    bus.emit(make(FetchDone, broker=2, records=3, bytes=300, lag=(("orders", 1, 9),)))
    for _ in range(2):
        bus.emit(
            make(
                RequestAnswered,
                broker=2,
                api="Produce",
                version=9,
                request_bytes=10,
                response_bytes=5,
                latency=0.002,
            )
        )
    bridge.close()
    expected = {
        "app.worker_up.broker2": ["1|c"],
        "app.time_to_connect.broker2": ["3.500|ms"],
        "app.orders.flush.broker2.1": ["7|g"],
        "app.orders.flushed_replied.broker2.1": ["7|c"],
        "app.records.sent": ["7|c"],
        "app.records.acknowledged": ["7|c"],
        "app.batch.ack_latency": ["12.000|ms"],
        "app.mainbroker_unreachable": ["1|c"],
        "app.time_down": ["1500.000|ms"],
        "app.downtime_saved": ["4|c"],
        "app.downtime_replayed": ["4|c"],
        "app.records.fetched": ["3|c"],
        "app.orders.consumer_lag.1": ["9|g"],
        "app.requests.Produce": ["2|c"],  # summed between flushes
        "app.request_latency.Produce": ["2.000|ms", "2.000|ms"],  # timers: each sample
    }
    seen = receive(listener, set(expected))
    for name, values in expected.items():
        assert seen[name] == values, name
    assert not bus.active


def test_many_events_go_out_in_few_full_datagrams(listener: socket.socket) -> None:
    bus = EventBus()
    bridge = telemetry.statsd(bus, "127.0.0.1", listener.getsockname()[1], max_datagram=512)
    for _ in range(300):
        bus.emit(
            make(
                RequestAnswered,
                broker=1,
                api="Fetch",
                version=12,
                request_bytes=10,
                response_bytes=5,
                latency=0.001,
            )
        )
    bridge.close()
    lines = 0
    sizes = []
    while lines < 300 + 3:  # 300 timer samples, the requests and two byte counters
        datagram = listener.recv(65536)
        sizes.append(len(datagram))
        lines += datagram.count(b"\n") + 1
    assert lines == 303
    assert max(sizes) <= 512
    # Full datagrams, not one per event: each but the last has no room for another line
    # (the lines are under 40 bytes).
    assert min(sizes[:-1]) > 512 - 40
    assert bridge.datagrams_sent == len(sizes)


def test_a_failing_send_is_counted_and_said_once(
    listener: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    bridge = telemetry.statsd(bus, "127.0.0.1", listener.getsockname()[1])

    class Broken:
        def sendto(self, _data: bytes, _address: object) -> int:
            raise OSError(101, "Network is unreachable")

        def close(self) -> None:
            pass

    real = bridge._socket
    bridge._socket = Broken()  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, "pykaf.telemetry"):
        for _ in range(3):
            bus.emit(make(DowntimeBegan))  # never raises into the emitter
            bridge.flush()
        assert bridge.send_errors == 3
        bridge._socket = real
        bus.emit(make(DowntimeBegan))
        bridge.flush()
    bridge.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Network is unreachable" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert receive(listener, {"pykaf.mainbroker_unreachable"})["pykaf.mainbroker_unreachable"]


def test_a_host_that_does_not_resolve_is_refused_at_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_answer(*_args: object, **_kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)  # no DNS query leaves the test
    bus = EventBus()
    with pytest.raises(ValueError, match=r"'statsd\.example' does not resolve"):
        telemetry.statsd(bus, "statsd.example", 8125)
    assert not bus.active


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 0}, "UDP port"),
        ({"port": 8125, "prefix": "a:b"}, "prefix"),
        ({"port": 8125, "flush_interval": 0}, "flush_interval"),
    ],
)
def test_bad_settings_are_refused_at_setup(options: dict[str, object], message: str) -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match=message):
        telemetry.statsd(bus, **{"host": "127.0.0.1", **options})  # type: ignore[arg-type]
    assert not bus.active


def test_a_bug_in_a_flush_is_said_once_and_the_flusher_goes_on(
    listener: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, an exception in the flusher's thread ended it: threading printed it on
    # stderr and no metric was sent again, without a word in the log.
    bus = EventBus()
    # Flushes only when woken here (the interval is longer than the test): two bad ones
    # in a row, with no good one between them, are one episode.
    bridge = telemetry.statsd(bus, "127.0.0.1", listener.getsockname()[1], flush_interval=30)
    with caplog.at_level(logging.ERROR, "pykaf.telemetry"):
        for _ in range(2):
            with bridge._lock:
                bridge._gauges["bad"] = None  # type: ignore[assignment]
            bridge._wake.set()
            deadline = time.monotonic() + 5.0
            while "bad" in bridge._gauges and time.monotonic() < deadline:
                time.sleep(0.005)  # the flusher takes the gauges as it starts a flush
        bus.emit(make(DowntimeBegan))
        bridge._wake.set()  # the flusher is alive: this flush sends
        assert receive(listener, {"pykaf.mainbroker_unreachable"})
    bridge.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "statsd" in errors[0].getMessage()
