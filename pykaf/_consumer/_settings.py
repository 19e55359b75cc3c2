"""Consumer settings: one frozen value, validated once at construction, seconds as floats.

Kafka's names in snake_case. Every client setting (``client_id``, ``connect_timeout``,
``request_timeout``, ``retry_backoff``...) passes through to ``ClientSettings``; the
consumer reads the client's ``request_timeout`` and ``retry_backoff`` from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from pykaf._client._settings import ClientSettings
from pykaf._client._validate import boolean, choice, count, seconds, unknown_setting
from pykaf.protocol._compression import DEFAULT_MAX_DECOMPRESSED

__all__ = ["ASSIGNORS", "AutoOffsetReset", "ConsumerSettings", "IsolationLevel"]

AutoOffsetReset: TypeAlias = Literal["earliest", "latest", "error"]
IsolationLevel: TypeAlias = Literal["read_uncommitted", "read_committed"]
ASSIGNORS: Final = ("range", "roundrobin", "cooperative-sticky")
_RESETS: Final = ("earliest", "latest", "error")
_ISOLATION: Final = ("read_uncommitted", "read_committed")


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    return seconds(name, value, allow_zero=allow_zero)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    """How a consumer fetches, buffers, commits and stays in its group. Seconds."""

    #: Where to start when there is no valid position (no committed offset, or the
    #: position is out of range): "earliest", "latest", or "error" (raise
    #: ``OffsetOutOfRangeError`` / ``NoOffsetError``).
    auto_offset_reset: AutoOffsetReset = "latest"
    #: Commit what was handed to the application every ``auto_commit_interval`` (groups
    #: only). None: True with a group_id.
    enable_auto_commit: bool | None = None
    auto_commit_interval: float = 5.0
    #: A fetch waits (up to ``fetch_max_wait``) until the broker has this many bytes.
    fetch_min_bytes: int = 1
    #: Bound on one fetch response (the first batch is returned whole even if larger).
    fetch_max_bytes: int = 50 * 1024 * 1024
    #: Bound per partition in one fetch response.
    max_partition_fetch_bytes: int = 1024 * 1024
    #: How long the broker may hold a fetch waiting for ``fetch_min_bytes``.
    fetch_max_wait: float = 0.5
    #: Default ``max_records`` of ``poll()``.
    max_poll_records: int = 500
    #: "read_committed" hides aborted transactions' records and stops at the last stable
    #: offset; "read_uncommitted" (the default) reads everything.
    isolation_level: IsolationLevel = "read_uncommitted"
    #: Group membership (classic protocol): see Kafka's settings of the same names.
    session_timeout: float = 45.0
    heartbeat_interval: float = 3.0
    max_poll_interval: float = 300.0
    #: Bound on a rebalance; None: ``max_poll_interval``.
    rebalance_timeout: float | None = None
    partition_assignment_strategy: tuple[str, ...] = ("range", "cooperative-sticky")
    #: Static membership (KIP-345): a stable id for this member across restarts.
    group_instance_id: str | None = None
    #: Verify every batch's CRC32C.
    check_crcs: bool = True
    #: Iteration stops once every assigned partition reached its end (KafkaEx's
    #: no_wait_at_logend); False: it waits for new records.
    stop_at_end: bool = False
    #: Bound on fetched bytes held before the application takes them (prefetch).
    buffer_max_bytes: int = 64 * 1024 * 1024
    #: Bound on what one compressed batch may decompress to: a guard against
    #: decompression bombs (a few KiB on the wire that claim gigabytes). A batch over it
    #: raises ``DecompressionLimitError`` naming this setting, with the partition and
    #: offsets to ``seek`` past it. Raise it to read batches of extreme ratio (100 MiB of
    #: zeros compress to a few KiB); memory grows by up to this much per batch decoded.
    max_decompressed_batch_bytes: int = DEFAULT_MAX_DECOMPRESSED
    #: Everything about connections and metadata.
    client: ClientSettings = field(default_factory=ClientSettings)

    def __post_init__(self) -> None:
        given: object = self.auto_offset_reset
        reset = choice(
            "auto_offset_reset",
            given,
            _RESETS,
            " ('error' is Java's 'none')" if given == "none" else "",
        )
        auto = self.enable_auto_commit
        if auto is not None:
            boolean("enable_auto_commit", auto)
        session = _seconds("session_timeout", self.session_timeout)
        heartbeat = _seconds("heartbeat_interval", self.heartbeat_interval)
        if heartbeat >= session:
            raise ValueError(
                f"heartbeat_interval ({heartbeat:g}s) must be below session_timeout"
                f" ({session:g}s); Kafka advises a third of it at most"
            )
        poll_interval = _seconds("max_poll_interval", self.max_poll_interval)
        rebalance = (
            poll_interval
            if self.rebalance_timeout is None
            else _seconds("rebalance_timeout", self.rebalance_timeout)
        )
        strategy = self.partition_assignment_strategy
        if isinstance(strategy, str):
            strategy = (strategy,)
        if not isinstance(strategy, Sequence) or not strategy:
            raise ValueError(
                "partition_assignment_strategy must be a non-empty list of assignor names"
                f" ({', '.join(ASSIGNORS)}), not {self.partition_assignment_strategy!r}"
            )
        strategy = tuple(strategy)
        for name in strategy:
            choice("partition_assignment_strategy entries", name, ASSIGNORS)
        if len(set(strategy)) != len(strategy):
            raise ValueError(f"partition_assignment_strategy repeats a name: {strategy!r}")
        instance = self.group_instance_id
        if instance is not None and (not isinstance(instance, str) or not instance):
            raise ValueError(f"group_instance_id must be a non-empty str or None, not {instance!r}")
        fetch_max_bytes = count("fetch_max_bytes", self.fetch_max_bytes)
        if not isinstance(self.client, ClientSettings):
            raise ValueError(f"client must be a ClientSettings, not {self.client!r}")
        for name, value in (
            ("auto_offset_reset", reset),
            ("auto_commit_interval", _seconds("auto_commit_interval", self.auto_commit_interval)),
            ("fetch_min_bytes", count("fetch_min_bytes", self.fetch_min_bytes, minimum=0)),
            ("fetch_max_bytes", fetch_max_bytes),
            (
                "max_partition_fetch_bytes",
                count("max_partition_fetch_bytes", self.max_partition_fetch_bytes),
            ),
            ("fetch_max_wait", _seconds("fetch_max_wait", self.fetch_max_wait, allow_zero=True)),
            ("max_poll_records", count("max_poll_records", self.max_poll_records)),
            ("isolation_level", choice("isolation_level", self.isolation_level, _ISOLATION)),
            ("session_timeout", session),
            ("heartbeat_interval", heartbeat),
            ("max_poll_interval", poll_interval),
            ("rebalance_timeout", rebalance),
            ("partition_assignment_strategy", strategy),
            ("check_crcs", boolean("check_crcs", self.check_crcs)),
            ("stop_at_end", boolean("stop_at_end", self.stop_at_end)),
            ("buffer_max_bytes", count("buffer_max_bytes", self.buffer_max_bytes, maximum=2**62)),
            (
                "max_decompressed_batch_bytes",
                count(
                    "max_decompressed_batch_bytes",
                    self.max_decompressed_batch_bytes,
                    maximum=2**62,
                    unit="bytes",
                ),
            ),
        ):
            object.__setattr__(self, name, value)
        if self.fetch_max_wait >= self.client.request_timeout:
            raise ValueError(
                f"fetch_max_wait ({self.fetch_max_wait:g}s) must be below request_timeout"
                f" ({self.client.request_timeout:g}s)"
            )

    # -- derived ------------------------------------------------------------------------

    @property
    def read_committed(self) -> bool:
        return self.isolation_level == "read_committed"

    @property
    def isolation_code(self) -> int:
        """``isolation_level`` as the wire's int8."""
        return 1 if self.isolation_level == "read_committed" else 0

    def auto_commit(self, group_id: str | None) -> bool:
        """Is auto-commit on for a consumer with this ``group_id``?"""
        if group_id is None:
            return False
        return True if self.enable_auto_commit is None else self.enable_auto_commit

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ConsumerSettings:
        """Settings from keyword options: consumer names here, the rest to the client.
        An unknown name is refused (``TypeError``) with the close ones."""
        own = [f.name for f in dataclasses.fields(cls) if f.name != "client"]
        client_names = [f.name for f in dataclasses.fields(ClientSettings)]
        mine: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for name, value in options.items():
            if name in own:
                mine[name] = value
            elif name in client_names:
                theirs[name] = value
            else:
                raise unknown_setting("consumer setting", name, sorted({*own, *client_names}))
        return cls(**mine, client=ClientSettings.from_options(theirs))
