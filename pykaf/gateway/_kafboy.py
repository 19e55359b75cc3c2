"""kafboy's routes: POST a record (or a batch) to a topic, answered once it is in
custody (``/async``), once Kafka acknowledged it (``/sync``), and the ``/safe`` variants
that answer only after the journal's fsync."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pykaf import RecordMetadata
from pykaf.gateway._asgi import JsonResponse, Request, Response, error_body
from pykaf.gateway._body import batch_records, check_topic_name, custody_of, one_record
from pykaf.gateway._kafboy_openapi import kafboy_operation
from pykaf.gateway._outcomes import http_error_for
from pykaf.gateway._routes import Context, Route
from pykaf.gateway._settings import Custody

__all__ = ["KAFBOY_ROUTES"]


def _custody(gateway: Context, request: Request, *, acked: bool, safe: bool) -> Custody:
    if safe:
        return "journal_sync"
    settings = gateway.settings
    return custody_of(request, settings.sync_custody if acked else settings.default_async_custody)


async def _request(
    gateway: Context,
    request: Request,
    params: Mapping[str, str],
    *,
    acked: bool,
    safe: bool,
    batch: bool,
) -> tuple[str, Custody, Any]:
    """What every kafboy route does first: the topic (checked, permitted, in the
    cluster), the request's custody, and its records."""
    topic = check_topic_name(params["topic"])
    custody = _custody(gateway, request, acked=acked, safe=safe)
    gateway.security.authorize(request.principal, "produce", topic)
    body = await request.body()
    header = gateway.settings.security.principal_header
    records = batch_records(request, body, header) if batch else one_record(request, body, header)
    if not gateway.backend.listed(topic):  # the cluster's list, as known, names it: no await
        await gateway.backend.check_topic(topic, custody)
    return topic, custody, records


def _placed(metadata: RecordMetadata) -> dict[str, int]:
    return {
        "partition": metadata.partition,
        "offset": metadata.offset,
        "timestamp": metadata.timestamp,
    }


def _accepting(*, batch: bool, safe: bool) -> Any:
    async def handler(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
        topic, custody, records = await _request(
            gateway, request, params, acked=False, safe=safe, batch=batch
        )
        if records:
            await gateway.backend.accept(topic, records, custody)
        # Written out, not json.dumps: a checked topic name and a custody level need no
        # escaping, and this is the answer /async gives once per record.
        body = f'{{"topic":"{topic}","accepted":{len(records)},"custody":"{custody}"}}'
        return Response(202, body.encode())

    return handler


def _acknowledged(*, batch: bool, safe: bool) -> Any:
    async def handler(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
        topic, custody, records = await _request(
            gateway, request, params, acked=True, safe=safe, batch=batch
        )
        outcomes = await gateway.backend.deliver(topic, records, custody)
        retry_after = gateway.settings.retry_after
        if not batch:
            outcome = outcomes[0]
            if isinstance(outcome, BaseException):
                raise http_error_for(outcome, retry_after=retry_after)
            return JsonResponse(200, {"topic": topic, **_placed(outcome)})
        answers: list[dict[str, Any]] = []
        first_error = None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                error = http_error_for(outcome, retry_after=retry_after)
                first_error = first_error or error
                answers.append(error_body(error.error_code, error.message, error.extra))
            else:
                answers.append(_placed(outcome))
        status = 200 if first_error is None else first_error.status
        headers = {} if first_error is None else first_error.headers
        return JsonResponse(status, {"topic": topic, "records": answers}, headers)

    return handler


def _routes() -> list[Route]:
    routes = []
    for safe in (False, True):
        prefix = "/safe" if safe else ""
        for batch in (False, True):
            middle = "/batch" if batch else ""
            what = "records (one per line, or a JSON array)" if batch else "one record (the body)"
            fsync = "; answered after the journal's fsync" if safe else ""
            routes.append(
                Route(
                    "POST",
                    f"{prefix}{middle}/async/{{topic}}",
                    _accepting(batch=batch, safe=safe),
                    f"{'safe_' if safe else ''}{'batch_' if batch else ''}async",
                    f"Produce {what}; 202 once in custody{fsync}",
                    openapi=kafboy_operation(batch=batch, safe=safe, acked=False),
                )
            )
            routes.append(
                Route(
                    "POST",
                    f"{prefix}{middle}/sync/{{topic}}",
                    _acknowledged(batch=batch, safe=safe),
                    f"{'safe_' if safe else ''}{'batch_' if batch else ''}sync",
                    f"Produce {what}; answered when Kafka acknowledges{fsync}",
                    openapi=kafboy_operation(batch=batch, safe=safe, acked=True),
                )
            )
    return routes


KAFBOY_ROUTES = _routes()
