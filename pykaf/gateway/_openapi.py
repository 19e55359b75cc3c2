"""The gateway's OpenAPI 3.1 document, made from the route table it serves.

Each ``Route`` gives its method, path template, name (the operationId) and summary;
``Route.openapi`` adds the facts only its module knows (request body, parameters beyond
the path, success answers), merged into the operation as they are. What is true of every
route is added here, once: the path parameters of the template, the security schemes,
and Confluent's error shape on every error answer. The document cannot drift from the
routes because there is no other list to keep in step.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pykaf import __version__
from pykaf.gateway._asgi import Request, Response
from pykaf.gateway._routes import Context, Route

__all__ = ["ERROR_SCHEMA", "MAYBE_PERSISTED", "openapi_document", "with_openapi"]

OPENAPI_VERSION = "3.1.0"

#: In an error answer for a record that failed: present (true) only when Kafka may hold it.
MAYBE_PERSISTED: dict[str, Any] = {
    "type": "boolean",
    "description": "true when the record failed but may be in Kafka all the same (a"
    " request carrying it went unanswered): sending it again may write it twice",
}

#: Every error answer's body: Confluent REST Proxy's shape.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {
            "type": "integer",
            "description": "the HTTP status, or Confluent's five-digit refinement of it"
            " (40403: unknown topic)",
        },
        "message": {"type": "string", "description": "what went wrong, and what to fix"},
        "accepted": {
            "type": "integer",
            "minimum": 0,
            "description": "a 429 to a batch: how many of its records were taken before the"
            " refusal (send the rest again)",
        },
        "maybe_persisted": MAYBE_PERSISTED,
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}

_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "a token the gateway knows"},
    "basic": {"type": "http", "scheme": "basic", "description": "a user and password"},
    "mutualTLS": {
        "type": "mutualTLS",
        "description": "a client certificate (the principal is its subject)",
    },
}
# Any one of the schemes; ``{}`` because a gateway bound to loopback asks for none unless
# it is configured to (which schemes a gateway accepts is its configuration).
_AUTHENTICATED: list[dict[str, list[str]]] = [{name: []} for name in _SECURITY_SCHEMES]
_AUTHENTICATED.append({})

_ERROR_RANGES = {
    "4XX": "The request was refused (bad input, credentials, permission, unknown topic)",
    "5XX": "The gateway or Kafka failed (503 with Retry-After: shutting down, or the"
    " journal's disk failed, error_code 50301; 504: not acknowledged in time)",
}
_TOO_MANY = {
    "description": "A limit was reached (request rate, buffer or journal full, too many"
    " failed authentications from the address): retry later",
    "headers": {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes (a new dict each call)."""
    names = Counter(route.name for route in routes)
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ValueError(f"route names must be unique (they are operationIds): {twice}")
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operations = paths.setdefault(route.template, {})
        method = route.method.lower()
        if method in operations:
            raise ValueError(f"two routes for {route.method} {route.template}")
        operations[method] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "pykaf gateway",
            "version": __version__,
            "description": "Kafka over HTTP: kafboy's routes and Confluent's REST v3, with"
            " journal custody behind them. Errors are Confluent's JSON"
            ' ({"error_code", "message"}).',
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    facts = copy.deepcopy(dict(route.openapi))  # the route's own dict stays as it is
    operation: dict[str, Any] = {"summary": route.summary, **facts, "operationId": route.name}
    operation["parameters"] = _parameters(route, facts.get("parameters", []))
    if not operation["parameters"]:
        del operation["parameters"]
    operation["responses"] = _responses(route, facts.get("responses", {}))
    operation["security"] = [] if route.public else copy.deepcopy(_AUTHENTICATED)
    return operation


def _parameters(route: Route, given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The template's path parameters (a route's own description of one wins), then the
    route's other parameters."""
    own = {(p.get("in"), p.get("name")): p for p in given}
    parameters = [
        own.pop(
            ("path", name),
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}},
        )
        for name in route.params
    ]
    unknown = [name for where, name in own if where == "path"]
    if unknown:
        raise ValueError(f"{route.name}: path parameter(s) {unknown} not in {route.template}")
    return parameters + [p for p in given if (p.get("in"), p.get("name")) in own]


def _responses(route: Route, given: Mapping[str, Any]) -> dict[str, Any]:
    responses = {str(status): answer for status, answer in given.items()}  # JSON keys
    if not any(_is_success(status) for status in responses):
        responses["200"] = {"description": route.summary}
    for status, answer in responses.items():
        # An error the route names without a body shape has Confluent's error body.
        if _is_error(status) and "content" not in answer and "$ref" not in answer:
            answer["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
    for status, description in _ERROR_RANGES.items():
        if status not in responses:
            responses[status] = {"description": description}
            responses[status]["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
    if "429" not in responses:
        responses["429"] = {
            **copy.deepcopy(_TOO_MANY),
            "content": {"application/json": {"schema": dict(_ERROR_REF)}},
        }
    return responses


def _is_success(status: str) -> bool:
    return status[0] in "123" or status == "default"


def _is_error(status: str) -> bool:
    return status[0] in "45"


def with_openapi(routes: Sequence[Route]) -> list[Route]:
    """``routes`` and ``GET /openapi.json``, which serves their document (its own
    operation included)."""
    everything = list(routes)
    document: list[bytes] = []  # made once, at the first request (not at import)

    async def serve(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
        if not document:
            made = openapi_document(everything)
            document.append(json.dumps(made, separators=(",", ":")).encode())
        return Response(200, document[0])

    everything.append(
        Route(
            "GET",
            "/openapi.json",
            serve,
            "openapi",
            "This document: the gateway's routes as OpenAPI 3.1",
            public=True,
            openapi={
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "required": ["openapi", "paths"]}
                            }
                        },
                    }
                }
            },
        )
    )
    return everything
