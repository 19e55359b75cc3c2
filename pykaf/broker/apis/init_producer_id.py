"""InitProducerId (22): producer ids for idempotent and (minimally) transactional producers.

An idempotent producer (no transactional id) always gets a fresh id with epoch 0, as from
Kafka's ProducerIdManager. A transactional id keeps its producer id and gets the next
epoch on every call (transactions themselves are not modelled).
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import NONE
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("InitProducerId")
async def init_producer_id(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    if request.transactional_id:
        producer_id, epoch = state.init_transactional(request.transactional_id)
    else:
        producer_id, epoch = state.allocate_producer_id(), 0
    return ctx.respond(
        throttle_time=0, error_code=NONE, producer_id=producer_id, producer_epoch=epoch
    )
