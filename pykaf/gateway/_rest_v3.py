"""Confluent's REST v3: clusters, topics, and records (with its streaming mode).

The shapes are Confluent's REST Proxy's (``kind``, ``metadata.self`` and
``resource_name``, ``related`` links, ``data`` lists, ``{"error_code", "message"}``
errors with its codes: 40002 for a request Kafka refuses, 40403 for an unknown topic,
50002/50003 for other Kafka errors, 50301 with Retry-After when the journal's disk
failed: retry), so clients written against it work here. The
links point where Confluent's do, also to resources this gateway does not serve
(brokers, configs, ACLs...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from pykaf.admin import NewTopic, TopicDescription
from pykaf.errors import (
    BrokerError,
    ClusterAuthorizationFailedError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidTopicError,
    KafkaTimeoutError,
    PolicyViolationError,
    PykafError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from pykaf.gateway._asgi import HttpError, JsonResponse, Request, Response
from pykaf.gateway._body import check_topic_name, custody_of
from pykaf.gateway._routes import Context, Route
from pykaf.gateway._v3_schemas import (
    CLUSTER_LIST_OPENAPI,
    CLUSTER_OPENAPI,
    CREATE_TOPIC_OPENAPI,
    DELETE_TOPIC_OPENAPI,
    PRODUCE_OPENAPI,
    TOPIC_LIST_OPENAPI,
    TOPIC_OPENAPI,
)
from pykaf.gateway._v3_stream import produce_records

__all__ = ["V3_ROUTES"]

# Admin calls are bounded: past this, the answer is Confluent's retriable error.
_ADMIN_TIMEOUT = 10.0
# How long (and how many tries) a record's topic may take to become known to a producer.
_T = TypeVar("_T")

# Kafka's refusals Confluent answers 400/40002 ("the request is wrong").
_BAD_REQUEST = (
    TopicAlreadyExistsError,
    InvalidReplicationFactorError,
    InvalidReplicaAssignmentError,
    InvalidPartitionsError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTopicError,
    KafkaTimeoutError,
    PolicyViolationError,
    UnsupportedVersionError,
)


def _admin_error(exc: BaseException) -> HttpError:
    """An admin failure in Confluent's terms (its KafkaExceptionMapper's codes)."""
    if isinstance(exc, HttpError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, UnknownTopicOrPartitionError):
        return HttpError(404, text, error_code=40403)
    if isinstance(exc, TopicAuthorizationFailedError | ClusterAuthorizationFailedError):
        return HttpError(403, text, error_code=40301)
    if isinstance(exc, _BAD_REQUEST):
        return HttpError(400, text, error_code=40002)
    if isinstance(exc, PykafError | TimeoutError | OSError):
        retriable = not isinstance(exc, BrokerError) or exc.retriable
        return HttpError(500, text, error_code=50003 if retriable else 50002)
    raise exc


async def _admin(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except Exception as exc:
        raise _admin_error(exc) from None


# -- the resources' shapes ----------------------------------------------------------------


def _base(request: Request) -> str:
    """The URL of ``/v3`` as the client reached it (the links are absolute, as
    Confluent's are)."""
    scope = request.scope
    host = request.headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/v3"


def _cluster_data(base: str, cluster_id: str, controller_id: int | None) -> dict[str, Any]:
    url = f"{base}/clusters/{cluster_id}"
    data: dict[str, Any] = {
        "kind": "KafkaCluster",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cluster_id}"},
        "cluster_id": cluster_id,
    }
    if controller_id is not None:
        data["controller"] = {"related": f"{url}/brokers/{controller_id}"}
    for name, path in (
        ("acls", "acls"),
        ("brokers", "brokers"),
        ("broker_configs", "broker-configs"),
        ("consumer_groups", "consumer-groups"),
        ("topics", "topics"),
        ("partition_reassignments", "topics/-/partitions/-/reassignment"),
    ):
        data[name] = {"related": f"{url}/{path}"}
    return data


def _topic_data(
    base: str,
    cluster_id: str,
    name: str,
    *,
    internal: bool,
    partitions: int,
    replication_factor: int,
) -> dict[str, Any]:
    url = f"{base}/clusters/{cluster_id}/topics/{name}"
    return {
        "kind": "KafkaTopic",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cluster_id}/topic={name}"},
        "cluster_id": cluster_id,
        "topic_name": name,
        "is_internal": internal,
        "replication_factor": replication_factor,
        "partitions_count": partitions,
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
    }


def _described(base: str, cluster_id: str, topic: TopicDescription) -> dict[str, Any]:
    # Confluent reads the replication factor off the first partition.
    replicas = len(topic.partitions[0].replicas) if topic.partitions else 0
    return _topic_data(
        base,
        cluster_id,
        topic.name,
        internal=topic.internal,
        partitions=len(topic.partitions),
        replication_factor=replicas,
    )


