"""AlterConfigs (33): the legacy, whole-set config change. The configs given replace every
explicit config of the resource (those left out return to their defaults), as in Kafka."""

from __future__ import annotations

from typing import Any

from pykaf.broker._configs import OP_SET
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis.incremental_alter_configs import answer
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("AlterConfigs")
async def alter_configs(ctx: RequestContext, request: Any) -> Payload:
    return answer(
        ctx, request, lambda r: [(c.name, OP_SET, c.value) for c in r.configs], replace=True
    )
