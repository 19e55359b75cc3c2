"""Where config requests go and how their answers are read, shared by the incremental
and the legacy alter paths: resources checked, grouped by the broker that must answer,
each answer entry matched back to its resource."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from pykaf._admin._specs import ConfigResource, ConfigResourceType
from pykaf._admin._topics_controller import item_error
from pykaf._client._targets import Target
from pykaf._errors import PykafError

__all__ = [
    "answers_by_resource",
    "check_resources",
    "destination",
    "per_destination",
    "split_answers",
]

_UNKNOWN_SERVER_ERROR: Final = -1

_R = TypeVar("_R")


def check_resources(resources: Iterable[ConfigResource]) -> list[ConfigResource]:
    if isinstance(resources, ConfigResource | str | bytes):
        raise TypeError("resources is a list of ConfigResource; wrap a single one in a list")
    listed = list(resources)
    for resource in listed:
        if not isinstance(resource, ConfigResource):
            raise TypeError(
                f"a config resource is ConfigResource('topic', name) or"
                f" ConfigResource('broker', id), not {resource!r}"
            )
        _check_name(resource)
    repeated = sorted({str(r) for r in listed if listed.count(r) > 1})
    if repeated:
        raise ValueError(f"each config resource may be named once; repeated: {repeated}")
    return listed


def _check_name(resource: ConfigResource) -> None:
    if resource.type is ConfigResourceType.TOPIC and not resource.name:
        raise ValueError("a topic config resource needs the topic's name")
    if resource.type is not ConfigResourceType.TOPIC and not (
        resource.name == "" or resource.name.isdigit()
    ):
        raise ValueError(
            f"a {resource.type.name.lower()} config resource is named by its node id"
            f" ('1'), or '' for the cluster-wide default; not {resource.name!r}"
        )


def destination(resource: ConfigResource) -> Target:
    """The broker that must answer about ``resource``: a broker's own configs only that
    broker knows; topics and the cluster-wide default any broker."""
    if resource.type is not ConfigResourceType.TOPIC and resource.name.isdigit():
        return int(resource.name)
    return "any"


def answers_by_resource(entries: Iterable[Any]) -> dict[tuple[int, str], Any]:
    return {(int(e.resource_type), str(e.resource_name)): e for e in entries}


async def per_destination(
    resources: Sequence[ConfigResource],
    call: Callable[[Target, list[ConfigResource]], Awaitable[dict[ConfigResource, _R]]],
) -> tuple[dict[ConfigResource, _R], dict[ConfigResource, PykafError]]:
    """Run ``call`` once per destination broker, side by side; a destination that fails
    as a whole (unreachable, lacking the API) fails its own resources only."""
    groups: dict[Target, list[ConfigResource]] = {}
    for resource in resources:
        groups.setdefault(destination(resource), []).append(resource)
    outcomes = await asyncio.gather(
        *(call(to, group) for to, group in groups.items()), return_exceptions=True
    )
    ok: dict[ConfigResource, _R] = {}
    errors: dict[ConfigResource, PykafError] = {}
    for group, outcome in zip(groups.values(), outcomes, strict=True):
        if isinstance(outcome, PykafError):
            errors.update(dict.fromkeys(group, outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            ok.update(outcome)
    return ok, errors


def split_answers(
    asked: Sequence[ConfigResource], answers: Mapping[tuple[int, str], Any]
) -> tuple[dict[ConfigResource, Any], dict[ConfigResource, PykafError]]:
    """Each resource's answer entry, or its own typed error."""
    ok: dict[ConfigResource, Any] = {}
    errors: dict[ConfigResource, PykafError] = {}
    for resource in asked:
        entry = answers.get((int(resource.type), resource.name))
        if entry is None:
            errors[resource] = item_error(
                _UNKNOWN_SERVER_ERROR, "the broker's answer did not mention it", str(resource)
            )
        elif int(entry.error_code):
            errors[resource] = item_error(
                entry.error_code, getattr(entry, "error_message", None), str(resource)
            )
        else:
            ok[resource] = entry
    return ok, errors
