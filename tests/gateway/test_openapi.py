"""The OpenAPI document at /openapi.json: valid OpenAPI 3.1, and the same routes the
gateway serves (every route documented, every documented operation served)."""

from __future__ import annotations

import importlib
import re
from typing import Any

import httpx
import pytest
import schemathesis

from pykaf.gateway import Gateway
from pykaf.gateway._asgi import JsonResponse, Request, Response
from pykaf.gateway._openapi import ERROR_SCHEMA, openapi_document
from pykaf.gateway._route_table import ROUTES
from pykaf.gateway._routes import Context, Route

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def fetch_document(http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in refs(item)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references, not {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_the_served_document_is_valid_openapi_3_1(http: httpx.AsyncClient) -> None:
    document = await fetch_document(http)
    assert document["openapi"].startswith("3.1.")
    # The OpenAPI 3.1 meta-schema (schemathesis ships it, checked by jsonschema_rs) ...
    schemathesis.openapi.from_dict(document).validate()
    # ... and openapi-spec-validator's deeper checks, where it is installed.
    try:
        validator = importlib.import_module("openapi_spec_validator")
    except ImportError:
        pass
    else:
        validator.validate(document)
    # What neither checks: references resolve, path parameters are declared once.
    for ref in refs(document):
        resolve(document, ref)
    for method, path, operation in operations(document):
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert sorted(declared) == sorted(re.findall(r"\{([^}]+)\}", path)), (method, path)
        pairs = [(p["in"], p["name"]) for p in operation.get("parameters", [])]
        assert len(pairs) == len(set(pairs)), (method, path, pairs)


async def test_the_document_has_exactly_the_routes_the_gateway_serves(
    http: httpx.AsyncClient, app: Gateway
) -> None:
    document = await fetch_document(http)
    documented = {(method, path): op for method, path, op in operations(document)}
    served = {(route.method, route.template): route for route in app.router.routes}
    assert set(documented) == set(served)
    assert app.router.routes == ROUTES
    for key, route in served.items():
        assert documented[key]["operationId"] == route.name
        assert documented[key]["summary"] == route.summary
        assert (documented[key]["security"] == []) is route.public, key
    assert ("GET", "/openapi.json") in documented
    assert ("POST", "/batch/async/{topic}") in documented


async def test_every_documented_operation_is_served(http: httpx.AsyncClient) -> None:
    document = await fetch_document(http)
    for method, path, _ in operations(document):
        url = re.sub(r"\{[^}]+\}", "events", path)
        answer = await http.request(method, url, content=b"")
        # The router's own refusals: 405, and 404 "no route" (a handler's 404 for an
        # unknown topic or cluster is an answer from the route, so it counts as served).
        assert answer.status_code != 405, (method, url, answer.text)
        if answer.headers["content-type"].startswith("application/json"):  # not /metrics
            assert answer.json() != {"error_code": 404, "message": f"no route {url}"}, (method, url)


async def test_kafboy_routes_document_their_bodies_parameters_and_answers(
    http: httpx.AsyncClient,
) -> None:
    paths = (await fetch_document(http))["paths"]
    one = paths["/async/{topic}"]["post"]
    assert set(one["requestBody"]["content"]) == {"text/plain", "application/octet-stream"}
    names = {p["name"] for p in one["parameters"]}
    assert {"topic", "key", "partition", "timestamp", "custody", "header.*"} <= names
    assert {"X-Kafka-Key", "X-Kafka-Partition", "X-Pykaf-Custody"} <= names
    assert one["responses"]["202"]["content"]["application/json"]["schema"]["required"] == [
        "topic",
        "accepted",
        "custody",
    ]
    batch = paths["/batch/sync/{topic}"]["post"]
    assert set(batch["requestBody"]["content"]) == {"text/plain", "application/json"}
    assert (
        "records" in batch["responses"]["200"]["content"]["application/json"]["schema"]["required"]
    )
    # /safe always uses journal_sync: no custody to choose.
    safe = {p["name"] for p in paths["/safe/async/{topic}"]["post"]["parameters"]}
    assert "custody" not in safe
    assert "X-Pykaf-Custody" not in safe


async def test_every_error_answer_has_confluents_error_shape(http: httpx.AsyncClient) -> None:
    document = await fetch_document(http)
    assert document["components"]["schemas"]["Error"] == ERROR_SCHEMA
    for method, path, operation in operations(document):
        errors = {s: a for s, a in operation["responses"].items() if s[0] in "45"}
        assert {"4XX", "5XX", "429"} <= set(errors), (method, path)
        for status, answer in errors.items():
            schema = answer["content"]["application/json"]["schema"]
            shapes = schema.get("anyOf", [schema])
            assert {"$ref": "#/components/schemas/Error"} in shapes, (method, path, status)


async def _nothing(gateway: Context, request: Request, params: Any) -> Response:
    return JsonResponse(200, {})


def test_route_facts_are_merged_and_the_common_ones_added() -> None:
    facts: dict[str, Any] = {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "q", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {201: {"description": "made"}, "409": {"description": "there"}},
        "operationId": "not-this",
    }
    routes = [
        Route("POST", "/things/{id}/{part}", _nothing, "make", "Make a thing", openapi=facts),
        Route("GET", "/things/{id}/{part}", _nothing, "read", "Read a thing", public=True),
    ]
    paths = openapi_document(routes)["paths"]["/things/{id}/{part}"]
    make, read = paths["post"], paths["get"]
    assert make["operationId"] == "make"  # the route's name, always
    assert [(p["name"], p["in"]) for p in make["parameters"]] == [
        ("id", "path"),
        ("part", "path"),
        ("q", "query"),
    ]
    assert make["parameters"][0]["schema"] == {"type": "integer"}  # the route's own wins
    assert make["parameters"][1]["schema"] == {"type": "string"}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    assert make["responses"]["409"]["content"] == error
    assert make["responses"]["4XX"]["content"] == error
    assert "200" not in make["responses"]  # 201 (given as a number) is its success
    assert "201" in make["responses"]
    assert read["responses"]["200"] == {"description": "Read a thing"}
    assert read["security"] == []
    assert {"bearer": []} in make["security"]
    assert "content" not in facts["responses"]["409"]  # the route's dict is left as it was


def test_a_document_of_conflicting_routes_is_refused() -> None:
    twice = [Route("GET", "/a", _nothing, "same", "A"), Route("GET", "/b", _nothing, "same", "B")]
    with pytest.raises(ValueError, match="unique"):
        openapi_document(twice)
    stray = {"parameters": [{"name": "nope", "in": "path", "required": True}]}
    with pytest.raises(ValueError, match="nope"):
        openapi_document([Route("GET", "/a/{id}", _nothing, "a", "A", openapi=stray)])
