"""Configs: describe (with sources and defaults) and incremental alter.

Topic configs (and the cluster-wide broker default, broker name "") may be asked of any
broker; a broker's own configs only of that broker, so resources are grouped by the broker
that must answer, one request each, sent side by side. A broker without
IncrementalAlterConfigs (Kafka before 2.3) gets the legacy AlterConfigs through
``_configs_legacy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from pykaf._admin._calls import send
from pykaf._admin._cluster_versions import has_api, require_api
from pykaf._admin._configs_legacy import alter_legacy
from pykaf._admin._configs_routing import (
    answers_by_resource,
    check_resources,
    per_destination,
    split_answers,
)
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import ConfigChange, ConfigResource
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Target
from pykaf._errors import PykafError
from pykaf.protocol._messages import build_request

__all__ = ["ConfigEntry", "alter_configs", "describe_configs", "parse_entry"]

# DescribeConfigs' config_source numbering (Kafka's ConfigSource), as short names.
_SOURCES: Final = {
    0: "unknown",
    1: "topic",
    2: "dynamic_broker",
    3: "dynamic_default_broker",
    4: "static_broker",
    5: "default",
    6: "dynamic_broker_logger",
    7: "client_metrics",
    8: "group",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntry:
    """One config of a resource: its value (None when sensitive), where it comes from
    (``source``: "topic", "dynamic_broker", "static_broker", "default", ...)."""

    name: str
    value: str | None
    source: str
    is_default: bool
    read_only: bool
    sensitive: bool
    synonyms: tuple[tuple[str, str | None, str], ...] = ()
    documentation: str | None = None


def _source(code: int) -> str:
    return _SOURCES.get(int(code), "unknown")


def parse_entry(entry: Any) -> ConfigEntry:
    """One kio DescribeConfigs config entry (v1+) as a ConfigEntry."""
    source = _source(entry.config_source)
    return ConfigEntry(
        name=str(entry.name),
        value=entry.value,
        source=source,
        is_default=source == "default",
        read_only=bool(entry.read_only),
        sensitive=bool(entry.is_sensitive),
        synonyms=tuple(
            (str(s.name), s.value, _source(s.source)) for s in getattr(entry, "synonyms", ())
        ),
        documentation=getattr(entry, "documentation", None),
    )


async def describe_configs(
    client: AsyncClient,
    resources: Iterable[ConfigResource],
    *,
    include_synonyms: bool,
    include_documentation: bool,
    timeout: float | None,
    names: Iterable[str] | None = None,
) -> Outcomes[ConfigResource, Mapping[str, ConfigEntry]]:
    """``names``: only these configs (None: all)."""
    wanted = check_resources(resources)
    keys = None if names is None else list(names)
    failed: dict[ConfigResource, PykafError] = {}

    async def call(to: Target, group: list[ConfigResource]) -> dict[ConfigResource, Any]:
        await require_api(client, "DescribeConfigs", to, timeout=timeout)
        _version, response = await send(
            client,
            "DescribeConfigs",
            lambda v: build_request(
                "DescribeConfigs",
                v,
                resources=[
                    {
                        "resource_type": int(r.type),
                        "resource_name": r.name,
                        "configuration_keys": keys,
                    }
                    for r in group
                ],
                include_synonyms=include_synonyms,
                include_documentation=include_documentation,
            ),
            to=to,
            timeout=timeout,
        )
        ok, errors = split_answers(group, answers_by_resource(response.results))
        failed.update(errors)
        return ok

    answered, unreachable = await per_destination(wanted, call)
    ok = {
        resource: MappingProxyType({e.name: e for e in map(parse_entry, entry.configs)})
        for resource, entry in answered.items()
    }
    return Outcomes(ok, {**failed, **unreachable})


def check_changes(
    changes: Mapping[ConfigResource, Iterable[ConfigChange]],
) -> dict[ConfigResource, tuple[ConfigChange, ...]]:
    if not isinstance(changes, Mapping):
        raise TypeError(
            "changes maps each ConfigResource to its ConfigChange list, like"
            " {ConfigResource('topic', 'orders'): [ConfigChange('retention.ms', '1000')]}"
        )
    check_resources(list(changes))
    checked: dict[ConfigResource, tuple[ConfigChange, ...]] = {}
    for resource, edits in changes.items():
        if isinstance(edits, ConfigChange):
            raise TypeError(f"{resource}: give a list of ConfigChange, not one alone")
        listed = tuple(edits)
        for edit in listed:
            if not isinstance(edit, ConfigChange):
                raise TypeError(f"{resource}: a change is a ConfigChange, not {edit!r}")
        names = [c.name for c in listed]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{resource}: each config may change once per call; {repeated}")
        checked[resource] = listed
    return checked


async def alter_configs(
    client: AsyncClient,
    changes: Mapping[ConfigResource, Iterable[ConfigChange]],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[ConfigResource, None]:
    wanted = check_changes(changes)
    failed: dict[ConfigResource, PykafError] = {}

    async def call(to: Target, group: list[ConfigResource]) -> dict[ConfigResource, Any]:
        versions = await require_api(client, "DescribeConfigs", to, timeout=timeout)
        if not has_api(versions, "IncrementalAlterConfigs"):
            # The same broker answers the legacy path: a node id, not "any".
            node: Target = versions.node_id if versions.node_id is not None else to
            ok, errors = await alter_legacy(
                client, node, {r: wanted[r] for r in group}, validate_only, timeout
            )
            failed.update(errors)
            return ok
        _version, response = await send(
            client,
            "IncrementalAlterConfigs",
            lambda v: build_request(
                "IncrementalAlterConfigs",
                v,
                resources=[
                    {
                        "resource_type": int(r.type),
                        "resource_name": r.name,
                        "configs": [
                            {"name": c.name, "config_operation": c.op_code, "value": c.value}
                            for c in wanted[r]
                        ],
                    }
                    for r in group
                ],
                validate_only=validate_only,
            ),
            to=to,
            timeout=timeout,
        )
        ok, errors = split_answers(group, answers_by_resource(response.responses))
        failed.update(errors)
        return ok

    answered, unreachable = await per_destination(list(wanted), call)
    return Outcomes(dict.fromkeys(answered), {**failed, **unreachable})
