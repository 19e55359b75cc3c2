"""The producer's background tasks on the event loop (the metadata refresh, the request
for a producer id) go on after a bug: an exception that is none of the client's errors
is logged at ERROR with its traceback, once, and the task tries again after its backoff.
Before, the task ended; the next pump or refresh started a new one, and asyncio printed
the lost exception only when the task was collected ("never retrieved")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _custody_support import FAST, one_broker

from pykaf._producer._engine import ProducerEngine
from pykaf._producer._metadata import ProducerMetadata
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(2) as running:
        yield running


def _failing_once(real: Callable[..., Any], error: Exception) -> Callable[..., Any]:
    left = [1]

    def call(*args: Any, **kwargs: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise error
        return real(*args, **kwargs)

    return call


def _async_failing_once(real: Callable[..., Any], error: Exception) -> Callable[..., Any]:
    left = [1]

    async def call(*args: Any, **kwargs: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise error
        return await real(*args, **kwargs)

    return call


@pytest.mark.parametrize("where", ["metadata", "producer id"])
def test_a_bug_in_a_background_task_is_said_once_and_the_task_goes_on(
    cluster: BlockingCluster,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    bug = KeyError(f"a bug in the {where} task")
    if where == "metadata":
        monkeypatch.setattr(ProducerMetadata, "_apply", _failing_once(ProducerMetadata._apply, bug))
    else:
        real = ProducerEngine._ask_producer_id
        monkeypatch.setattr(ProducerEngine, "_ask_producer_id", _async_failing_once(real, bug))
    with (
        caplog.at_level(logging.ERROR, logger="pykaf.producer"),
        Producer(cluster.bootstrap, **FAST) as producer,
    ):
        metadata = producer.send("t", b"v", partition=1).result(20)
        assert metadata.partition == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    said = [r for r in errors if r.name == "pykaf.producer"]
    assert len(said) == 1, [r.getMessage() for r in errors]
    assert said[0].exc_info is not None
    assert said[0].exc_info[1] is bug
    assert not [r for r in errors if "never retrieved" in r.getMessage()]


def test_a_bug_that_comes_again_after_a_good_refresh_is_said_again(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once per episode, not once per producer: a refresh that got through ends it.
    cluster.create_topic("u", 1)
    real = ProducerMetadata._apply
    with (
        caplog.at_level(logging.ERROR, logger="pykaf.producer"),
        Producer(cluster.bootstrap, **FAST) as producer,
    ):
        for topic in ("t", "u"):  # each one's first refresh fails, the next gets through
            monkeypatch.setattr(ProducerMetadata, "_apply", _failing_once(real, KeyError(topic)))
            producer.send(topic, b"v").result(20)
    said = [r for r in caplog.records if r.name == "pykaf.producer" and r.levelno >= logging.ERROR]
    assert [repr(r.exc_info[1]) for r in said if r.exc_info] == ["KeyError('t')", "KeyError('u')"]
