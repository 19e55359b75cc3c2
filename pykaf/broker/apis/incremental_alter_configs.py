"""IncrementalAlterConfigs (44): set, delete, append to or subtract from topic and broker
configs (KIP-339). Topic configs change what the produce path enforces and are persisted
with the topics; broker configs are the dynamic ones Kafka allows, reported by
DescribeConfigs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerError
from pykaf.broker._configs import (
    BROKER_CONFIGS,
    DYNAMIC_BROKER_CONFIGS,
    TOPIC_CONFIGS,
    apply_changes,
    dynamic_broker_configs,
)
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import INVALID_REQUEST, NONE, UNKNOWN_TOPIC_OR_PARTITION
from pykaf.protocol._messages import Payload

__all__ = ["BROKER", "BROKER_LOGGER", "TOPIC", "alter_resource", "answer", "broker_id"]

TOPIC: Final = 2
BROKER: Final = 4
BROKER_LOGGER: Final = 8


def broker_id(ctx: RequestContext, name: str) -> int | None:
    """The node a BROKER resource names ("" is the broker asked), or None if none."""
    node_id = ctx.node_id if name == "" else int(name) if name.isdigit() else None
    return node_id if node_id is not None and node_id in ctx.state.brokers else None


def alter_resource(
    ctx: RequestContext,
    resource_type: int,
    name: str,
    changes: Sequence[tuple[str, int, str | None]],
    *,
    validate_only: bool,
    replace: bool = False,
) -> None:
    """Apply ``changes`` to one resource, or raise the Kafka error for it. ``replace``:
    the changes are the whole new set (legacy AlterConfigs), not edits."""
    state = ctx.state
    if resource_type == TOPIC:
        topic = state.topics.get(name)
        if topic is None:
            raise error_for_code(UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
        updated = apply_changes(TOPIC_CONFIGS, {} if replace else topic.configs, changes)
        if not validate_only:
            topic.set_configs(updated)
            state.save()
        return
    if resource_type == BROKER:
        node_id = broker_id(ctx, name)
        if node_id is None:
            raise error_for_code(INVALID_REQUEST, f"Unexpected broker id {name!r}.")
        stored = dynamic_broker_configs(state, node_id)
        updated = apply_changes(
            BROKER_CONFIGS, {} if replace else stored, changes, dynamic=DYNAMIC_BROKER_CONFIGS
        )
        if not validate_only:
            stored.clear()
            stored.update(updated)
        return
    if resource_type == BROKER_LOGGER:
        raise error_for_code(INVALID_REQUEST, "The embedded broker has no loggers to configure.")
    raise error_for_code(INVALID_REQUEST, f"Unsupported resource type {resource_type}.")


def answer(
    ctx: RequestContext,
    request: Any,
    changes_of: Any,
    *,
    replace: bool,
) -> Payload:
    """The response to an alter request: each resource altered or refused on its own."""
    counts = Counter((r.resource_type, r.resource_name) for r in request.resources)
    responses = []
    for resource in request.resources:
        entry: dict[str, Any] = {
            "error_code": NONE,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
        }
        responses.append(entry)
        try:
            if counts[(resource.resource_type, resource.resource_name)] > 1:
                raise error_for_code(
                    INVALID_REQUEST,
                    f"Error due to duplicate resource {resource.resource_name!r} in the request.",
                )
            alter_resource(
                ctx,
                resource.resource_type,
                resource.resource_name,
                changes_of(resource),
                validate_only=bool(request.validate_only),
                replace=replace,
            )
        except BrokerError as exc:
            entry["error_code"], entry["error_message"] = exc.code, exc.message
    return ctx.respond(throttle_time=0, responses=responses)


@handles("IncrementalAlterConfigs")
async def incremental_alter_configs(ctx: RequestContext, request: Any) -> Payload:
    return answer(
        ctx,
        request,
        lambda r: [(c.name, int(c.config_operation), c.value) for c in r.configs],
        replace=False,
    )
