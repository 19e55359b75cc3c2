"""Producer settings: one frozen value, validated once at construction, seconds as floats.

Kafka's names in snake_case. Every client setting (``client_id``, ``connect_timeout``,
``metadata_max_age``...) passes through to ``ClientSettings``; the few names both share
(``request_timeout``, ``retry_backoff``, ``max_in_flight_per_connection``) are producer
fields copied into the client's settings, so one value governs both layers.

The rules follow the Java client where it has one: ``delivery_timeout >= linger +
request_timeout``; idempotence needs ``acks="all"`` and at most 5 requests in flight; an
explicit ``acks`` of 0 or 1 with idempotence left at its default turns idempotence off
silently, while ``enable_idempotence=True`` with such acks is an error.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from pykaf._client._settings import ClientSettings
from pykaf._client._validate import MAX_INT32, count, seconds, unknown_setting
from pykaf._errors import LocalProtocolError
from pykaf._producer._partitioner import PARTITIONER_NAMES, PartitionerSpec
from pykaf.protocol._compression import Compression, validate_level

__all__ = [
    "CUSTODY_LEVELS",
    "Acks",
    "BatchRecord",
    "Custody",
    "ProducerSettings",
    "TopicSettings",
    "TransformBatch",
]

Acks: TypeAlias = Literal[0, 1, -1, "all"]
#: A record as a batch holds it and ``transform_batch`` sees it: ``(key, value, headers,
#: timestamp)``; headers a list of ``(name, value)`` pairs or None, timestamp ms or None.
BatchRecord: TypeAlias = tuple[
    bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int | None
]
#: ``transform_batch(topic, partition, records) -> records`` (``_transform`` says more).
TransformBatch: TypeAlias = Callable[[str, int, list[BatchRecord]], Sequence[Any]]
Custody: TypeAlias = Literal["memory", "journal", "journal_sync"]
CUSTODY_LEVELS: Final = ("memory", "journal", "journal_sync")

# Java's limit for idempotent producers: the broker keeps the last 5 batches per producer.
MAX_IN_FLIGHT_IDEMPOTENT: Final = 5
_COMPRESSIONS: Final = ("none", "gzip", "snappy", "lz4", "zstd")
_TOPIC_KEYS: Final = ("batch_size", "linger", "partitioner", "compression", "compression_level")
# Names shared with ClientSettings: the producer's value is copied into the client's.
_SHARED: Final = ("request_timeout", "retry_backoff", "max_in_flight_per_connection")


def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    return seconds(name, value, allow_zero=allow_zero)


def _count(name: str, value: object, *, minimum: int = 1, maximum: int = MAX_INT32) -> int:
    return count(name, value, minimum=minimum, maximum=maximum, unit="bytes")


def _compression(name: str, value: object) -> str:
    if value is None:
        return "none"  # what Python users (aiokafka, kafka-python) mean by None
    if isinstance(value, str) and value.lower() in _COMPRESSIONS:
        return value.lower()
    if isinstance(value, Compression):
        return value.name.lower()
    raise ValueError(f"{name} must be one of {', '.join(_COMPRESSIONS)}, not {value!r}")


def _level(codec: str, level: object, name: str) -> int | None:
    try:
        validate_level(Compression.parse(codec), level)  # type: ignore[arg-type]
    except LocalProtocolError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return level  # type: ignore[return-value]


def _partitioner(name: str, value: object) -> PartitionerSpec:
    if isinstance(value, str):
        if value in PARTITIONER_NAMES:
            return value
    elif callable(value):
        return value
    raise ValueError(
        f"{name} must be one of {', '.join(PARTITIONER_NAMES)} or a function"
        f" (topic, key, partition_count) -> partition, not {value!r}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSettings:
    """The settings one topic is produced with: the producer's, with its overrides."""

    batch_size: int
    linger: float
    partitioner: PartitionerSpec
    compression: str
    compression_level: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerSettings:
    """How a producer batches, retries and bounds its memory. Durations in seconds."""

    #: 0 (no answer), 1 (the leader wrote it), -1 or "all" (every in-sync replica).
    acks: Acks = "all"
    #: Producer id and sequences, so retries never duplicate or reorder. None: on, unless
    #: ``acks`` is explicitly 0 or 1 (then off, as in the Java client).
    enable_idempotence: bool | None = None
    #: How long a batch waits for more records before it is sent.
    linger: float = 0.005
    #: Target size of a batch (bytes); a single larger record gets a batch of its own.
    #: 256 KiB, not the Java client's 16 KiB: each batch costs the producer's Python
    #: some 10 us, so 1 KiB records in 16 KiB batches ran at 0.6x of 256 KiB ones
    #: (benchmarks/custody.py; librdkafka's default is 1 MB, 128 KiB-1 MiB measured
    #: alike). Memory is still reserved in 16 KiB steps as a batch fills.
    batch_size: int = 256 * 1024
    #: "none" (or None), "gzip", "snappy", "lz4" or "zstd".
    compression: str | None = "none"
    compression_level: int | None = None
    #: Bytes of records the producer may hold (queued or in flight).
    buffer_memory: int = 32 * 1024 * 1024
    #: How long produce()/send() may block when the buffer is full (or the topic's
    #: metadata is not known yet) before raising.
    max_block: float = 60.0
    #: Upper bound from produce() to the report, retries included.
    delivery_timeout: float = 120.0
    #: Bound on one request to a broker (also sent as the broker's replication wait).
    request_timeout: float = 30.0
    #: First wait before retrying a failed batch; doubles per attempt up to the max.
    retry_backoff: float = 0.1
    retry_backoff_max: float = 1.0
    #: Produce requests in flight per broker (pipelined on one connection).
    max_in_flight_per_connection: int = 5
    #: Largest Produce request; a record whose batch alone is larger fails at once.
    max_request_size: int = 1024 * 1024
    #: "sticky" (KIP-480 for keyless, murmur2 for keyed), "murmur2", "random",
    #: "sticky_round_robin", "strict_round_robin", or ``fn(topic, key, count) -> int``.
    partitioner: PartitionerSpec = "sticky"
    #: Per-topic overrides of batch_size, linger, partitioner, compression(_level).
    topic_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ekaf's batch hook: ``fn(topic, partition, records) -> records``, called once per
    #: batch (on the producer's loop thread) before it is encoded, to rewrite or merge
    #: its records (``(key, value, headers, timestamp)`` tuples; see ``_transform``).
    transform_batch: TransformBatch | None = None
    #: Who holds a record until it is acknowledged (DESIGN.md "Custody"): "memory"
    #: (RAM only), "journal" (appended to a journal in ``journal_dir`` before produce()
    #: returns, fsynced within ``journal_fsync_interval``), "journal_sync" (produce()
    #: returns after the fsync that covers the record).
    custody: Custody = "memory"
    #: The journal's directory (required by the journal levels; one producer at a time).
    journal_dir: str | os.PathLike[str] | None = None
    #: Bytes the journal's files may hold; full: appends block up to ``max_block``.
    journal_max_bytes: int = 1024 * 1024 * 1024
    #: Size of one journal segment file (acknowledged segments are deleted whole).
    journal_segment_bytes: int = 64 * 1024 * 1024
    #: At most this long between a record's journal append and its fsync ("journal").
    journal_fsync_interval: float = 0.005
    #: None (the default): journaled records never expire, an outage of hours is waited
    #: out. Seconds: a journaled record not delivered this long after it was produced
    #: (its timestamp) fails with ``DeliveryTimeoutError``, like ``delivery_timeout``.
    journal_delivery_timeout: float | None = None
    #: Everything about connections and metadata (the shared names are copied in).
    client: ClientSettings = field(default_factory=ClientSettings)

    def __post_init__(self) -> None:
        acks = self.acks
        if acks == "all":
            acks = -1
        if type(acks) is not int or acks not in (0, 1, -1):
            raise ValueError(
                f"acks must be 0, 1, -1 or 'all', not {self.acks!r}"
                " (Kafka has no acks=2: use 'all' to wait for every in-sync replica)"
            )
        idem = self.enable_idempotence
        if idem is not None and not isinstance(idem, bool):
            raise ValueError(f"enable_idempotence must be True or False, not {idem!r}")
        if idem is None:
            idem = acks == -1
        elif idem and acks != -1:
            raise ValueError(
                f"idempotence needs acks='all' (acks is {self.acks!r}); set acks='all' or"
                " enable_idempotence=False"
            )
        linger = _seconds("linger", self.linger)
        batch_size = _count("batch_size", self.batch_size)
        compression = _compression("compression", self.compression)
        level = _level(compression, self.compression_level, "compression_level")
        buffer_memory = _count("buffer_memory", self.buffer_memory, maximum=2**62)
        max_block = _seconds("max_block", self.max_block)
        request_timeout = _seconds("request_timeout", self.request_timeout, allow_zero=False)
        delivery_timeout = _seconds("delivery_timeout", self.delivery_timeout, allow_zero=False)
        if delivery_timeout < linger + request_timeout:
            raise ValueError(
                f"delivery_timeout ({delivery_timeout:g}s) must be >= linger + request_timeout"
                f" ({linger:g}s + {request_timeout:g}s); raise delivery_timeout or lower"
                " the others"
            )
        retry_backoff = _seconds("retry_backoff", self.retry_backoff)
        retry_backoff_max = _seconds("retry_backoff_max", self.retry_backoff_max)
        if retry_backoff_max < retry_backoff:
            raise ValueError(
                f"retry_backoff_max ({retry_backoff_max:g}s) must be >= retry_backoff"
                f" ({retry_backoff:g}s)"
            )
        in_flight = self.max_in_flight_per_connection
        if type(in_flight) is not int or in_flight < 1:
            raise ValueError(f"max_in_flight_per_connection must be an int >= 1, not {in_flight!r}")
        if idem and in_flight > MAX_IN_FLIGHT_IDEMPOTENT:
            raise ValueError(
                f"max_in_flight_per_connection is {in_flight}, but idempotence allows at"
                f" most {MAX_IN_FLIGHT_IDEMPOTENT}; lower it or set enable_idempotence=False"
            )
        max_request_size = _count("max_request_size", self.max_request_size)
        partitioner = _partitioner("partitioner", self.partitioner)
        if self.transform_batch is not None and not callable(self.transform_batch):
            raise ValueError(
                "transform_batch must be a function (topic, partition, records) -> records,"
                f" not {self.transform_batch!r}"
            )
        topics = self._check_topics(compression, level)
        journal = self._check_journal()
        if not isinstance(self.client, ClientSettings):
            raise ValueError(f"client must be a ClientSettings, not {self.client!r}")
        client = dataclasses.replace(
            self.client,
            request_timeout=request_timeout,
            retry_backoff=retry_backoff,
            max_in_flight_per_connection=in_flight,
        )
        for name, value in (
            ("acks", acks),
            ("enable_idempotence", idem),
            ("linger", linger),
            ("batch_size", batch_size),
            ("compression", compression),
            ("compression_level", level),
            ("buffer_memory", buffer_memory),
            ("max_block", max_block),
            ("delivery_timeout", delivery_timeout),
            ("request_timeout", request_timeout),
            ("retry_backoff", retry_backoff),
            ("retry_backoff_max", retry_backoff_max),
            ("max_request_size", max_request_size),
            ("partitioner", partitioner),
            ("topic_settings", topics),
            ("client", client),
            *journal,
        ):
            object.__setattr__(self, name, value)

    def _check_journal(self) -> list[tuple[str, object]]:
        custody = self.custody
        if custody not in CUSTODY_LEVELS:
            raise ValueError(
                f"custody must be one of {', '.join(map(repr, CUSTODY_LEVELS))}, not {custody!r}"
            )
        directory = self.journal_dir
        if directory is not None and not isinstance(directory, str | os.PathLike):
            raise ValueError(f"journal_dir must be a path (str or os.PathLike), not {directory!r}")
        if custody != "memory" and (directory is None or not os.fspath(directory)):
            raise ValueError(
                f"custody={custody!r} needs journal_dir: the directory its journal is kept in"
                " (created if missing; one producer at a time)"
            )
        max_bytes = _count("journal_max_bytes", self.journal_max_bytes, minimum=4096, maximum=2**62)
        segment = _count(
            "journal_segment_bytes", self.journal_segment_bytes, minimum=4096, maximum=2**62
        )
        if segment > max_bytes:
            raise ValueError(
                f"journal_segment_bytes ({segment}) must be <= journal_max_bytes ({max_bytes})"
            )
        interval = _seconds("journal_fsync_interval", self.journal_fsync_interval)
        expiry = self.journal_delivery_timeout
        if expiry is not None:
            expiry = _seconds("journal_delivery_timeout", expiry, allow_zero=False)
        return [
            ("journal_delivery_timeout", expiry),
            ("journal_max_bytes", max_bytes),
            ("journal_segment_bytes", segment),
            ("journal_fsync_interval", interval),
        ]

    def _check_topics(self, compression: str, level: int | None) -> Mapping[str, Mapping[str, Any]]:
        if not isinstance(self.topic_settings, Mapping):
            raise ValueError(
                "topic_settings must be a dict {topic: {setting: value}}, not"
                f" {self.topic_settings!r}"
            )
        checked: dict[str, Mapping[str, Any]] = {}
        for topic, overrides in self.topic_settings.items():
            if not isinstance(topic, str) or not topic:
                raise ValueError(f"topic_settings keys must be topic names, not {topic!r}")
            if not isinstance(overrides, Mapping):
                raise ValueError(f"topic_settings[{topic!r}] must be a dict, not {overrides!r}")
            where = f"topic_settings[{topic!r}]"
            out: dict[str, Any] = {}
            for key, value in overrides.items():
                if key not in _TOPIC_KEYS:
                    raise unknown_setting(f"setting in {where}", str(key), list(_TOPIC_KEYS))
                name = f"{where}[{key!r}]"
                if key == "batch_size":
                    out[key] = _count(name, value)
                elif key == "linger":
                    out[key] = _seconds(name, value)
                elif key == "partitioner":
                    out[key] = _partitioner(name, value)
                elif key == "compression":
                    out[key] = _compression(name, value)
                else:
                    out[key] = value
            codec = out.get("compression", compression)
            if "compression_level" in out or "compression" in out:
                out["compression_level"] = _level(
                    codec, out.get("compression_level"), f"{where}['compression_level']"
                )
            checked[topic] = MappingProxyType(out)
        return MappingProxyType(checked)

    # -- derived ------------------------------------------------------------------------

    @property
    def acks_code(self) -> int:
        """``acks`` as the wire's int16 (-1 for "all")."""
        return -1 if self.acks == "all" else int(self.acks)

    @property
    def idempotent(self) -> bool:
        return bool(self.enable_idempotence)

    def for_topic(self, topic: str) -> TopicSettings:
        """The settings ``topic`` is produced with (its overrides over the defaults)."""
        over = self.topic_settings.get(topic, {})
        compression = over.get("compression", self.compression or "none")
        if "compression" in over or "compression_level" in over:
            level = over.get("compression_level")
        else:
            level = self.compression_level
        return TopicSettings(
            batch_size=over.get("batch_size", self.batch_size),
            linger=over.get("linger", self.linger),
            partitioner=over.get("partitioner", self.partitioner),
            compression=compression,
            compression_level=level,
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ProducerSettings:
        """Settings from keyword options: producer names here, the rest to the client.
        An unknown name is refused with the close ones."""
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
                raise unknown_setting("producer setting", name, sorted({*own, *client_names}))
        # Like Kafka's Java producer, a producer's Metadata requests let brokers that
        # auto-create topics do so (the raw client's default is not to).
        theirs.setdefault("allow_auto_topic_creation", True)
        return cls(**mine, client=ClientSettings.from_options(theirs))
