"""What an admin call is asked about: new topics, config resources and changes, offset
queries. Frozen values, checked when made, so bad input fails before anything is sent."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final, Literal

__all__ = ["ConfigChange", "ConfigResource", "ConfigResourceType", "NewTopic", "OffsetSpec"]

# Kafka's sentinels: -1 partitions or replication factor means "the broker's default"
# (CreateTopics v4+, KIP-464); ListOffsets' special timestamps.
DEFAULT: Final = -1
_LATEST_TS: Final = -1
_EARLIEST_TS: Final = -2
_MAX_TIMESTAMP_TS: Final = -3


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTopic:
    """A topic to create: ``partitions`` and ``replication_factor`` (-1: the broker's
    default), ``configs`` (topic configs, e.g. ``{"cleanup.policy": "compact"}``), or
    ``assignments`` (partition -> replica broker ids) instead of the two counts."""

    name: str
    partitions: int = DEFAULT
    replication_factor: int = DEFAULT
    configs: Mapping[str, str] = field(default_factory=dict)
    assignments: Mapping[int, tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a topic name is a non-empty str, not {self.name!r}")
        for what in ("partitions", "replication_factor"):
            value = getattr(self, what)
            if type(value) is not int or (value < 1 and value != DEFAULT):
                raise ValueError(
                    f"topic {self.name!r}: {what} must be >= 1 (or -1 for the"
                    f" broker's default), not {value!r}"
                )
        bad = [
            k for k, v in self.configs.items() if not isinstance(k, str) or not isinstance(v, str)
        ]
        if bad:
            raise ValueError(
                f"topic {self.name!r}: configs map str names to str values (bad: {bad!r})"
            )
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))
        if self.assignments is not None:
            if self.partitions != DEFAULT or self.replication_factor != DEFAULT:
                raise ValueError(
                    f"topic {self.name!r}: give assignments or partitions and"
                    " replication_factor, not both"
                )
            assignments = {int(p): tuple(int(b) for b in r) for p, r in self.assignments.items()}
            object.__setattr__(self, "assignments", MappingProxyType(assignments))


class ConfigResourceType(enum.IntEnum):
    """DescribeConfigs' resource types (Kafka's numbering)."""

    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8


@dataclass(frozen=True, slots=True)
class ConfigResource:
    """A thing that has configs: ``ConfigResource("topic", "orders")`` or
    ``ConfigResource("broker", "1")``."""

    type: ConfigResourceType
    name: str

    def __init__(self, type: ConfigResourceType | str | int, name: str) -> None:
        object.__setattr__(self, "type", _resource_type(type))
        if not isinstance(name, str):
            raise ValueError(f"a config resource name is a str, not {name!r}")
        object.__setattr__(self, "name", name)

    def __str__(self) -> str:
        return f"{self.type.name.lower()} {self.name!r}"


def _resource_type(value: ConfigResourceType | str | int) -> ConfigResourceType:
    if isinstance(value, ConfigResourceType):
        return value
    try:
        if isinstance(value, str):
            return ConfigResourceType[value.upper()]
        if isinstance(value, int) and not isinstance(value, bool):
            return ConfigResourceType(value)
    except (KeyError, ValueError):
        pass
    names = ", ".join(repr(t.name.lower()) for t in ConfigResourceType)
    raise ValueError(f"a config resource type is one of {names}, not {value!r}")


ConfigOp = Literal["set", "delete", "append", "subtract"]
_OPS: Final = ("set", "delete", "append", "subtract")


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One incremental config change (KIP-339): ``ConfigChange("retention.ms", "1000")``
    sets, ``ConfigChange("retention.ms", op="delete")`` returns to the default,
    ``op="append"`` / ``"subtract"`` edit a list config."""

    name: str
    value: str | None = None
    op: ConfigOp = "set"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a config name is a non-empty str, not {self.name!r}")
        if self.op not in _OPS:
            raise ValueError(f"config {self.name!r}: op is one of {_OPS}, not {self.op!r}")
        if self.op != "delete" and not isinstance(self.value, str):
            raise ValueError(f"config {self.name!r}: op {self.op!r} needs a str value")

    @property
    def op_code(self) -> int:
        """IncrementalAlterConfigs' operation code."""
        return _OPS.index(self.op)


@dataclass(frozen=True, slots=True)
class OffsetSpec:
    """Which offset to look up: ``OffsetSpec.EARLIEST``, ``OffsetSpec.LATEST``,
    ``OffsetSpec.MAX_TIMESTAMP`` (the record with the largest timestamp, KIP-734), or
    ``OffsetSpec.at(when)``: the first offset whose timestamp is >= ``when`` (a
    ``datetime`` or milliseconds since the epoch). ``OffsetSpec.parse`` reads
    "earliest", "latest", "max_timestamp" or a spec as is."""

    timestamp: int

    EARLIEST: ClassVar[OffsetSpec]
    LATEST: ClassVar[OffsetSpec]
    MAX_TIMESTAMP: ClassVar[OffsetSpec]

    @classmethod
    def at(cls, when: datetime.datetime | int) -> OffsetSpec:
        if isinstance(when, datetime.datetime):
            if when.tzinfo is None:
                raise ValueError("OffsetSpec.at needs an aware datetime (give tzinfo)")
            return cls(int(when.timestamp() * 1000))
        if type(when) is not int or when < 0:
            raise ValueError(f"OffsetSpec.at takes a datetime or ms >= 0, not {when!r}")
        return cls(when)

    @classmethod
    def parse(cls, value: OffsetSpec | str) -> OffsetSpec:
        if isinstance(value, OffsetSpec):
            return value
        named = {"earliest": _EARLIEST_TS, "latest": _LATEST_TS, "max_timestamp": _MAX_TIMESTAMP_TS}
        if isinstance(value, str) and value.lower() in named:
            return cls(named[value.lower()])
        raise ValueError(
            f"an offset spec is OffsetSpec.at(...), 'earliest', 'latest' or"
            f" 'max_timestamp', not {value!r}"
        )

    def __str__(self) -> str:
        names = {_EARLIEST_TS: "earliest", _LATEST_TS: "latest", _MAX_TIMESTAMP_TS: "max_timestamp"}
        return names.get(self.timestamp, f"@{self.timestamp}")


OffsetSpec.EARLIEST = OffsetSpec(_EARLIEST_TS)
OffsetSpec.LATEST = OffsetSpec(_LATEST_TS)
OffsetSpec.MAX_TIMESTAMP = OffsetSpec(_MAX_TIMESTAMP_TS)
