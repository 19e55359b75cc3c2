"""ProducerSettings: defaults, normalisation, and every bad setting refused with advice."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pykaf._client._settings import ClientSettings
from pykaf._producer._settings import ProducerSettings


def test_defaults() -> None:
    s = ProducerSettings()
    assert s.acks == -1
    assert s.acks_code == -1
    assert s.enable_idempotence is True
    assert s.idempotent
    assert s.linger == 0.005
    assert s.batch_size == 256 * 1024
    assert s.compression == "none"
    assert s.buffer_memory == 32 * 1024 * 1024
    assert s.max_block == 60.0
    assert s.delivery_timeout == 120.0
    assert s.max_in_flight_per_connection == 5
    assert s.max_request_size == 1024 * 1024
    assert s.partitioner == "sticky"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.linger = 1.0  # type: ignore[misc]


def test_shared_names_reach_the_client_settings() -> None:
    s = ProducerSettings.from_options(
        {"request_timeout": 5, "retry_backoff": 0.2, "client_id": "me", "connect_timeout": 3}
    )
    assert isinstance(s.client, ClientSettings)
    assert s.client.request_timeout == 5.0
    assert s.client.retry_backoff == 0.2
    assert s.client.client_id == "me"
    assert s.client.connect_timeout == 3
    assert s.client.max_in_flight_per_connection == 5


@pytest.mark.parametrize(("acks", "code"), [(0, 0), (1, 1), (-1, -1), ("all", -1)])
def test_acks_values(acks: Any, code: int) -> None:
    s = ProducerSettings(acks=acks, enable_idempotence=code == -1)
    assert s.acks_code == code


def test_explicit_acks_one_silently_disables_default_idempotence() -> None:
    # As the Java client: only an explicit enable_idempotence=True is an error.
    assert ProducerSettings(acks=1).idempotent is False
    assert ProducerSettings(acks=0).idempotent is False
    assert ProducerSettings(acks="all").idempotent is True


def test_unknown_name_names_close_matches() -> None:
    with pytest.raises(TypeError, match="did you mean linger"):
        ProducerSettings.from_options({"lingr": 0.1})
    with pytest.raises(TypeError, match="did you mean request_timeout"):
        ProducerSettings.from_options({"request_timout": 1})
    with pytest.raises(TypeError, match="unknown producer setting 'zzz'"):
        ProducerSettings.from_options({"zzz": 1})


@pytest.mark.parametrize(
    ("options", "advice"),
    [
        ({"linger": -1}, "linger must be a finite number of seconds >= 0"),
        ({"linger": float("nan")}, "linger"),
        ({"acks": 2}, "acks must be 0, 1, -1 or 'all'"),
        ({"acks": True}, "acks"),
        ({"acks": "one"}, "acks"),
        ({"acks": 1, "enable_idempotence": True}, "set acks='all' or enable_idempotence=False"),
        ({"acks": 0, "enable_idempotence": True}, "idempotence needs acks='all'"),
        ({"enable_idempotence": "yes"}, "enable_idempotence must be True or False"),
        ({"max_in_flight_per_connection": 6}, "idempotence allows at most 5"),
        ({"max_in_flight_per_connection": 0}, "max_in_flight_per_connection"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"buffer_memory": -1}, "buffer_memory"),
        ({"max_request_size": 0}, "max_request_size"),
        ({"max_block": -0.1}, "max_block"),
        ({"delivery_timeout": 0}, "delivery_timeout"),
        ({"delivery_timeout": 10, "request_timeout": 30}, "raise delivery_timeout"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"retry_backoff": 2, "retry_backoff_max": 1}, "retry_backoff_max"),
        ({"compression": "brotli"}, "compression must be one of"),
        ({"compression": "gzip", "compression_level": 99}, "compression_level"),
        ({"compression": "snappy", "compression_level": 1}, "no compression levels"),
        ({"partitioner": "roundrobin"}, "partitioner must be one of"),
        ({"partitioner": 3}, "partitioner"),
        ({"topic_settings": {"t": {"lingr": 1}}}, "did you mean linger"),
        ({"topic_settings": {"t": {"batch_size": -1}}}, r"topic_settings\['t'\]\['batch_size'\]"),
        ({"topic_settings": {"t": {"compression": "lzma"}}}, "compression"),
        ({"topic_settings": {"t": 5}}, "must be a dict"),
        ({"topic_settings": [1]}, "topic_settings must be a dict"),
        ({"connect_timeout": -1}, "connect_timeout"),
    ],
)
def test_bad_settings_are_refused_with_advice(options: dict[str, Any], advice: str) -> None:
    with pytest.raises((ValueError, TypeError), match=advice):
        ProducerSettings.from_options(options)


def test_non_idempotent_may_have_more_in_flight() -> None:
    s = ProducerSettings(enable_idempotence=False, max_in_flight_per_connection=10)
    assert s.max_in_flight_per_connection == 10
    assert s.client.max_in_flight_per_connection == 10


def test_topic_overrides() -> None:
    def custom(topic: str, key: bytes | None, count: int) -> int:
        return 0

    s = ProducerSettings(
        linger=0.01,
        compression="gzip",
        compression_level=5,
        topic_settings={
            "fast": {"linger": 0, "batch_size": 1000, "partitioner": "random"},
            "small": {"compression": "zstd", "compression_level": 3},
            "plain": {"compression": "none"},
            "mine": {"partitioner": custom},
        },
    )
    fast = s.for_topic("fast")
    assert (fast.linger, fast.batch_size, fast.partitioner) == (0.0, 1000, "random")
    assert (fast.compression, fast.compression_level) == ("gzip", 5)
    small = s.for_topic("small")
    assert (small.compression, small.compression_level) == ("zstd", 3)
    # A topic that changes its codec drops the producer's level (it may not fit).
    assert s.for_topic("plain").compression_level is None
    assert s.for_topic("mine").partitioner is custom
    other = s.for_topic("other")
    assert (other.linger, other.compression) == (0.01, "gzip")


def test_compression_none_means_no_compression() -> None:
    # Python users (aiokafka, kafka-python) write None for "none".
    s = ProducerSettings(compression=None, topic_settings={"t": {"compression": None}})
    assert s.compression == "none"
    assert s.for_topic("t").compression == "none"
    assert s.for_topic("other").compression == "none"


def test_compression_names_are_normalised() -> None:
    assert ProducerSettings(compression="GZIP").compression == "gzip"
