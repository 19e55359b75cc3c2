"""The registry of Kafka APIs pykaf speaks: key, Kafka's name, and the version range.

Every API kio ships is registered. The range runs from the KIP-896 floor (Kafka 4.0 removed
the versions older than Kafka 2.1's, give or take what popular clients still used) up to
kio's newest schema; the floor is never below kio's oldest schema. Adding an API is data:
upgrade kio and it appears here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from kio.schema.index import api_key_map, schema_name_map
from kio.static.constants import EntityType

from pykaf._errors import UnknownApiError

__all__ = [
    "ApiSpec",
    "all_apis",
    "api_spec",
    "BELOW_FLOOR_FOR_OLD_CLIENTS",
    "KIP_896_FLOORS",
    "LEGACY_OLDEST",
]

# The oldest version each API keeps after KIP-896 (Kafka 4.0), as listed in the KIP's
# "Public Interfaces" and applied to Kafka's JSON schemas by KAFKA-18269. Only APIs whose
# floor moved are listed; the rest keep v0. JoinGroup v0-v1 were put back in 4.0.1 for
# old librdkafka (KAFKA-19444), which is why kio still ships them, but the KIP baseline
# is what pykaf offers and uses.
KIP_896_FLOORS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "Produce": 3,
        "Fetch": 4,
        "ListOffsets": 1,
        "OffsetCommit": 2,
        "OffsetFetch": 1,
        "JoinGroup": 2,
        "CreateTopics": 2,
        "DeleteTopics": 1,
        "OffsetForLeaderEpoch": 2,
        "WriteTxnMarkers": 1,
        "DescribeAcls": 1,
        "CreateAcls": 1,
        "DeleteAcls": 1,
        "DescribeConfigs": 1,
        "AlterReplicaLogDirs": 1,
        "DescribeLogDirs": 1,
        "CreateDelegationToken": 1,
        "RenewDelegationToken": 1,
        "ExpireDelegationToken": 1,
        "DescribeDelegationToken": 1,
    }
)


# The group and offset APIs whose versions below the floor Kafka 3.x still answered and old
# clients still send (Debian's sarama 1.22: JoinGroup v1, OffsetCommit v1): pykaf decodes
# every version kio knows for them (and OffsetCommit v0-v1, which kio lacks, from
# _legacy_schemas), so the embedded broker can serve those clients.
BELOW_FLOOR_FOR_OLD_CLIENTS: Final = frozenset(
    {
        "FindCoordinator",
        "JoinGroup",
        "SyncGroup",
        "Heartbeat",
        "LeaveGroup",
        "OffsetCommit",
        "OffsetFetch",
        "ListGroups",
        "DescribeGroups",
        "DeleteGroups",
        "ListOffsets",
        "OffsetDelete",
    }
)


# Kafka's name -> the oldest version of the schemas in _legacy_schemas (versions kio lacks).
# Here, not there: those classes are loaded only when such a version is first used.
LEGACY_OLDEST: Final[Mapping[str, int]] = MappingProxyType({"OffsetCommit": 0})


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSpec:
    """One Kafka API as pykaf speaks it: ``key``, Kafka's CamelCase ``name``, versions."""

    key: int
    name: str
    min_version: int
    max_version: int
    # The oldest version pykaf decodes and encodes: the floor, except for the group and
    # offset APIs, whose older versions a broker still answers for old clients (see
    # BELOW_FLOOR_FOR_OLD_CLIENTS). The client negotiates from min_version only.
    oldest_version: int

    @property
    def snake_name(self) -> str:
        """The name as kio's modules spell it, e.g. ``list_offsets``."""
        return api_key_map[self.key]

    @property
    def versions(self) -> range:
        return range(self.min_version, self.max_version + 1)

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version

    def __str__(self) -> str:
        return f"{self.name} (key {self.key}, v{self.min_version}..v{self.max_version})"


def _normalise(name: str) -> str:
    # "ListOffsets", "list_offsets", "list-offsets", "LIST OFFSETS" all meet here.
    return re.sub(r"[\s_\-]", "", name).lower()


def _kafka_name(key: int, snake: str, version: int) -> str:
    # The request class is generated from Kafka's JSON, so its name minus "Request" is
    # Kafka's own spelling ("DescribeAcls", "SaslHandshake", ...), not a guess.
    path = schema_name_map[snake][version][EntityType.request]
    cls_name = path.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return cls_name.removesuffix("Request")


def _build_registry() -> dict[int, ApiSpec]:
    registry: dict[int, ApiSpec] = {}
    for key, snake in sorted(api_key_map.items()):
        versions = sorted(
            v for v, kinds in schema_name_map[snake].items() if EntityType.request in kinds
        )
        kio_min, kio_max = versions[0], versions[-1]
        name = _kafka_name(key, snake, kio_max)
        floor = max(kio_min, KIP_896_FLOORS.get(name, 0))
        oldest = floor
        if name in BELOW_FLOOR_FOR_OLD_CLIENTS:
            oldest = min(kio_min, LEGACY_OLDEST.get(name, kio_min))
        registry[key] = ApiSpec(
            key=key, name=name, min_version=floor, max_version=kio_max, oldest_version=oldest
        )
    return registry


_BY_KEY: Final[Mapping[int, ApiSpec]] = MappingProxyType(_build_registry())
_BY_NAME: Final[Mapping[str, ApiSpec]] = MappingProxyType(
    {_normalise(spec.name): spec for spec in _BY_KEY.values()}
)


def all_apis() -> Iterator[ApiSpec]:
    """Every registered API, by key."""
    return iter(_BY_KEY.values())


def api_spec(api: int | str | ApiSpec) -> ApiSpec:
    """The registered API for a key (``3``) or a name (``"Metadata"``, ``"list_offsets"``).

    Raises ``UnknownApiError`` naming the close matches (or the valid range of keys).
    """
    if isinstance(api, ApiSpec):
        return api
    if isinstance(api, str):
        spec = _BY_NAME.get(_normalise(api))
        if spec is not None:
            return spec
        close = difflib.get_close_matches(_normalise(api), list(_BY_NAME), n=3, cutoff=0.6)
        hint = (
            f"did you mean {', '.join(_BY_NAME[c].name for c in close)}?"
            if close
            else f"known APIs are: {', '.join(sorted(s.name for s in _BY_KEY.values()))}"
        )
        raise UnknownApiError(f"unknown Kafka API {api!r}; {hint}")
    if isinstance(api, int) and not isinstance(api, bool):
        spec = _BY_KEY.get(api)
        if spec is not None:
            return spec
        raise UnknownApiError(f"unknown Kafka API key {api}; pykaf knows the keys {_key_ranges()}")
    raise UnknownApiError(f"an API is named by its key (int) or name (str), not {api!r}")


def _key_ranges() -> str:
    # Kafka's keys have gaps (4-7 were inter-broker APIs removed with ZooKeeper); show runs.
    keys = sorted(_BY_KEY)
    runs: list[str] = []
    start = prev = keys[0]
    for key in [*keys[1:], None]:
        if key is not None and key == prev + 1:
            prev = key
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if key is not None:
            start = prev = key
    return ", ".join(runs)
