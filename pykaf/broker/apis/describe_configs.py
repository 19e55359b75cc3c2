"""DescribeConfigs (32): topic configs (explicit or default) and broker configs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pykaf.broker._configs import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigSource,
    ConfigSpec,
    dynamic_broker_configs,
)
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import ClusterState
from pykaf.broker.apis._common import INVALID_REQUEST, NONE, UNKNOWN_TOPIC_OR_PARTITION
from pykaf.broker.apis.incremental_alter_configs import BROKER, BROKER_LOGGER, TOPIC, broker_id
from pykaf.protocol._messages import Payload

__all__: list[str] = []

# Read-only in Kafka too: set when the broker starts, never by an admin call.
_READ_ONLY: Final = frozenset({"broker.id"})


def _entries(
    specs: Mapping[str, ConfigSpec],
    values: Mapping[str, tuple[str | None, ConfigSource]],
    keys: Iterable[str] | None,
    *,
    synonyms: bool,
    documentation: bool,
) -> list[dict[str, Any]]:
    names = list(specs) if keys is None else [k for k in keys if k in specs]
    out = []
    for name in names:
        spec = specs[name]
        value, source = values.get(name, (spec.default, ConfigSource.DEFAULT_CONFIG))
        out.append(
            {
                "name": name,
                "value": value,
                "read_only": name in _READ_ONLY,
                "config_source": source,
                "is_sensitive": False,
                "synonyms": [{"name": name, "value": value, "source": source}] if synonyms else [],
                "config_type": spec.type,
                "documentation": (spec.doc or None) if documentation else None,
            }
        )
    return out


def _broker_values(state: ClusterState, node_id: int) -> dict[str, tuple[str | None, ConfigSource]]:
    static = ConfigSource.STATIC_BROKER_CONFIG
    values: dict[str, tuple[str | None, ConfigSource]] = {
        "broker.id": (str(node_id), static),
        "num.partitions": (str(state.default_partitions), static),
        "default.replication.factor": (str(state.default_replication_factor), static),
        "auto.create.topics.enable": (str(state.auto_create_topics).lower(), static),
    }
    dynamic = ConfigSource.DYNAMIC_BROKER_CONFIG
    for name, value in dynamic_broker_configs(state, node_id).items():
        values[name] = (value, dynamic)
    return values


@handles("DescribeConfigs")
async def describe_configs(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    synonyms = bool(request.include_synonyms)
    documentation = bool(getattr(request, "include_documentation", False))
    results = []
    for resource in request.resources:
        result: dict[str, Any] = {
            "error_code": NONE,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "configs": [],
        }
        results.append(result)
        keys = resource.configuration_keys
        if resource.resource_type == TOPIC:
            topic = state.topics.get(resource.resource_name)
            if topic is None:
                result["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
                result["error_message"] = f"Topic '{resource.resource_name}' does not exist."
                continue
            values = {
                name: (value, ConfigSource.DYNAMIC_TOPIC_CONFIG)
                for name, value in topic.configs.items()
            }
            result["configs"] = _entries(
                TOPIC_CONFIGS, values, keys, synonyms=synonyms, documentation=documentation
            )
        elif resource.resource_type == BROKER:
            name = resource.resource_name
            node_id = broker_id(ctx, name)
            if node_id is None:
                result["error_code"] = INVALID_REQUEST
                result["error_message"] = f"Unexpected broker id {name!r}."
                continue
            result["configs"] = _entries(
                BROKER_CONFIGS,
                _broker_values(state, node_id),
                keys,
                synonyms=synonyms,
                documentation=documentation,
            )
        elif resource.resource_type == BROKER_LOGGER:
            continue  # no log levels to report
        else:
            result["error_code"] = INVALID_REQUEST
            result["error_message"] = f"Unsupported resource type {resource.resource_type}."
    return ctx.respond(throttle_time=0, results=results)
