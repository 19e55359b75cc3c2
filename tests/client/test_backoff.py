"""Bounded exponential backoff with jitter, and per-address reconnect state: no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._client._backoff import Backoff, ReconnectState


def test_delay_doubles_from_initial_up_to_the_maximum_without_jitter() -> None:
    backoff = Backoff(initial=0.05, maximum=1.0, jitter=0.0)
    delays = [backoff.delay(n, 0.5) for n in range(1, 8)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay(0, 0.5) == 0.0


def test_jitter_spreads_both_ways_around_the_base() -> None:
    backoff = Backoff(initial=1.0, maximum=10.0, jitter=0.2)
    assert backoff.delay(1, 0.0) == pytest.approx(0.8)
    assert backoff.delay(1, 0.5) == pytest.approx(1.0)
    assert backoff.delay(1, 0.999999) == pytest.approx(1.2, rel=1e-5)


def test_jitter_never_exceeds_the_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=2.0, jitter=0.5)
    assert backoff.delay(10, 0.999) == 2.0


@settings(max_examples=300, deadline=None)
@given(
    initial=st.floats(0, 5),
    extra=st.floats(0, 60),
    multiplier=st.floats(1, 10),
    jitter=st.floats(0, 1),
    attempt=st.integers(0, 10_000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_always_within_zero_and_the_maximum(
    initial: float, extra: float, multiplier: float, jitter: float, attempt: int, rand: float
) -> None:
    backoff = Backoff(
        initial=initial, maximum=initial + extra, multiplier=multiplier, jitter=jitter
    )
    assert 0.0 <= backoff.delay(attempt, rand) <= backoff.maximum


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0, "maximum": 1.0},
        {"initial": 2.0, "maximum": 1.0},
        {"initial": 0.1, "maximum": 1.0, "multiplier": 0.5},
        {"initial": 0.1, "maximum": 1.0, "jitter": 1.5},
        {"initial": float("nan"), "maximum": 1.0},
    ],
)
def test_bad_backoff_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


def test_reconnect_state_schedules_attempts_and_resets_on_success() -> None:
    state = ReconnectState(Backoff(initial=0.1, maximum=0.4, jitter=0.0))
    assert state.ready(0.0)
    assert not state.failing
    error = ConnectionRefusedError()
    assert state.failed(10.0, 0.5, error) == pytest.approx(0.1)
    assert state.failing
    assert state.last_error is error
    assert not state.ready(10.05)
    assert state.wait(10.05) == pytest.approx(0.05)
    assert state.ready(10.1)
    state.failed(10.1, 0.5)
    state.failed(10.3, 0.5)
    assert state.failed(10.7, 0.5) == pytest.approx(0.4)  # capped
    state.succeeded()
    assert not state.failing
    assert state.ready(10.7)
    assert state.last_error is None
    assert state.failed(11.0, 0.5) == pytest.approx(0.1)  # starts over
