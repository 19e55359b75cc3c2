"""Config changes for a broker without IncrementalAlterConfigs (Kafka before 2.3).

The legacy AlterConfigs replaces a resource's whole set of explicit configs: a config left
out returns to its default. So each resource is described first (DescribeConfigs), its
explicit configs (source "topic" for a topic, "dynamic_broker" / "dynamic_default_broker"
for a broker) are kept, the changes applied to them (append and subtract edit the current
value, default included, as Kafka does), and the whole set sent.

Refused with UNSUPPORTED_VERSION, for that resource only, where this would be unsafe: a
kept config is sensitive (its value reads as null, and sending that would erase it). Not
atomic, unlike IncrementalAlterConfigs: a change made by someone else between the describe
and the alter is lost, as with Kafka's own tools on such brokers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pykaf._admin._calls import send
from pykaf._admin._configs_routing import answers_by_resource, split_answers
from pykaf._admin._specs import ConfigChange, ConfigResource, ConfigResourceType
from pykaf._admin._topics_controller import item_error
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Target
from pykaf._errors import PykafError
from pykaf.protocol._messages import build_request

__all__ = ["alter_legacy", "legacy_configs"]

_UNSUPPORTED_VERSION: Final = 35
_TOPIC_SOURCE: Final = 1
_DYNAMIC_BROKER_SOURCE: Final = 2
_DYNAMIC_DEFAULT_BROKER_SOURCE: Final = 3


def _explicit_source(resource: ConfigResource) -> int:
    if resource.type is ConfigResourceType.TOPIC:
        return _TOPIC_SOURCE
    return _DYNAMIC_DEFAULT_BROKER_SOURCE if resource.name == "" else _DYNAMIC_BROKER_SOURCE


def _items(value: str | None) -> list[str]:
    return [i.strip() for i in (value or "").split(",") if i.strip()]


def legacy_configs(
    resource: ConfigResource, described: Sequence[Any], changes: Sequence[ConfigChange]
) -> dict[str, str]:
    """The whole set to send: the explicit configs described, with ``changes`` applied.
    Raises the resource's UNSUPPORTED_VERSION error where that would lose a value."""
    source = _explicit_source(resource)
    explicit = {str(e.name): e for e in described if int(e.config_source) == source}
    current = {str(e.name): e.value for e in described}
    changed = {c.name for c in changes}
    hidden = sorted(n for n, e in explicit.items() if e.value is None and n not in changed)
    if hidden:
        raise item_error(
            _UNSUPPORTED_VERSION,
            f"the broker lacks IncrementalAlterConfigs, and the legacy AlterConfigs would"
            f" erase the sensitive configs {hidden} (their values are not readable)",
            str(resource),
        )
    result = {n: e.value for n, e in explicit.items() if e.value is not None}
    for change in changes:
        if change.op == "delete":
            result.pop(change.name, None)
        elif change.op == "set":
            assert change.value is not None
            result[change.name] = change.value
        else:
            items = _items(result.get(change.name, current.get(change.name)))
            edit = _items(change.value)
            if change.op == "append":
                items += [i for i in edit if i not in items]
            else:
                items = [i for i in items if i not in edit]
            result[change.name] = ",".join(items)
    return result


async def alter_legacy(
    client: AsyncClient,
    to: Target,
    changes: Mapping[ConfigResource, Sequence[ConfigChange]],
    validate_only: bool,
    timeout: float | None,
) -> tuple[dict[ConfigResource, Any], dict[ConfigResource, PykafError]]:
    """Describe, then AlterConfigs, each resource of ``changes`` on broker ``to``."""
    asked = list(changes)
    _version, response = await send(
        client,
        "DescribeConfigs",
        lambda v: build_request(
            "DescribeConfigs",
            v,
            resources=[
                {"resource_type": int(r.type), "resource_name": r.name, "configuration_keys": None}
                for r in asked
            ],
            include_synonyms=False,
            include_documentation=False,
        ),
        to=to,
        timeout=timeout,
    )
    described, errors = split_answers(asked, answers_by_resource(response.results))
    whole: dict[ConfigResource, dict[str, str]] = {}
    for resource, entry in described.items():
        try:
            whole[resource] = legacy_configs(resource, entry.configs, changes[resource])
        except PykafError as exc:
            errors[resource] = exc
    if not whole:
        return {}, errors
    _version, response = await send(
        client,
        "AlterConfigs",
        lambda v: build_request(
            "AlterConfigs",
            v,
            resources=[
                {
                    "resource_type": int(r.type),
                    "resource_name": r.name,
                    "configs": [{"name": k, "value": val} for k, val in configs.items()],
                }
                for r, configs in whole.items()
            ],
            validate_only=validate_only,
        ),
        to=to,
        timeout=timeout,
    )
    ok, altered_errors = split_answers(list(whole), answers_by_resource(response.responses))
    return ok, {**errors, **altered_errors}
