"""DeliveryFuture behaves as a concurrent.futures.Future, built lazily."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from pykaf._producer._future import DeliveryFuture


def test_it_is_a_standard_future() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    assert isinstance(future, concurrent.futures.Future)
    assert not future.done()
    assert not future.cancelled()
    assert not future.running()
    future.set_result(7)
    assert future.done()
    assert future.result() == 7
    assert future.exception() is None


def test_an_unwaited_future_builds_no_condition() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    future.set_result(1)
    assert future.result() == 1
    assert future._cond is None


def test_exception_is_raised_by_result() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    error = ValueError("boom")
    future.set_exception(error)
    assert future.exception() is error
    with pytest.raises(ValueError, match="boom"):
        future.result()


def test_result_times_out_when_pending() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.01)


def test_setting_twice_is_an_invalid_state() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(2)
    future.try_set_result(3)  # the reporter's path: silently ignored
    future.try_set_exception(ValueError())
    assert future.result() == 1


def test_cancel_then_resolve_is_ignored_by_the_try_path() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    assert future.cancel()
    assert future.cancelled()
    future.try_set_result(1)
    future.try_set_exception(ValueError())
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(1)


def test_done_callbacks_before_and_after() -> None:
    seen: list[object] = []
    future: DeliveryFuture[int] = DeliveryFuture()
    future.add_done_callback(lambda f: seen.append(("before", f.result())))
    future.set_result(5)
    future.add_done_callback(lambda f: seen.append(("after", f.result())))
    assert seen == [("before", 5), ("after", 5)]


def test_a_waiter_in_another_thread_is_woken() -> None:
    future: DeliveryFuture[int] = DeliveryFuture()
    got: list[int] = []
    started = threading.Event()

    def wait() -> None:
        started.set()
        got.append(future.result(timeout=10))

    thread = threading.Thread(target=wait)
    thread.start()
    assert started.wait(10)
    future.set_result(9)
    thread.join(10)
    assert got == [9]


def test_wait_and_as_completed_work() -> None:
    futures: list[DeliveryFuture[int]] = [DeliveryFuture() for _ in range(3)]
    futures[1].set_result(1)
    done, pending = concurrent.futures.wait(futures, timeout=0.01)
    assert done == {futures[1]}
    assert pending == {futures[0], futures[2]}
    timer = threading.Timer(0.01, futures[0].set_exception, (KeyError("k"),))
    timer.start()
    futures[2].set_result(2)
    completed = list(concurrent.futures.as_completed(futures, timeout=10))
    timer.join()
    assert set(completed) == set(futures)
    assert isinstance(futures[0].exception(), KeyError)


def test_racing_waiters_and_resolvers_never_miss_a_wake_up() -> None:
    # The lazy condition's one race: a waiter creating it while the resolver takes the
    # fast path. Every waiter must return its own value within the bound.
    count = 2000
    futures: list[DeliveryFuture[int]] = [DeliveryFuture() for _ in range(count)]
    results: list[int] = []
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            results.extend(f.result(timeout=10) for f in futures)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    for index, future in enumerate(futures):
        future.try_set_result(index)
    thread.join(20)
    assert not thread.is_alive()
    assert errors == []
    assert results == list(range(count))
