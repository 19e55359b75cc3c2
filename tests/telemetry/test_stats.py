"""The StatsCollector counts synthetic events into exact snapshots; stats_every pushes
them on a timer."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from _synthetic import CLIENT_ID, make

from pykaf import telemetry
from pykaf._telemetry._histogram import LATENCY_BOUNDS, HistogramCounts
from pykaf.events import (
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
    EventBus,
    FetchDone,
    GroupJoined,
    GroupLost,
    GroupRebalanced,
    JournalFill,
    LeaderMoved,
    ReplayFinished,
    ReplayStarted,
    RequestAnswered,
    Throttled,
)


def _produced(bus: EventBus) -> None:
    bus.emit(
        make(
            BatchSent,
            topic="t",
            partition=0,
            broker=1,
            records=10,
            bytes=1000,
            compression_ratio=1.0,
        )
    )
    bus.emit(
        make(
            BatchSent, topic="t", partition=1, broker=2, records=5, bytes=500, compression_ratio=0.5
        )
    )
    bus.emit(
        make(
            BatchAcknowledged,
            topic="t",
            partition=0,
            broker=1,
            records=10,
            bytes=1000,
            base_offset=100,
            latency=0.004,
        )
    )
    bus.emit(make(BatchRetried, topic="t", partition=1, records=5, error="NotLeader", attempt=2))
    bus.emit(
        make(
            BatchSent,
            topic="t",
            partition=1,
            broker=3,
            records=5,
            bytes=500,
            compression_ratio=0.5,
            attempt=2,
        )
    )
    bus.emit(
        make(
            BatchAcknowledged,
            topic="t",
            partition=1,
            broker=3,
            records=5,
            bytes=500,
            base_offset=0,
            latency=0.2,
        )
    )
    bus.emit(make(BatchFailed, topic="t", partition=2, records=3, error="Timeout"))


def test_producer_events_give_exact_counters_and_partitions() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    _produced(bus)
    stats = collector.snapshot()
    c = stats.counters
    assert (c["batches_sent"], c["records_sent"], c["bytes_sent"]) == (3, 20, 2000)
    assert (c["batches_acknowledged"], c["records_acknowledged"], c["bytes_acknowledged"]) == (
        2,
        15,
        1500,
    )
    assert (c["batches_retried"], c["records_retried"]) == (1, 5)
    assert (c["batches_failed"], c["records_failed"]) == (1, 3)
    p0, p1, p2 = (stats.partitions[("t", n)] for n in range(3))
    assert (p0.records_sent, p0.records_acknowledged, p0.last_offset, p0.leader) == (10, 10, 109, 1)
    assert (p1.records_sent, p1.records_retried, p1.records_acknowledged) == (10, 5, 5)
    assert (p1.last_offset, p1.leader) == (4, 3)
    assert (p2.records_failed, p2.last_offset, p2.consumer_lag) == (3, None, None)
    ack = stats.histograms["batch_ack_latency"]
    assert (ack.count, ack.sum) == (2, pytest.approx(0.204))
    assert stats.client_id == CLIENT_ID


def test_requests_count_per_api_and_per_broker_with_latency() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    for latency in (0.001, 0.002, 0.003):
        bus.emit(
            make(
                RequestAnswered,
                broker=1,
                api="Produce",
                version=9,
                request_bytes=100,
                response_bytes=40,
                latency=latency,
            )
        )
    bus.emit(
        make(
            RequestAnswered,
            broker=None,
            api="Metadata",
            version=12,
            request_bytes=30,
            response_bytes=300,
            latency=0.02,
        )
    )
    bus.emit(make(Throttled, broker=1, api="Produce", throttle_time=0.25))
    stats = collector.snapshot()
    assert stats.requests_per_api == {"Produce": 3, "Metadata": 1}
    c = stats.counters
    assert (c["requests"], c["request_bytes"], c["response_bytes"], c["throttles"]) == (
        4,
        330,
        420,
        1,
    )
    assert stats.durations["throttle_seconds"] == 0.25
    one = stats.brokers[1]
    assert (one.requests, one.request_bytes, one.response_bytes, one.throttles) == (3, 300, 120, 1)
    assert one.latency.count == 3
    # 0.001 falls in the (0.0005, 0.001] bucket, 0.002 and 0.003 in (0.0025, 0.005] and
    # (0.001, 0.0025]: the buckets say where each went.
    assert one.latency.counts[:4] == (0, 1, 1, 1)
    unknown = stats.brokers[telemetry.UNKNOWN_BROKER]
    assert (unknown.requests, unknown.response_bytes) == (1, 300)
    assert stats.histograms["request_latency"].count == 4


def test_connections_open_follows_opened_and_closed_per_broker() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    for node in (1, 1, 2):
        bus.emit(
            make(
                ConnectionOpened,
                broker=node,
                address="h:1",
                purpose="produce",
                time_to_connect=0.003,
            )
        )
    bus.emit(make(ConnectionFailed, broker=3, address="h:3", error="OSError", reason="refused"))
    bus.emit(make(ConnectionClosed, broker=1, address="h:1", reason="idle"))
    stats = collector.snapshot()
    assert stats.gauges["connections_open"] == 2
    assert (stats.counters["connections_opened"], stats.counters["connections_failed"]) == (3, 1)
    assert (stats.brokers[1].connections_open, stats.brokers[1].connections_opened) == (1, 2)
    assert (stats.brokers[2].connections_open, stats.brokers[3].connections_failed) == (1, 1)
    assert stats.histograms["time_to_connect"].count == 3


def test_consumer_events_give_lag_per_partition_and_total() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    bus.emit(
        make(
            GroupJoined,
            group_id="g",
            member_id="m",
            generation=1,
            assignment=(("t", 0), ("t", 1), ("t", 2)),
            duration=0.5,
        )
    )
    bus.emit(make(FetchDone, broker=1, records=7, bytes=700, lag=(("t", 0, 3), ("t", 1, 10))))
    bus.emit(make(FetchDone, broker=2, records=1, bytes=90, lag=(("t", 0, 1),)))
    bus.emit(make(CommitDone, group_id="g", partitions=2, latency=0.01))
    bus.emit(make(CommitFailed, group_id="g", error="RebalanceInProgress"))
    bus.emit(make(GroupRebalanced, group_id="g", revoked=(("t", 2),), assigned=(), duration=0.1))
    stats = collector.snapshot()
    c = stats.counters
    assert (c["fetches"], c["records_fetched"], c["bytes_fetched"]) == (2, 8, 790)
    assert (c["commits"], c["commits_failed"], c["group_joins"], c["rebalances"]) == (1, 1, 1, 1)
    assert stats.partitions[("t", 0)].consumer_lag == 1
    assert stats.partitions[("t", 1)].consumer_lag == 10
    assert stats.gauges["consumer_lag"] == 11
    assert stats.gauges["assigned_partitions"] == 2
    bus.emit(make(GroupLost, group_id="g", reason="session timeout"))
    assert collector.snapshot().gauges["assigned_partitions"] == 0


def test_custody_events_give_downtime_replay_and_fill() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    bus.emit(make(DowntimeBegan))
    assert collector.snapshot().gauges["cluster_down"] == 1
    bus.emit(make(DowntimeEnded, seconds=2.5, records_saved=40))
    bus.emit(make(ReplayStarted, records=40))
    bus.emit(make(ReplayFinished, records=40, seconds=0.5))
    bus.emit(make(BufferFill, used_bytes=1000, limit_bytes=4000))
    bus.emit(make(JournalFill, used_bytes=10, limit_bytes=100, pending_records=4))
    bus.emit(make(LeaderMoved, topic="t", partition=0, old_leader=1, new_leader=2))
    stats = collector.snapshot()
    assert stats.gauges["cluster_down"] == 0
    assert (stats.durations["downtime_seconds"], stats.durations["replay_seconds"]) == (2.5, 0.5)
    c = stats.counters
    assert (c["downtimes"], c["records_saved_while_down"], c["replays"], c["records_replayed"]) == (
        1,
        40,
        1,
        40,
    )
    assert (stats.gauges["buffer_used_bytes"], stats.gauges["buffer_limit_bytes"]) == (1000, 4000)
    assert stats.gauges["journal_pending_records"] == 4
    assert (c["leader_moves"], stats.partitions[("t", 0)].leader) == (1, 2)


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    counts = HistogramCounts()
    for _ in range(50):
        counts.observe(0.001)  # the (0.0005, 0.001] bucket
    for _ in range(50):
        counts.observe(0.04)  # the (0.025, 0.05] bucket
    h = counts.snapshot()
    assert h.count == 100
    assert h.p50 == pytest.approx(0.001)  # the 50th value is the first bucket's top
    assert h.p99 == pytest.approx(0.025 + 0.025 * 49 / 50)
    assert h.mean == pytest.approx(0.0205)
    counts.observe(100.0)  # above every bound: reported as the last bound
    assert counts.snapshot().quantile(1.0) == LATENCY_BOUNDS[-1]
    assert HistogramCounts().snapshot().p50 is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        h.quantile(1.5)


def test_a_collector_listens_only_while_open_and_ignores_unknown_events() -> None:
    bus = EventBus()
    assert not bus.active
    collector = telemetry.stats_collector(bus)
    assert bus.active
    collector.observe(object())  # type: ignore[arg-type]  # an event type it does not know
    collector.close()
    assert not bus.active
    _produced(bus)
    assert collector.snapshot().counters["records_sent"] == 0


def test_stats_of_a_client_attaches_once_and_counts_from_then_on() -> None:
    class FakeClient:
        def __init__(self) -> None:
            self.events = EventBus()

    client = FakeClient()
    assert telemetry.stats(client).counters["records_sent"] == 0
    _produced(client.events)
    _produced(client.events)
    assert telemetry.stats(client).counters["records_sent"] == 40
    assert len(client.events._subscribers) == 1


def test_a_snapshot_is_json_ready() -> None:
    bus = EventBus()
    collector = telemetry.stats_collector(bus)
    _produced(bus)
    bus.emit(
        make(
            RequestAnswered,
            broker=1,
            api="Produce",
            version=9,
            request_bytes=1,
            response_bytes=1,
            latency=0.001,
        )
    )
    text = json.dumps(collector.snapshot().as_dict())
    loaded = json.loads(text)
    assert loaded["partitions"]["t/0"]["records_acknowledged"] == 10
    assert loaded["brokers"]["1"]["requests"] == 1


def test_stats_every_pushes_snapshots_until_closed() -> None:
    bus = EventBus()
    pushed: list[telemetry.Stats] = []
    two = threading.Event()

    def callback(stats: telemetry.Stats) -> None:
        pushed.append(stats)
        if len(pushed) >= 2:
            two.set()

    timer = telemetry.stats_every(bus, 0.05, callback)
    _produced(bus)
    assert two.wait(10)
    timer.close()
    assert not bus.active
    count = len(pushed)
    assert pushed[-1].counters["records_sent"] == 20
    assert pushed[0].time <= pushed[-1].time
    # Closed: no push follows (a push needs a full interval; wait for three).
    assert not threading.Event().wait(0.15)
    assert len(pushed) == count


def test_stats_every_says_a_failing_callback_once(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    three = threading.Event()
    calls = []

    def broken(_stats: telemetry.Stats) -> None:
        calls.append(1)
        if len(calls) >= 3:
            three.set()
        raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, "pykaf.telemetry"):
        with telemetry.stats_every(bus, 0.02, broken) as timer:
            assert three.wait(10)
        assert timer.failures >= 3
    said = [r for r in caplog.records if "stats callback" in r.getMessage()]
    assert len(said) == 1
    assert "RuntimeError" in said[0].getMessage()


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_stats_every_refuses_a_bad_interval(interval: float) -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="positive number of seconds"):
        telemetry.stats_every(bus, interval, print)
    assert not bus.active  # the collector it made was closed again


def test_telemetry_refuses_what_has_no_events() -> None:
    with pytest.raises(TypeError, match=r"they have \.events"):
        telemetry.stats_collector(object())


def test_every_event_type_has_a_stats_handler_and_every_handler_an_event() -> None:
    from pykaf._telemetry import _events
    from pykaf._telemetry._dispatch import handlers_of
    from pykaf._telemetry._stats import StatsCollector

    collector = StatsCollector(EventBus())
    kinds = {getattr(_events, name) for name in _events.__all__} - {_events.Event}
    assert set(handlers_of(collector)) == kinds
    # A handler named after no event (a typo) would never run.
    named = {name for name in dir(collector) if name.startswith("_on_")}
    assert len(named) == len(kinds)
