"""``EventBus``: subscribing, unsubscribing, the ``active`` flag emitters test, and a
subscriber's failure logged once without reaching the emitter."""

from __future__ import annotations

import logging

import pytest

from pykaf.events import ConnectionFailed, Event, EventBus, Throttled

LOGGER = "pykaf.telemetry"


def _event(n: int = 0) -> Throttled:
    return Throttled(time=float(n), client_id="test", broker=1, api="Fetch", throttle_time=0.5)


def test_a_bus_nobody_listens_to_is_inactive_and_subscribing_activates_it() -> None:
    bus = EventBus()
    assert bus.active is False
    heard: list[Event] = []
    unsubscribe = bus.subscribe(heard.append)
    assert bus.active is True
    bus.emit(_event(1))
    unsubscribe()
    assert bus.active is False
    bus.emit(_event(2))
    assert heard == [_event(1)]
    unsubscribe()  # twice: harmless
    assert bus.active is False


def test_subscribers_given_as_one_callable_or_a_list_hear_every_event_in_order() -> None:
    first: list[Event] = []
    second: list[Event] = []
    assert EventBus(first.append).active
    bus = EventBus([first.append, second.append])
    bus.emit(_event(1))
    bus.emit(_event(2))
    assert first == second == [_event(1), _event(2)]


def test_unsubscribing_one_keeps_the_others() -> None:
    kept: list[Event] = []
    gone: list[Event] = []
    bus = EventBus(kept.append)
    unsubscribe = bus.subscribe(gone.append)
    unsubscribe()
    bus.emit(_event())
    assert kept == [_event()]
    assert gone == []
    assert bus.active


def test_a_subscriber_that_raises_is_logged_once_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def broken(event: Event) -> None:
        raise RuntimeError("bug in a subscriber")

    heard: list[Event] = []
    bus = EventBus([broken, heard.append])
    for n in range(5):
        bus.emit(_event(n))  # never raises
    assert heard == [_event(n) for n in range(5)]
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1, warnings
    assert "RuntimeError" in warnings[0]


def test_a_subscriber_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        EventBus().subscribe(42)  # type: ignore[arg-type]


def test_events_are_frozen_values() -> None:
    event = ConnectionFailed(
        time=1.0, client_id=None, broker=None, address="127.0.0.1:1", error="E", reason="r"
    )
    with pytest.raises(AttributeError):
        event.reason = "other"  # type: ignore[misc]
    assert event == ConnectionFailed(
        time=1.0, client_id=None, broker=None, address="127.0.0.1:1", error="E", reason="r"
    )
