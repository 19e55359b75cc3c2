"""Property-based API tests generated from /openapi.json (schemathesis) against the
gateway in-process and the embedded broker: no 500s, and every answer (status, content
type, headers, body) is one the document promises.

One test per documented operation, each with a bounded number of generated requests.
(schemathesis' own ``pytest.from_fixture`` fails on pytest 9, so the cases come from
``operation.as_strategy()`` under hypothesis' ``@given``.)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from pykaf import Admin
from pykaf.broker import BlockingCluster
from pykaf.errors import MessageTooLargeError
from pykaf.gateway import Gateway, GatewaySettings, create_app
from pykaf.gateway._openapi import openapi_document
from pykaf.gateway._route_table import ROUTES

FAST: dict[str, Any] = {"linger": 0.001, "request_timeout": 5.0}

# Generated requests per operation and test: small, so that the file stays well under
# half a minute on a busy machine.
EXAMPLES = 20

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure can be run again
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# The operations, from the same table the served document is made of (the document
# itself is fetched from the app in each test).
OPERATIONS = [
    pytest.param(path, method, id=f"{method.upper()} {path}")
    for path, item in openapi_document(ROUTES)["paths"].items()
    for method in item
]
# Those with something to get wrong (negative data needs a parameter or a body).
WITH_INPUT = [
    pytest.param(path, method, id=f"{method.upper()} {path}")
    for path, item in openapi_document(ROUTES)["paths"].items()
    for method, operation in item.items()
    if operation.get("parameters") or operation.get("requestBody")
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1, auto_create_topics=False) as kafka:
        kafka.create_topic("events", 3)
        yield kafka


@pytest.fixture
def api(cluster: BlockingCluster, tmp_path: Path) -> Iterator[Any]:
    """The document as schemathesis loads it from a new app. Its ASGI client runs the
    app on an event loop of its own in another thread and starts it through the ASGI
    lifespan, so the app is not started here; schemathesis' pytest plugin ends the
    lifespan after each test (a closed gateway does not start again: one app a test)."""
    gateway: Gateway = create_app(
        GatewaySettings(
            bootstrap=cluster.bootstrap,
            journal_dir=str(tmp_path / "journal"),
            producer_options=FAST,
        )
    )
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", gateway)
    finally:
        schemathesis_asgi.shutdown_lifespans()


def run_cases(
    api: Any,
    path: str,
    method: str,
    mode: GenerationMode = GenerationMode.POSITIVE,
    **fixed: Any,
) -> None:
    operation = api[path][method]

    @given(case=operation.as_strategy(mode, **fixed))
    @BOUNDED
    def one(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    one()


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_any_request_gets_a_documented_answer(api: Any, path: str, method: str) -> None:
    """Whatever the document allows, random topic names included (mostly 404, 40403)."""
    run_cases(api, path, method)


DOOMED = itertools.count()


def existing(cluster: BlockingCluster, path: str, method: str) -> dict[str, str]:
    """Path parameters naming what exists (the cluster, topic "events"; for a DELETE, a
    topic made to be deleted), so that success answers are generated too."""
    with Admin(cluster.bootstrap) as admin:
        cluster_id = admin.describe_cluster().cluster_id or "none"
    topic = "events"
    if method == "delete":
        topic = f"doomed-{next(DOOMED)}"
        cluster.create_topic(topic, 1)
    known = {"cluster_id": cluster_id, "topic": topic, "topic_name": topic}
    return {name: value for name, value in known.items() if f"{{{name}}}" in path}


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_requests_to_what_exists_get_documented_answers(
    api: Any, cluster: BlockingCluster, path: str, method: str
) -> None:
    """The same on the cluster and topic that exist, so success answers are checked too."""
    run_cases(api, path, method, path_parameters=existing(cluster, path, method))


@pytest.mark.parametrize(("path", "method"), WITH_INPUT)
def test_requests_outside_the_document_get_documented_answers(
    api: Any, cluster: BlockingCluster, path: str, method: str
) -> None:
    """Data the document forbids: never a 500, and the answers are documented ones. (Not
    necessarily refused: an unknown query parameter is ignored, an empty one is absent.)"""
    fixed = existing(cluster, path, method)
    try:
        run_cases(api, path, method, GenerationMode.NEGATIVE, path_parameters=fixed)
    except Unsatisfiable:  # e.g. one free-form string parameter: nothing is forbidden
        pytest.skip(f"the document forbids nothing of {method.upper()} {path}")


# What these tests found, each kept as a plain example (each was a 500).


async def test_a_partition_the_topic_does_not_have_is_refused_with_400(
    http: httpx.AsyncClient,
) -> None:
    accepted = await http.post("/async/events?partition=7", content=b"v")
    assert accepted.status_code == 400, accepted.text
    assert "partition 7" in accepted.json()["message"]
    acked = await http.post("/sync/events", content=b"v", headers={"X-Kafka-Partition": "7"})
    assert acked.status_code == 400, acked.text
    mixed = await http.post(
        "/batch/sync/events", json=[{"value": "a", "partition": 1}, {"value": "b", "partition": 7}]
    )
    assert mixed.status_code == 400, mixed.text
    first, second = mixed.json()["records"]
    assert first["partition"] == 1
    assert second["error_code"] == 400


async def test_an_empty_batch_to_an_acknowledged_route_answers_no_records(
    http: httpx.AsyncClient,
) -> None:
    for route in ("/batch/sync/events", "/safe/batch/sync/events"):
        answer = await http.post(route, content=b"")
        assert answer.status_code == 200, (route, answer.text)
        assert answer.json() == {"topic": "events", "records": []}


async def test_a_partition_or_timestamp_beyond_kafkas_integers_is_refused_with_400(
    http: httpx.AsyncClient,
) -> None:
    too_late = await http.post(f"/batch/sync/events?timestamp={2**63}", content=b"v\n")
    assert too_late.status_code == 400, too_late.text
    assert "timestamp" in too_late.json()["message"]
    too_far = await http.post(f"/async/events?partition={2**31}", content=b"v")
    assert too_far.status_code == 400, too_far.text
    item = await http.post("/batch/async/events", json=[{"value": "v", "timestamp": 2**63}])
    assert item.status_code == 400, item.text
    assert "record 0: timestamp" in item.json()["message"]


async def test_a_producer_failure_while_accepting_is_answered_as_itself_not_500(
    http: httpx.AsyncClient, app: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Found by benchmarks/gateway.py: a batch to a topic whose metadata the producer
    did not have within max_block was a 500; any failure the producer raises while
    taking records is answered by its own status.)"""

    class Refusing:
        async def partitions_for(self, topic: str) -> list[int]:
            return [0, 1, 2]

        async def produce_batch(self, topic: str, records: Any, partition: Any = None) -> None:
            raise MessageTooLargeError("the batch is larger than max_request_size")

    monkeypatch.setattr(app.backend, "producer", lambda custody: Refusing())
    answer = await http.post("/batch/async/events", content=b"a\nb\n")
    assert answer.status_code == 413, answer.text
    assert answer.json()["error_code"] == 413
    assert "the batch is larger than max_request_size" in answer.json()["message"]
