"""ConsumerSettings: defaults, validation, and the split with ClientSettings."""

from __future__ import annotations

import dataclasses

import pytest

from pykaf._client._settings import ClientSettings
from pykaf._consumer._settings import ConsumerSettings


def test_defaults() -> None:
    s = ConsumerSettings()
    assert s.auto_offset_reset == "latest"
    assert s.enable_auto_commit is None
    assert s.auto_commit("g")
    assert not s.auto_commit(None)
    assert s.rebalance_timeout == s.max_poll_interval == 300.0
    assert s.partition_assignment_strategy == ("range", "cooperative-sticky")
    assert (s.fetch_max_bytes, s.max_partition_fetch_bytes) == (50 * 2**20, 2**20)
    assert s.buffer_max_bytes == 64 * 2**20
    assert s.max_decompressed_batch_bytes == 64 * 2**20
    assert s.max_poll_records == 500
    assert not s.read_committed
    assert s.isolation_code == 0
    assert s.check_crcs
    assert not s.stop_at_end
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stop_at_end = True  # type: ignore[misc]


def test_options_split_between_consumer_and_client() -> None:
    s = ConsumerSettings.from_options(
        {"client_id": "me", "request_timeout": 5.0, "isolation_level": "read_committed"}
    )
    assert s.client.client_id == "me"
    assert s.client.request_timeout == 5.0
    assert s.read_committed
    assert s.isolation_code == 1
    with pytest.raises(TypeError, match="did you mean max_poll_records"):
        ConsumerSettings.from_options({"max_pol_records": 3})
    with pytest.raises(TypeError, match="unknown consumer setting"):
        ConsumerSettings.from_options({"zzz": 1})
    big = ConsumerSettings.from_options({"max_decompressed_batch_bytes": 2**30})
    assert big.max_decompressed_batch_bytes == 2**30


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"auto_offset_reset": "smallest"}, "auto_offset_reset must be one of"),
        ({"auto_offset_reset": "none"}, "Java's 'none'"),
        ({"enable_auto_commit": "yes"}, "enable_auto_commit must be True or False"),
        ({"heartbeat_interval": 50.0}, "below session_timeout"),
        ({"session_timeout": 0}, "session_timeout must be"),
        ({"fetch_max_wait": -1}, "fetch_max_wait must be"),
        ({"fetch_max_bytes": 0}, "fetch_max_bytes must be"),
        ({"max_poll_records": 1.5}, "max_poll_records must be"),
        ({"isolation_level": "committed"}, "isolation_level must be one of"),
        ({"partition_assignment_strategy": []}, "non-empty list"),
        ({"partition_assignment_strategy": ["sticky"]}, "must be one of"),
        ({"partition_assignment_strategy": ["range", "range"]}, "repeats"),
        ({"group_instance_id": ""}, "group_instance_id"),
        ({"check_crcs": 1}, "check_crcs must be True or False"),
        ({"buffer_max_bytes": -1}, "buffer_max_bytes"),
        ({"max_decompressed_batch_bytes": 0}, r"max_decompressed_batch_bytes must be .*bytes"),
        ({"max_decompressed_batch_bytes": True}, "max_decompressed_batch_bytes must be"),
        ({"max_decompressed_batch_bytes": 1e9}, "max_decompressed_batch_bytes must be"),
        ({"max_decompressed_batch_bytes": 2**63}, "max_decompressed_batch_bytes must be"),
        ({"client": "x"}, "client must be a ClientSettings"),
    ],
)
def test_invalid(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConsumerSettings(**options)  # type: ignore[arg-type]


def test_fetch_wait_must_fit_the_request_timeout() -> None:
    with pytest.raises(ValueError, match="below request_timeout"):
        ConsumerSettings(fetch_max_wait=5.0, client=ClientSettings(request_timeout=2.0))


def test_normalised_values() -> None:
    s = ConsumerSettings(
        partition_assignment_strategy="roundrobin",  # type: ignore[arg-type]
        rebalance_timeout=10,
        auto_commit_interval=1,
    )
    assert s.partition_assignment_strategy == ("roundrobin",)
    assert s.rebalance_timeout == 10.0
    assert isinstance(s.rebalance_timeout, float)
    assert isinstance(s.auto_commit_interval, float)