def _collection(kind: str, url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"self": url, "next": None}, "data": data}


# -- clusters -----------------------------------------------------------------------------


async def _known_cluster_id(ctx: Context) -> str:
    known = await ctx.backend.cluster_id()
    if known is None:
        raise HttpError(
            500,
            "Kafka is not reachable, or does not tell its cluster id"
            " (set cluster_id in the gateway's settings)",
            error_code=50003,
        )
    return known


async def _check_cluster(ctx: Context, cluster_id: str) -> str:
    known = await _known_cluster_id(ctx)
    if cluster_id != known:
        raise HttpError(404, f"Cluster {cluster_id} cannot be found.", error_code=404)
    return known


async def _one_cluster(ctx: Context, request: Request) -> dict[str, Any]:
    ctx.security.authorize(request.principal, "describe", None)
    cluster_id = await _known_cluster_id(ctx)
    described = await _admin(ctx.backend.admin().describe_cluster(timeout=_ADMIN_TIMEOUT))
    return _cluster_data(_base(request), cluster_id, described.controller_id)


async def _list_clusters(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    url = f"{_base(request)}/clusters"
    data = [await _one_cluster(ctx, request)]
    return JsonResponse(200, _collection("KafkaClusterList", url, data))


async def _get_cluster(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    await _check_cluster(ctx, params["cluster_id"])
    return JsonResponse(200, await _one_cluster(ctx, request))


# -- topics -------------------------------------------------------------------------------


async def _list_topics(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    cluster_id = await _check_cluster(ctx, params["cluster_id"])
    ctx.security.authorize(request.principal, "describe", None)  # any topic at all
    admin = ctx.backend.admin()
    listing = await _admin(admin.list_topics(timeout=_ADMIN_TIMEOUT))
    # As Kafka lists topics: only those the caller may describe.
    names = sorted(n for n in listing if ctx.security.may(request.principal, "describe", n))
    described = await _admin(admin.describe_topics(names, timeout=_ADMIN_TIMEOUT))
    base = _base(request)
    # A topic deleted between the listing and the description is left out.
    data = [_described(base, cluster_id, described.ok[n]) for n in names if n in described.ok]
    url = f"{base}/clusters/{cluster_id}/topics"
    return JsonResponse(200, _collection("KafkaTopicList", url, data))


async def _get_topic(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    cluster_id = await _check_cluster(ctx, params["cluster_id"])
    topic = check_topic_name(params["topic_name"])
    ctx.security.authorize(request.principal, "describe", topic)
    described = await _admin(ctx.backend.admin().describe_topics([topic], timeout=_ADMIN_TIMEOUT))
    description = await _admin(_item(described, topic))
    return JsonResponse(200, _described(_base(request), cluster_id, description))


async def _item(outcomes: Mapping[str, _T], name: str) -> _T:
    return outcomes[name]  # raises the item's own error


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if type(value) is not kind:  # exact: JSON's true is not an integer here
        raise HttpError(400, f"{name} must be {_KINDS[kind]}, not {value!r}")
    return value


_KINDS = {int: "an integer", bool: "true or false", list: "an array", dict: "an object"}


# What Kafka's CreateTopics carries: counts and ids past these cannot be sent at all.
_INT32 = 2**31 - 1
_INT16 = 2**15 - 1


def _within(value: int, name: str, top: int) -> int:
    if value != -1 and not 1 <= value <= top:
        raise HttpError(400, f"{name} must be between 1 and {top}, not {value}", error_code=40002)
    return value


def _assignments(raw: dict[str, Any] | None) -> dict[int, tuple[int, ...]] | None:
    if not raw:
        return None
    assignments: dict[int, tuple[int, ...]] = {}
    for partition, brokers in raw.items():
        ids = brokers if isinstance(brokers, list) else None
        if (
            not (partition.isascii() and partition.isdigit())
            or int(partition) > _INT32
            or ids is None
            or not all(type(b) is int and 0 <= b <= _INT32 for b in ids)
        ):
            raise HttpError(
                400,
                'replicas_assignments maps partition ids ("0", "1"...) to lists of'
                f" broker ids, not {partition!r}: {brokers!r}",
                error_code=40002,
            )
        assignments[int(partition)] = tuple(ids)
    return assignments


def _new_topic(body: Any) -> tuple[NewTopic, bool]:
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object with topic_name")
    name = body.get("topic_name")
    if not isinstance(name, str):
        raise HttpError(400, "topic_name is required (a string)")
    check_topic_name(name)
    partitions = _within(_field(body, "partitions_count", int, -1), "partitions_count", _INT32)
    replication = _within(_field(body, "replication_factor", int, -1), "replication_factor", _INT16)
    validate_only = bool(_field(body, "validate_only", bool, False))
    configs: dict[str, str] = {}
    for entry in _field(body, "configs", list, []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise HttpError(400, "configs must be a list of {'name', 'value'}")
        value = entry.get("value")
        if value is not None:  # null: the broker's default, i.e. nothing to set
            configs[entry["name"]] = value if isinstance(value, str) else str(value)
    assignments = _assignments(_field(body, "replicas_assignments", dict))
    try:
        topic = NewTopic(
            name=name,
            partitions=-1 if assignments else partitions,
            replication_factor=-1 if assignments else replication,
            configs=configs,
            assignments=assignments,
        )
    except ValueError as exc:
        raise HttpError(400, str(exc), error_code=40002) from None
    return topic, validate_only


async def _create_topic(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    cluster_id = await _check_cluster(ctx, params["cluster_id"])
    new, validate_only = _new_topic(await request.json())
    ctx.security.authorize(request.principal, "create", new.name)
    outcomes = await _admin(
        ctx.backend.admin().create_topics(
            [new], validate_only=validate_only, timeout=_ADMIN_TIMEOUT
        )
    )
    created = await _admin(_item(outcomes, new.name))
    data = _topic_data(
        _base(request),
        cluster_id,
        new.name,
        internal=False,
        partitions=created.partitions,
        replication_factor=created.replication_factor,
    )
    # Confluent: 201 when created, 200 for a dry run (validate_only).
    return JsonResponse(200 if validate_only else 201, data)


async def _delete_topic(ctx: Context, request: Request, params: Mapping[str, str]) -> Response:
    await _check_cluster(ctx, params["cluster_id"])
    topic = check_topic_name(params["topic_name"])
    # Its own action: a principal allowed to create topics may not destroy one (and its
    # records) unless a rule says "delete" (or "*").
    ctx.security.authorize(request.principal, "delete", topic)
    outcomes = await _admin(ctx.backend.admin().delete_topics([topic], timeout=_ADMIN_TIMEOUT))
    await _admin(_item(outcomes, topic))
    return Response(204, content_type="application/json")


# -- records ------------------------------------------------------------------------------


async def _produce(ctx: Context, request: Request, params: Mapping[str, str]) -> Response | None:
    known = await ctx.backend.cluster_id()
    cluster_id = params["cluster_id"]
    # Unknowable while Kafka is down: the records are taken anyway (the journal's purpose).
    if known is not None and cluster_id != known:
        raise HttpError(404, f"Cluster {cluster_id} cannot be found.", error_code=404)
    topic = check_topic_name(params["topic_name"])
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HttpError(
            415, f"HTTP 415 Unsupported Media Type: send application/json, not {content_type!r}"
        )
    ctx.security.authorize(request.principal, "produce", topic)
    custody = custody_of(request, ctx.settings.sync_custody)
    await ctx.backend.check_topic(topic, custody)
    await ctx.backend.prepare(topic, custody)
    await produce_records(ctx, request, cluster_id, topic, custody)
    return None


_CLUSTER = "/v3/clusters/{cluster_id}"
_TOPIC = _CLUSTER + "/topics/{topic_name}"

V3_ROUTES: list[Route] = [
    Route(
        "GET",
        "/v3/clusters",
        _list_clusters,
        "v3_list_clusters",
        "List Clusters (Confluent REST v3): the one Kafka cluster",
        openapi=CLUSTER_LIST_OPENAPI,
    ),
    Route(
        "GET",
        _CLUSTER,
        _get_cluster,
        "v3_get_cluster",
        "Get Cluster (Confluent REST v3)",
        openapi=CLUSTER_OPENAPI,
    ),
    Route(
        "GET",
        _CLUSTER + "/topics",
        _list_topics,
        "v3_list_topics",
        "List Topics (Confluent REST v3)",
        openapi=TOPIC_LIST_OPENAPI,
    ),
    Route(
        "POST",
        _CLUSTER + "/topics",
        _create_topic,
        "v3_create_topic",
        "Create Topic (Confluent REST v3): 201, or 200 for validate_only",
        openapi=CREATE_TOPIC_OPENAPI,
    ),
    Route(
        "GET",
        _TOPIC,
        _get_topic,
        "v3_get_topic",
        "Get Topic (Confluent REST v3)",
        openapi=TOPIC_OPENAPI,
    ),
    Route(
        "DELETE",
        _TOPIC,
        _delete_topic,
        "v3_delete_topic",
        "Delete Topic (Confluent REST v3): 204",
        openapi=DELETE_TOPIC_OPENAPI,
    ),
    Route(
        "POST",
        _TOPIC + "/records",
        _produce,
        "v3_produce_records",
        "Produce Records (Confluent REST v3): one delivery report per record, in order;"
        " streamed as concatenated JSON when the request is",
        openapi=PRODUCE_OPENAPI,
    ),
]
