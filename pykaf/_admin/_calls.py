"""One admin request: pick the version both sides speak, send, return the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Target
from pykaf.protocol._apis import api_spec
from pykaf.protocol._messages import Payload

__all__ = ["send"]


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
    versions = await client.api_versions(to, timeout=timeout)
    version = versions.version(api)
    if max_version is not None:
        version = min(version, max_version)
    if version < min_version:
        raise versions.unsupported(api_spec(api).key, min_version)
    # The same broker answers: a node id, not "any" (which might pick another one).
    target: Target = versions.node_id if to == "any" and versions.node_id is not None else to
    return version, await client.request(build(version), to=target, timeout=timeout)
