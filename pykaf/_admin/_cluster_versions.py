"""Whether a broker has an API at all, said as the broker would say it.

``_calls.send`` raises ``NoCommonVersionError`` (a local protocol error) when pykaf and the
broker share no version; an admin call on a broker that simply lacks an API (an older
Kafka, librdkafka's mock cluster) reports the UNSUPPORTED_VERSION error Kafka itself
answers, naming the broker and what it offers, so callers catch one type per broker.
"""

from __future__ import annotations

from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Target
from pykaf._client._versions import BrokerApiVersions
from pykaf.protocol._apis import api_spec

__all__ = ["has_api", "require_api"]


def has_api(versions: BrokerApiVersions, api: str) -> bool:
    return api_spec(api).key in versions.negotiated


async def require_api(
    client: AsyncClient, api: str, to: Target, *, timeout: float | None
) -> BrokerApiVersions:
    """The broker's versions; ``UnsupportedVersionError`` if it lacks ``api``."""
    versions = await client.api_versions(to, timeout=timeout)
    if not has_api(versions, api):
        spec = api_spec(api)
        raise versions.unsupported(spec.key, spec.min_version)
    return versions
