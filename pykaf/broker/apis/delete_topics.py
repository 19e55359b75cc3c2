"""DeleteTopics (20): by name (v1+) or by topic id (v6+)."""

from __future__ import annotations

from typing import Any

from pykaf._errors import BrokerError
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import NONE, UNKNOWN_TOPIC_ID, ZERO_UUID
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("DeleteTopics")
async def delete_topics(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    responses = []
    for wanted_name, topic_id in wanted:
        name = wanted_name
        entry: dict[str, Any] = {
            "name": name,
            "topic_id": topic_id or ZERO_UUID,
            "error_code": NONE,
            "error_message": None,
        }
        responses.append(entry)
        if name is None:
            topic = state.topics_by_id.get(topic_id) if topic_id else None
            if topic is None:
                entry["error_code"] = UNKNOWN_TOPIC_ID
                entry["error_message"] = f"Topic id {topic_id} does not exist."
                continue
            name = entry["name"] = topic.name
        try:
            deleted = state.delete_topic(name)
        except BrokerError as exc:
            entry["error_code"], entry["error_message"] = exc.code, exc.message
            continue
        entry["topic_id"] = deleted.topic_id
    return ctx.respond(throttle_time=0, responses=responses)
