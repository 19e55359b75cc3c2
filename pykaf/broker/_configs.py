"""Topic and broker configuration: the keys the embedded broker knows, defaults, validation.

Only a few settings change behaviour here (``max.message.bytes``, ``message.timestamp.type``);
the rest are accepted and reported so that admin tools that set or read them (retention,
cleanup policy, ...) see what a Kafka broker would show. Values are strings, as on the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "BROKER_CONFIGS",
    "TOPIC_CONFIGS",
    "ConfigSource",
    "ConfigSpec",
    "ConfigType",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "validate_topic_configs",
]

# Kafka's default message.max.bytes / max.message.bytes: 1 MiB plus the 12-byte log overhead.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1048588


class ConfigType(enum.IntEnum):
    """DescribeConfigs v3+ ``config_type``."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(enum.IntEnum):
    """DescribeConfigs v1+ ``config_source``."""

    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSpec:
    name: str
    default: str | None
    type: ConfigType
    doc: str = ""
    # Allowed values (case-sensitive, as Kafka), or None for any value of ``type``.
    choices: tuple[str, ...] | None = None
    minimum: int | None = None


def _spec(
    name: str,
    default: str | None,
    type_: ConfigType,
    doc: str = "",
    *,
    choices: tuple[str, ...] | None = None,
    minimum: int | None = None,
) -> tuple[str, ConfigSpec]:
    return name, ConfigSpec(
        name=name, default=default, type=type_, doc=doc, choices=choices, minimum=minimum
    )


_L, _I, _S, _B, _D, _LIST = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.STRING,
    ConfigType.BOOLEAN,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)

# Kafka's topic-level configs (TopicConfig / LogConfig), with Kafka's defaults. Unknown keys
# are refused with INVALID_CONFIG, as Kafka does.
TOPIC_CONFIGS: Final[Mapping[str, ConfigSpec]] = MappingProxyType(
    dict(
        [
            _spec(
                "cleanup.policy",
                "delete",
                _LIST,
                "Retention policy (only 'delete' semantics are modelled).",
                choices=("delete", "compact", "compact,delete", "delete,compact"),
            ),
            _spec(
                "compression.type",
                "producer",
                _S,
                "Final compression (batches are stored as the producer sent them).",
                choices=("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
            ),
            _spec("compression.gzip.level", "-1", _I),
            _spec("compression.lz4.level", "9", _I),
            _spec("compression.zstd.level", "3", _I),
            _spec("delete.retention.ms", "86400000", _L, minimum=0),
            _spec("file.delete.delay.ms", "60000", _L, minimum=0),
            _spec("flush.messages", "9223372036854775807", _L, minimum=1),
            _spec("flush.ms", "9223372036854775807", _L, minimum=0),
            _spec("follower.replication.throttled.replicas", "", _LIST),
            _spec("index.interval.bytes", "4096", _I, minimum=0),
            _spec("leader.replication.throttled.replicas", "", _LIST),
            _spec("local.retention.bytes", "-2", _L),
            _spec("local.retention.ms", "-2", _L),
            _spec("max.compaction.lag.ms", "9223372036854775807", _L, minimum=1),
            _spec(
                "max.message.bytes",
                str(DEFAULT_MAX_MESSAGE_BYTES),
                _I,
                "The largest record batch size allowed (MESSAGE_TOO_LARGE above it).",
                minimum=0,
            ),
            _spec("message.downconversion.enable", "true", _B),
            _spec("message.format.version", "3.0-IV1", _S),
            _spec("message.timestamp.after.max.ms", "9223372036854775807", _L, minimum=0),
            _spec("message.timestamp.before.max.ms", "9223372036854775807", _L, minimum=0),
            _spec("message.timestamp.difference.max.ms", "9223372036854775807", _L, minimum=0),
            _spec(
                "message.timestamp.type",
                "CreateTime",
                _S,
                "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches.",
                choices=("CreateTime", "LogAppendTime"),
            ),
            _spec("min.cleanable.dirty.ratio", "0.5", _D),
            _spec("min.compaction.lag.ms", "0", _L, minimum=0),
            _spec("min.insync.replicas", "1", _I, minimum=1),
            _spec("preallocate", "false", _B),
            _spec("remote.storage.enable", "false", _B),
            _spec("remote.log.copy.disable", "false", _B),
            _spec("remote.log.delete.on.disable", "false", _B),
            _spec("retention.bytes", "-1", _L),
            _spec("retention.ms", "604800000", _L, minimum=-1),
            _spec("segment.bytes", "1073741824", _I, minimum=14),
            _spec("segment.index.bytes", "10485760", _I, minimum=4),
            _spec("segment.jitter.ms", "0", _L, minimum=0),
            _spec("segment.ms", "604800000", _L, minimum=1),
            _spec("unclean.leader.election.enable", "false", _B),
        ]
    )
)

# The broker-level settings DescribeConfigs(BROKER) reports. Values depending on the
# cluster's construction (num.partitions, ...) are filled in by the caller.
BROKER_CONFIGS: Final[Mapping[str, ConfigSpec]] = MappingProxyType(
    dict(
        [
            _spec("auto.create.topics.enable", "true", _B),
            _spec("broker.id", "0", _I),
            _spec("default.replication.factor", "1", _I),
            _spec("log.cleanup.policy", "delete", _LIST),
            _spec("log.message.timestamp.type", "CreateTime", _S),
            _spec("log.retention.hours", "168", _I),
            _spec("log.retention.ms", None, _L),
            _spec("log.segment.bytes", "1073741824", _I),
            _spec("message.max.bytes", str(DEFAULT_MAX_MESSAGE_BYTES), _I),
            _spec("min.insync.replicas", "1", _I),
            _spec("num.partitions", "1", _I),
            _spec("offsets.topic.num.partitions", "50", _I),
            _spec("offsets.topic.replication.factor", "1", _I),
            _spec("socket.request.max.bytes", "104857600", _I),
            _spec("transaction.state.log.replication.factor", "1", _I),
        ]
    )
)

_BOOLEANS: Final = ("true", "false")


def _check_value(spec: ConfigSpec, value: str) -> str | None:
    """Why ``value`` is not valid for ``spec``, or None when it is."""
    if spec.choices is not None:
        if value not in spec.choices:
            return f"{value!r} is not one of {', '.join(spec.choices)}"
        return None
    if spec.type is ConfigType.BOOLEAN:
        return None if value.lower() in _BOOLEANS else f"{value!r} is not a boolean"
    if spec.type in (ConfigType.INT, ConfigType.LONG, ConfigType.SHORT):
        try:
            number = int(value.strip())
        except ValueError:
            return f"{value!r} is not an integer"
        if spec.minimum is not None and number < spec.minimum:
            return f"{number} is below the minimum {spec.minimum}"
        if spec.type is ConfigType.INT and not -(2**31) <= number < 2**31:
            return f"{number} does not fit an int"
        return None
    if spec.type is ConfigType.DOUBLE:
        try:
            float(value)
        except ValueError:
            return f"{value!r} is not a number"
    return None


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """The explicit topic configs to keep; raises ``ValueError`` naming the first bad one.

    A None value means "use the default" (dropped), as Kafka's CreateTopics treats it.
    """
    kept: dict[str, str] = {}
    for name, value in configs.items():
        spec = TOPIC_CONFIGS.get(name)
        if spec is None:
            raise ValueError(f"unknown topic config {name!r}")
        if value is None:
            continue
        problem = _check_value(spec, value)
        if problem is not None:
            raise ValueError(f"invalid value for {name}: {problem}")
        kept[name] = value
    return kept
