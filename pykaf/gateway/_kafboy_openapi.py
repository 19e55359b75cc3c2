"""What the OpenAPI document says of kafboy's routes: their bodies, query parameters,
HTTP headers and answers (``Route.openapi`` of each route in ``_kafboy.py``).

Kept beside the routes rather than in the handlers' module so that the handlers stay
short; it describes what ``_body.py`` reads and what ``_kafboy.py`` answers.
"""

from __future__ import annotations

from typing import Any

from pykaf.gateway._settings import CUSTODY_LEVELS

__all__ = ["kafboy_operation"]

_TOPIC = {
    "name": "topic",
    "in": "path",
    "required": True,
    "description": "the Kafka topic (it must exist)",
    "schema": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"},
}
# Kafka's int32 and int64.
_PARTITION = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_TIMESTAMP = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _context_parameters(*, custody: bool) -> list[dict[str, Any]]:
    """Key, partition, timestamp, record headers (and custody): a query parameter each,
    or an HTTP header; the query wins where both are given."""
    parameters: list[dict[str, Any]] = [
        {"name": "key", "in": "query", "description": "the record key (UTF-8)",
         "schema": {"type": "string"}},
        {"name": "partition", "in": "query",
         "description": "the partition (else the producer's partitioner chooses)",
         "schema": _PARTITION},
        {"name": "timestamp", "in": "query",
         "description": "the record timestamp, ms since the epoch (else the time of produce)",
         "schema": _TIMESTAMP},
        {
            # Any number of ``header.NAME=VALUE`` query parameters: an object exploded
            # into the query, its property names carrying the prefix.
            "name": "header.*",
            "in": "query",
            "description": "a record header per `header.NAME=VALUE` (also"
            " `X-Kafka-Header-NAME: VALUE` HTTP headers)",
            "style": "form",
            "explode": True,
            "schema": {
                "type": "object",
                "propertyNames": {"pattern": "^header\\..+$"},
                "additionalProperties": {"type": "string"},
            },
        },
        {"name": "X-Kafka-Key", "in": "header", "description": "the record key",
         "schema": {"type": "string"}},
        {"name": "X-Kafka-Partition", "in": "header", "description": "the partition",
         "schema": _PARTITION},
        {"name": "X-Kafka-Timestamp", "in": "header",
         "description": "the record timestamp, ms since the epoch", "schema": _TIMESTAMP},
    ]  # fmt: skip
    if custody:
        levels = {"type": "string", "enum": list(CUSTODY_LEVELS)}
        parameters += [
            {"name": "custody", "in": "query", "schema": levels,
             "description": "where the record is kept until Kafka has it (else the"
             " route's default: journal with a journal directory, else memory, for"
             " /async; the gateway's sync custody for /sync)"},
            {"name": "X-Pykaf-Custody", "in": "header", "schema": levels,
             "description": "as the custody query parameter"},
        ]  # fmt: skip
    return parameters


_ONE_BODY = {
    "description": "the record value, as is",
    "required": False,
    "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BATCH_RECORD = {
    "type": "object",
    "additionalProperties": False,
    "description": "one record; a key, value or header value that is not a string is"
    " sent as its JSON text",
    "properties": {
        "key": {},
        "value": {},
        "headers": {
            "anyOf": [
                {"type": "object", "additionalProperties": {}},
                {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "prefixItems": [{"type": "string"}, {}],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            ]
        },
        "partition": _PARTITION,
        "timestamp": _TIMESTAMP,
    },
}
_BATCH_BODY = {
    "description": "the records: one value per line (text/plain), or a JSON array whose"
    " items are records or values (a string is the value; other JSON is sent as its text)",
    "required": False,
    "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {
            "schema": {
                "type": "array",
                "items": {
                    "anyOf": [
                        _BATCH_RECORD,
                        {"type": ["string", "number", "boolean", "null", "array"]},
                    ]
                },
            }
        },
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["topic", "accepted", "custody"],
    "properties": {
        "topic": {"type": "string"},
        "accepted": {"type": "integer", "minimum": 0, "description": "records taken"},
        "custody": {"type": "string", "enum": list(CUSTODY_LEVELS)},
    },
}
_PLACED_PROPERTIES = {
    "partition": {"type": "integer"},
    "offset": {"type": "integer"},
    "timestamp": {"type": "integer", "description": "as Kafka stored it, ms"},
}
_PLACED = {
    "type": "object",
    "required": ["partition", "offset", "timestamp"],
    "properties": _PLACED_PROPERTIES,
}
_ONE_PLACED = {
    "type": "object",
    "required": ["topic", "partition", "offset", "timestamp"],
    "properties": {"topic": {"type": "string"}, **_PLACED_PROPERTIES},
}
_EACH_PLACED = {
    "type": "object",
    "required": ["topic", "records"],
    "properties": {
        "topic": {"type": "string"},
        "records": {
            "type": "array",
            "description": "one answer per record, in order: where it was written, or"
            " why it was not",
            "items": {"anyOf": [_PLACED, {"$ref": "#/components/schemas/Error"}]},
        },
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def kafboy_operation(*, batch: bool, safe: bool, acked: bool) -> dict[str, Any]:
    """The OpenAPI operation facts of one kafboy route."""
    parameters = [_TOPIC, *_context_parameters(custody=not safe)]
    responses: dict[str, Any] = {
        "400": {"description": "A bad topic name, parameter, body or partition"},
        "404": {"description": "The topic does not exist (error_code 40403)"},
    }
    if not acked:
        responses["202"] = _json("Accepted: in custody, to be sent to Kafka", _ACCEPTED)
    elif not batch:
        responses["200"] = _json("Written by Kafka", _ONE_PLACED)
    else:
        responses["200"] = _json("Every record written by Kafka", _EACH_PLACED)
        # When some records fail, the status is the first failure's and the body still
        # answers for each record; a request refused as a whole has the error body.
        either = {"anyOf": [_EACH_PLACED, {"$ref": "#/components/schemas/Error"}]}
        for status in ("400", "404"):
            responses[status]["content"] = {"application/json": {"schema": either}}
        responses["4XX"] = _json("Refused, or some records were not written", either)
        responses["5XX"] = _json("Some records were not written in time", either)
    return {
        "description": "Keys, partitions, timestamps and record headers come from the"
        " query or from HTTP headers (X-Kafka-Key, X-Kafka-Partition, X-Kafka-Timestamp,"
        " X-Kafka-Header-NAME); the query wins.",
        "parameters": parameters,
        "requestBody": _BATCH_BODY if batch else _ONE_BODY,
        "responses": responses,
    }
