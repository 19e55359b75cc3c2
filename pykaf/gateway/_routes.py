"""The route table: method and path template to handler. The OpenAPI document is made
from this same table, so the two cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pykaf.gateway._access_log import GatewayTelemetry
from pykaf.gateway._asgi import Request, Response
from pykaf.gateway._backend import Backend
from pykaf.gateway._limits import Limits
from pykaf.gateway._security import Security
from pykaf.gateway._settings import GatewaySettings

__all__ = ["Context", "Handler", "Route", "Router"]


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler works with: the settings and the gateway's parts."""

    settings: GatewaySettings
    backend: Backend
    security: Security
    limits: Limits
    #: The request metrics and the Kafka clients watched for ``/metrics``.
    telemetry: GatewayTelemetry = field(default_factory=GatewayTelemetry)


# A handler returns its whole answer, or None when it answered itself (streaming).
Handler = Callable[[Context, Request, Mapping[str, str]], Awaitable[Response | None]]

_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/async/{topic}"
    handler: Handler
    name: str
    summary: str
    #: True: anyone may call it (health checks); False: the caller is authenticated.
    public: bool = False
    #: Extra OpenAPI facts for this operation (request body, answers), merged in.
    openapi: Mapping[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.template)


class Router:
    """Matches a path against the templates; a parameter is one path segment."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._compiled = [
            (route, re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", route.template) + "$"))
            for route in routes
        ]
        # Exact paths (most of the hot ones have a parameter, but /healthz does not).
        self._static = {(r.method, r.template): r for r in routes if not r.params}

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | list[str]:
        """The route and its parameters, or the methods the path has (empty: no such
        path; else a 405 with them in ``Allow``)."""
        static = self._static.get((method, path))
        if static is not None:
            return static, {}
        allowed: list[str] = []
        for route, pattern in self._compiled:
            found = pattern.match(path)
            if found is not None:
                if route.method == method:
                    return route, found.groupdict()
                allowed.append(route.method)
        return allowed
