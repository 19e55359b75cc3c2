"""Operations: health, metrics and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping

from pykaf.gateway._asgi import JsonResponse, Request, Response
from pykaf.gateway._routes import Context, Route

__all__ = ["OPS_ROUTES"]


async def _healthz(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
    return JsonResponse(200, {"status": "ok"})


OPS_ROUTES: list[Route] = [
    Route("GET", "/healthz", _healthz, "healthz", "Kafka reachable, journal state", public=True),
]
