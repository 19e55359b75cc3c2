"""ApiVersions (18): what this broker answers, derived from the handler registry."""

from __future__ import annotations

import re
from typing import Any, Final

from pykaf.broker._registry import RequestContext, handles, registered_handlers
from pykaf.protocol._messages import Payload

__all__ = ["UNSUPPORTED_VERSION", "api_versions_entries"]

UNSUPPORTED_VERSION: Final = 35
INVALID_REQUEST: Final = 42
# Kafka's rule for client_software_name/version (ApiVersionsRequest.isValid, KIP-511).
_SOFTWARE: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def api_versions_entries() -> list[dict[str, Any]]:
    """One ``api_keys`` entry per registered handler."""
    return [
        {"api_key": h.spec.key, "min_version": h.min_version, "max_version": h.max_version}
        for h in registered_handlers()
    ]


@handles("ApiVersions")
async def api_versions(ctx: RequestContext, request: Any) -> Payload:
    if ctx.api_version >= 3 and not (
        _SOFTWARE.fullmatch(request.client_software_name)
        and _SOFTWARE.fullmatch(request.client_software_version)
    ):
        return ctx.respond(error_code=INVALID_REQUEST, api_keys=[], throttle_time=0)
    return ctx.respond(error_code=0, api_keys=api_versions_entries(), throttle_time=0)
