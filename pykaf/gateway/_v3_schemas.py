"""What the OpenAPI document says of the REST v3 routes (each ``Route.openapi``):
Confluent's request and answer shapes, as JSON Schema (OpenAPI 3.1), limited to what
this gateway accepts (no Schema Registry types) and what it answers.

Error answers named here without a body get Confluent's error shape from the document
builder (``_openapi.py``)."""

from __future__ import annotations

from typing import Any

from pykaf.gateway._openapi import MAYBE_PERSISTED

__all__ = [
    "CLUSTER_LIST_OPENAPI",
    "CLUSTER_OPENAPI",
    "CREATE_TOPIC_OPENAPI",
    "DELETE_TOPIC_OPENAPI",
    "PRODUCE_OPENAPI",
    "TOPIC_LIST_OPENAPI",
    "TOPIC_OPENAPI",
]

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_RELATIONSHIP = {"type": "object", "required": ["related"], "properties": {"related": _STRING}}
_RESOURCE_METADATA = {
    "type": "object",
    "required": ["self"],
    "properties": {"self": _STRING, "resource_name": _NULLABLE_STRING},
}

_CLUSTER_LINKS = (
    "acls",
    "brokers",
    "broker_configs",
    "consumer_groups",
    "topics",
    "partition_reassignments",
)
_CLUSTER: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "metadata", "cluster_id", *_CLUSTER_LINKS],
    "properties": {
        "kind": {"const": "KafkaCluster"},
        "metadata": _RESOURCE_METADATA,
        "cluster_id": _STRING,
        "controller": _RELATIONSHIP,
        **dict.fromkeys(_CLUSTER_LINKS, _RELATIONSHIP),
    },
}
_TOPIC: dict[str, Any] = {
    "type": "object",
    "required": [
        "kind",
        "metadata",
        "cluster_id",
        "topic_name",
        "is_internal",
        "replication_factor",
        "partitions_count",
        "partitions",
        "configs",
        "partition_reassignments",
    ],
    "properties": {
        "kind": {"const": "KafkaTopic"},
        "metadata": _RESOURCE_METADATA,
        "cluster_id": _STRING,
        "topic_name": _STRING,
        "is_internal": {"type": "boolean"},
        "replication_factor": {"type": "integer"},
        "partitions_count": {"type": "integer"},
        "partitions": _RELATIONSHIP,
        "configs": _RELATIONSHIP,
        "partition_reassignments": _RELATIONSHIP,
    },
}


def _list_of(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["kind", "metadata", "data"],
        "properties": {
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["self"],
                "properties": {"self": _STRING, "next": _NULLABLE_STRING},
            },
            "data": {"type": "array", "items": item},
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNKNOWN_CLUSTER = {"description": "No cluster with this id (error_code 404)"}
_TOPIC_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"}
_TOPIC_PARAMETER = {
    "name": "topic_name",
    "in": "path",
    "required": True,
    "description": "the Kafka topic",
    "schema": _TOPIC_NAME,
}
_UNKNOWN_TOPIC = {
    "description": "No cluster with this id (error_code 404), or no such topic (40403)"
}

CLUSTER_LIST_OPENAPI: dict[str, Any] = {
    "responses": {"200": _json("The list of Kafka clusters (this gateway's one)",
                               _list_of("KafkaClusterList", _CLUSTER))},
}  # fmt: skip
CLUSTER_OPENAPI: dict[str, Any] = {
    "responses": {"200": _json("The Kafka cluster", _CLUSTER), "404": _UNKNOWN_CLUSTER},
}
TOPIC_LIST_OPENAPI: dict[str, Any] = {
    "responses": {
        "200": _json("The topics the caller may describe", _list_of("KafkaTopicList", _TOPIC)),
        "404": _UNKNOWN_CLUSTER,
    },
}
TOPIC_OPENAPI: dict[str, Any] = {
    "parameters": [_TOPIC_PARAMETER],
    "responses": {"200": _json("The topic", _TOPIC), "404": _UNKNOWN_TOPIC},
}
DELETE_TOPIC_OPENAPI: dict[str, Any] = {
    "parameters": [_TOPIC_PARAMETER],
    "responses": {"204": {"description": "Deleted"}, "404": _UNKNOWN_TOPIC},
}

_CREATE_TOPIC: dict[str, Any] = {
    "type": "object",
    "required": ["topic_name"],
    "properties": {
        "topic_name": _TOPIC_NAME,
        "partitions_count": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**31 - 1,
            "description": "absent: the broker's default",
        },
        "replication_factor": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**15 - 1,
            "description": "absent: the broker's default",
        },
        "replicas_assignments": {
            "type": "object",
            "description": "partition id -> broker ids (instead of the two counts)",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            },
        },
        "configs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _STRING, "value": _NULLABLE_STRING},
            },
        },
        "validate_only": {"type": "boolean", "description": "true: a dry run (answered 200)"},
    },
}
CREATE_TOPIC_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _CREATE_TOPIC}},
    },
    "responses": {
        "200": _json("validate_only: the topic as it would be created", _TOPIC),
        "201": _json("The created topic", _TOPIC),
        "400": {
            "description": "Kafka refused it (error_code 40002): it already exists, a"
            " replication factor above the brokers' count, a bad config..."
        },
        "404": _UNKNOWN_CLUSTER,
    },
}

