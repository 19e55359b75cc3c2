"""CreatePartitions (37): grow a topic's partition count."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pykaf._errors import BrokerError
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import INVALID_REQUEST, NONE
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("CreatePartitions")
async def create_partitions(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    counts = Counter(t.name for t in request.topics)
    results = []
    for t in request.topics:
        entry: dict[str, Any] = {"name": t.name, "error_code": NONE, "error_message": None}
        results.append(entry)
        if counts[t.name] > 1:
            entry["error_code"] = INVALID_REQUEST
            entry["error_message"] = f"Duplicate topic {t.name} in the request."
            continue
        try:
            if request.validate_only:
                state.check_new_partitions(t.name, t.count)
            else:
                state.create_partitions(t.name, t.count)
        except BrokerError as exc:
            entry["error_code"], entry["error_message"] = exc.code, exc.message
    return ctx.respond(throttle_time=0, results=results)
