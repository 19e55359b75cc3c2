"""Where a raw request goes (``to=``) and on which connection (``purpose=``).

``to`` is one of:

- ``"any"``: the least loaded broker that is up (the default);
- an ``int``: that broker's node id;
- ``Leader(topic, partition)``: the partition's leader, from the cached metadata;
- ``Coordinator(group_id)`` or ``Coordinator(transactional_id, type="transaction")``:
  the coordinator FindCoordinator names (cached until NOT_COORDINATOR or
  COORDINATOR_NOT_AVAILABLE);
- ``"controller"``: the broker Metadata names as controller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

__all__ = [
    "PURPOSES",
    "Coordinator",
    "CoordinatorType",
    "Leader",
    "Purpose",
    "Target",
    "check_purpose",
    "check_target",
]


class CoordinatorType(enum.IntEnum):
    """FindCoordinator's key type (Kafka's numbering)."""

    GROUP = 0
    TRANSACTION = 1
    SHARE = 2

    @classmethod
    def parse(cls, value: CoordinatorType | str | int) -> CoordinatorType:
        if isinstance(value, CoordinatorType):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(repr(m.name.lower()) for m in cls)
        raise ValueError(f"coordinator type must be one of {names}, not {value!r}")


# Targets are positional (``Leader("orders", 3)``) rather than keyword-only like pykaf's
# other values: they are written inline at every call site, and their fields have an
# obvious order.
@dataclass(frozen=True, slots=True)
class Leader:
    """The leader of ``topic``'s ``partition``."""

    topic: str
    partition: int

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"Leader needs a topic name, not {self.topic!r}")
        if type(self.partition) is not int or self.partition < 0:
            raise ValueError(f"Leader needs a partition >= 0, not {self.partition!r}")


@dataclass(frozen=True, slots=True)
class Coordinator:
    """The coordinator of a consumer group (``type="group"``, the default) or of a
    transactional id (``type="transaction"``)."""

    key: str
    type: CoordinatorType = CoordinatorType.GROUP

    def __init__(self, key: str, type: CoordinatorType | str | int = CoordinatorType.GROUP) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"Coordinator needs a group or transactional id, not {key!r}")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "type", CoordinatorType.parse(type))


Target: TypeAlias = Literal["any", "controller"] | int | Leader | Coordinator
Purpose: TypeAlias = Literal["produce", "fetch", "group", "other"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)


def check_target(to: object) -> Target:
    """``to`` itself if it is a valid target, else a ValueError saying what is."""
    if isinstance(to, Leader | Coordinator):
        return to
    if isinstance(to, int) and not isinstance(to, bool):
        if to < 0:
            raise ValueError(f"a broker node id is >= 0, not {to}")
        return to
    if to == "any" or to == "controller":  # noqa: PLR1714  (== narrows the Literal for mypy)
        return to
    raise ValueError(
        f"to= must be 'any', 'controller', a node id (int), Leader(topic, partition) or"
        f" Coordinator(key), not {to!r}"
    )


def check_purpose(purpose: object) -> Purpose:
    if purpose in PURPOSES:
        return purpose
    raise ValueError(f"purpose= must be one of {', '.join(PURPOSES)}, not {purpose!r}")