_DATA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "BINARY: data is base64; JSON: any JSON value (sent as its text);"
    " STRING: a string (sent as UTF-8). Null or absent data: a null key or value.",
    "required": ["type"],
    "properties": {"type": {"enum": ["BINARY", "JSON", "STRING"]}, "data": {}},
    "additionalProperties": False,
}
_PRODUCE_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "One record. To produce many in one request, send the objects one"
    " after the other (concatenated JSON, a chunked body): a report per record comes"
    " back in the same order, each as soon as Kafka acknowledges its record.",
    "properties": {
        "partition_id": {"type": ["integer", "null"], "minimum": 0},
        "headers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _STRING,
                    "value": {"type": ["string", "null"], "contentEncoding": "base64"},
                },
                "additionalProperties": False,
            },
        },
        "key": _DATA,
        "value": _DATA,
        "timestamp": {"type": ["string", "null"], "format": "date-time"},
    },
    "additionalProperties": False,
}
_SIZE = {
    "type": "object",
    "required": ["type", "size"],
    "properties": {
        "type": {"enum": ["BINARY", "JSON", "STRING"]},
        "size": {"type": "integer", "description": "bytes sent; -1 for null"},
    },
}
_PRODUCE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "A delivery report (error_code 200) or, in a stream, a record's error"
    " in its place (error_code and message).",
    "required": ["error_code"],
    "properties": {
        "error_code": {"type": "integer"},
        "message": _STRING,
        "cluster_id": _STRING,
        "topic_name": _STRING,
        "partition_id": {"type": "integer"},
        "offset": {"type": "integer"},
        "timestamp": {"type": "string", "format": "date-time"},
        "key": _SIZE,
        "value": _SIZE,
        "maybe_persisted": MAYBE_PERSISTED,
    },
}
PRODUCE_OPENAPI: dict[str, Any] = {
    "parameters": [
        _TOPIC_PARAMETER,
        {
            "name": "custody",
            "in": "query",
            "description": "where the records wait until Kafka acknowledges them"
            " (default: the gateway's sync_custody)",
            "schema": {"enum": ["memory", "journal", "journal_sync"]},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _PRODUCE_REQUEST}},
    },
    "responses": {
        "200": {
            "description": "The delivery report; in streaming mode one per record, in"
            " order (concatenated JSON, one object per line).",
            "content": {"application/json": {"schema": _PRODUCE_RESPONSE}},
        },
        "400": {"description": "A request of one record that is not valid"},
        "404": {"description": "No cluster with this id (404), or no such topic (40403)"},
        "413": {"description": "The body, or one record, is larger than the gateway's limit"},
        "415": {"description": "The body is not application/json"},
        "422": {"description": "The body holds no record"},
    },
}
