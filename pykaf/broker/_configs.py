"""Topic and broker configuration: the keys the embedded broker knows, defaults, validation.

Only a few settings change behaviour here (``max.message.bytes``, ``message.timestamp.type``);
the rest are accepted and reported so that admin tools that set or read them (retention,
cleanup policy, ...) see what a Kafka broker would show. Values are strings, as on the wire.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pykaf._error_codes import error_for_code

__all__ = [
    "BROKER_CONFIGS",
    "DYNAMIC_BROKER_CONFIGS",
    "TOPIC_CONFIGS",
    "ConfigSource",
    "ConfigSpec",
    "ConfigType",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "OP_APPEND",
    "OP_DELETE",
    "OP_SET",
    "OP_SUBTRACT",
    "apply_changes",
    "dynamic_broker_configs",
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


# -- changes (IncrementalAlterConfigs, AlterConfigs) -------------------------------------

# IncrementalAlterConfigs' operation codes (KIP-339).
OP_SET: Final = 0
OP_DELETE: Final = 1
OP_APPEND: Final = 2
OP_SUBTRACT: Final = 3
_INVALID_CONFIG: Final = 40
_INVALID_REQUEST: Final = 42

# The broker settings Kafka lets an admin change at run time (a subset of its
# DynamicBrokerConfig); the others answer INVALID_REQUEST, as Kafka's do. Here they change
# what DescribeConfigs reports, not behaviour.
DYNAMIC_BROKER_CONFIGS: Final = frozenset(
    {
        "log.cleanup.policy",
        "log.message.timestamp.type",
        "log.retention.ms",
        "log.segment.bytes",
        "message.max.bytes",
        "min.insync.replicas",
    }
)

# Dynamic broker configs per cluster state, by node id. Kept beside the state rather than in
# it: only the config APIs read them, and they are not persisted (Kafka keeps them in its
# metadata log; an embedded broker restarted from disk starts from its static settings).
_DYNAMIC: Final[weakref.WeakKeyDictionary[object, dict[int, dict[str, str]]]] = (
    weakref.WeakKeyDictionary()
)


def dynamic_broker_configs(state: object, node_id: int) -> dict[str, str]:
    """The mutable dynamic configs of broker ``node_id`` of the cluster ``state``."""
    return _DYNAMIC.setdefault(state, {}).setdefault(node_id, {})


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def apply_changes(
    specs: Mapping[str, ConfigSpec],
    explicit: Mapping[str, str],
    changes: Sequence[tuple[str, int, str | None]],
    *,
    dynamic: frozenset[str] | None = None,
) -> dict[str, str]:
    """The explicit configs after ``changes`` (name, operation, value), checked as Kafka
    checks them; raises the ``BrokerError`` Kafka would answer (INVALID_CONFIG or
    INVALID_REQUEST, with a message naming the config). ``dynamic``: the only names that
    may change (None: all of ``specs``)."""
    names = [name for name, _op, _value in changes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise error_for_code(_INVALID_REQUEST, f"Error due to duplicate config keys: {repeated}")
    result = dict(explicit)
    for name, op, given in changes:
        spec = specs.get(name)
        if spec is None:
            raise error_for_code(_INVALID_CONFIG, f"Unknown config name: {name}")
        if dynamic is not None and name not in dynamic:
            raise error_for_code(
                _INVALID_REQUEST, f"Cannot update these configs dynamically: {name}"
            )
        if op == OP_DELETE:
            result.pop(name, None)
            continue
        if op not in (OP_SET, OP_APPEND, OP_SUBTRACT):
            raise error_for_code(_INVALID_REQUEST, f"Unknown config operation {op} for {name}")
        if given is None:
            raise error_for_code(_INVALID_REQUEST, f"Null value not supported for : {name}")
        value = given
        if op != OP_SET:
            if spec.type is not ConfigType.LIST:
                verb = "append" if op == OP_APPEND else "subtract"
                raise error_for_code(
                    _INVALID_CONFIG, f"Config value {verb} is not allowed for config key: {name}"
                )
            # Kafka edits the effective value: the explicit one, else the default.
            current = _items(result.get(name, spec.default or ""))
            edit = _items(given)
            if op == OP_APPEND:
                value = ",".join(current + [i for i in edit if i not in current])
            else:
                value = ",".join(i for i in current if i not in edit)
        problem = _check_value(spec, value)
        if problem is not None:
            raise error_for_code(
                _INVALID_CONFIG, f"Invalid value {value} for configuration {name}: {problem}"
            )
        result[name] = value
    return result
