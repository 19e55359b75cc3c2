"""Every route the gateway serves, in one list (the router's and the OpenAPI document's)."""

from __future__ import annotations

from pykaf.gateway._kafboy import KAFBOY_ROUTES
from pykaf.gateway._openapi import with_openapi
from pykaf.gateway._ops import OPS_ROUTES
from pykaf.gateway._rest_v3 import V3_ROUTES
from pykaf.gateway._routes import Route

__all__ = ["ROUTES"]

ROUTES: list[Route] = with_openapi([*KAFBOY_ROUTES, *V3_ROUTES, *OPS_ROUTES])
