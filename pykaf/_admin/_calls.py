"""One admin request: pick the version both sides speak, send, return the answer.

A request that only reads (``_READS``) is sent again when its connection breaks, a few
times, with backoff, within the call's timeout: as the Java admin client does, and as the
consumer's and producer's requests are. A request that changes something is not: sent
twice it could answer as if it had failed (a topic created twice says it exists), so the
calls that send one decide (``_topics_controller``, ``_item_retries``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Final

from pykaf._admin._item_retries import admin_backoff
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Target
from pykaf._errors import BrokerConnectionError
from pykaf.protocol._apis import api_spec
from pykaf.protocol._messages import Payload

__all__ = ["send"]

_READS: Final = frozenset(
    {
        "Metadata",
        "DescribeCluster",
        "DescribeConfigs",
        "DescribeGroups",
        "ListGroups",
        "OffsetFetch",
        "ListOffsets",
        "DescribeLogDirs",
        "DescribeAcls",
        "FindCoordinator",
        "ApiVersions",
    }
)
_ATTEMPTS: Final = 3


async def send(
    client: AsyncClient,
    api: str,
    build: Callable[[int], Payload],
    *,
    to: Target = "any",
    max_version: int | None = None,
    min_version: int = 0,
    timeout: float | None = None,
) -> tuple[int, Any]:
    """Send ``build(version)`` to ``to`` at the highest version of ``api`` both pykaf and
    that broker speak (capped at ``max_version``); return ``(version, response)``.

    A broker below ``min_version`` gets the UNSUPPORTED_VERSION error it would answer,
    raised before sending. Error codes inside the response are the caller's to read.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (client.settings.request_timeout if timeout is None else timeout)
    attempts = _ATTEMPTS if api in _READS else 1
    backoff = admin_backoff(client)
    attempt = 0
    while True:
        attempt += 1
        left = None if timeout is None else max(0.001, deadline - loop.time())
        versions = await client.api_versions(to, timeout=left)
        version = versions.version(api)
        if max_version is not None:
            version = min(version, max_version)
        if version < min_version:
            raise versions.unsupported(api_spec(api).key, min_version)
        # The same broker answers: a node id, not "any" (which might pick another one).
        target: Target = versions.node_id if to == "any" and versions.node_id is not None else to
        try:
            left = None if timeout is None else max(0.001, deadline - loop.time())
            answer = await client.request(build(version), to=target, timeout=left)
        except BrokerConnectionError:
            wait = backoff.delay(attempt, random.random())
            if attempt >= attempts or loop.time() + wait >= deadline:
                raise
            await asyncio.sleep(wait)  # "any" may then pick another broker
            continue
        return version, answer
