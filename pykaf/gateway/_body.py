"""Request bodies and query parameters as producer records (kafboy's routes).

One record: the body is the value; key, partition, timestamp and headers come from the
query (``key``, ``partition``, ``timestamp``, ``header.NAME``) or from HTTP headers
(``X-Kafka-Key``, ``X-Kafka-Partition``, ``X-Kafka-Timestamp``, ``X-Kafka-Header-NAME``).
A batch: one value per line, or (``Content-Type: application/json``) a JSON array whose
items are strings (values) or objects ``{"key", "value", "headers", "partition",
"timestamp"}``; a JSON value that is not a string is sent as its JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pykaf import ProducerRecord
from pykaf.gateway._asgi import HttpError, Request
from pykaf.gateway._settings import CUSTODY_LEVELS, Custody
from pykaf.protocol import split_lines

__all__ = [
    "LineBatch",
    "batch_records",
    "check_topic_name",
    "custody_of",
    "one_record",
    "record_context",
]

# fullmatch, not "^...$": "$" also matches before a final newline.
_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_VALID_TOPICS: set[str] = set()
_VALID_TOPICS_KEPT = 4096
_HEADER_QUERY = "header."
_HEADER_HTTP = "x-kafka-header-"
# Kafka's fields are int32 (partition) and int64 (timestamp): larger would fail only
# when the batch is encoded, after the record was answered for.
_MAXIMUM = {"partition": 2**31 - 1, "timestamp": 2**63 - 1}


def check_topic_name(topic: str) -> str:
    if topic in _VALID_TOPICS:  # checked before: a set lookup instead of the pattern
        return topic
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise HttpError(
            400,
            f"{topic!r} is not a valid topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
            error_code=40002,
        )
    if len(_VALID_TOPICS) >= _VALID_TOPICS_KEPT:  # bounded: any names may be posted to
        _VALID_TOPICS.clear()
    _VALID_TOPICS.add(topic)
    return topic


def custody_of(request: Request, default: Custody) -> Custody:
    """The request's custody: the ``custody`` query parameter, else the
    ``X-Pykaf-Custody`` header, else the route's default."""
    raw = request.query.get("custody") or request.headers.get("x-pykaf-custody")
    if raw is None:
        return default
    if raw not in CUSTODY_LEVELS:
        raise HttpError(400, f"custody must be one of {', '.join(CUSTODY_LEVELS)}, not {raw!r}")
    return raw  # type: ignore[return-value]


def _int(name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer, not {raw!r}") from None
    if not 0 <= value <= _MAXIMUM[name]:
        raise HttpError(400, f"{name} must be in 0..{_MAXIMUM[name]}, not {value}")
    return value


_KAFKA_HTTP = "x-kafka-"


_QUERY_FIELDS = frozenset({"key", "partition", "timestamp"})


def _names_record_fields(query: Mapping[str, str], http: dict[str, str]) -> bool:
    """Whether the query or the HTTP headers name a key, partition, timestamp or record
    header (one look at the names: most requests name none)."""
    for name in query:
        if name in _QUERY_FIELDS or name.startswith(_HEADER_QUERY):
            return True
    return any(name.startswith(_KAFKA_HTTP) for name in http)


def record_context(
    request: Request, principal_header: str | None
) -> tuple[bytes | None, int | None, int | None, list[tuple[str, bytes]]]:
    """``(key, partition, timestamp, headers)`` from the query and HTTP headers (the
    query wins where both are given)."""
    query = request.query
    http = request.headers
    principal = None if principal_header is None else request.principal
    if principal is None and not _names_record_fields(query, http):
        return None, None, None, []  # the common request: it names none of them
    raw_key = query.get("key", http.get("x-kafka-key"))
    key = None if raw_key is None else raw_key.encode()
    partition = _int("partition", query.get("partition", http.get("x-kafka-partition")))
    timestamp = _int("timestamp", query.get("timestamp", http.get("x-kafka-timestamp")))
    headers: list[tuple[str, bytes]] = []
    if any(name.startswith(_HEADER_HTTP) for name in http):
        for name, value in request.header_list:
            if name.startswith(_HEADER_HTTP) and len(name) > len(_HEADER_HTTP):
                headers.append((name[len(_HEADER_HTTP) :], value.encode("latin-1")))
    for name, value in query.items():
        if name.startswith(_HEADER_QUERY) and len(name) > len(_HEADER_QUERY):
            headers.append((name[len(_HEADER_QUERY) :], value.encode()))
    if principal_header is not None and principal is not None:
        headers = [h for h in headers if h[0] != principal_header]  # never forged
        headers.append((principal_header, principal.encode()))
    return key, partition, timestamp, headers


def one_record(request: Request, body: bytes, principal_header: str | None) -> LineBatch:
    """The body as one record (a batch of one value: no record object on the way to
    the producer; ``/async`` is measured against a do-nothing endpoint)."""
    key, partition, timestamp, headers = record_context(request, principal_header)
    return LineBatch([body], key, partition, timestamp, headers or None, single=True)


def batch_records(
    request: Request, body: bytes, principal_header: str | None
) -> list[ProducerRecord] | LineBatch:
    key, partition, timestamp, headers = record_context(request, principal_header)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise HttpError(400, "a JSON batch must be an array of records")
        return [
            _json_item(i, item, key, partition, timestamp, headers, principal_header)
            for i, item in enumerate(items)
        ]
    # One record per line, a CR before the newline dropped (in C when built).
    return LineBatch(split_lines(body), key, partition, timestamp, headers or None)


@dataclass(slots=True)
class LineBatch:
    """Records that share everything but their values (a batch of lines): handed to the
    producer as plain values, without a record object each (``/batch/async`` is
    measured against ``produce_batch`` called directly)."""

    values: list[bytes]
    key: bytes | None
    partition: int | None
    timestamp: int | None
    headers: list[tuple[str, bytes]] | None
    #: The whole body is this one record (not a batch that has one line).
    single: bool = False

    def __len__(self) -> int:
        return len(self.values)

    def items(self) -> list[Any]:
        """What ``produce_batch`` takes: the values themselves when nothing else is
        set, ``(key, value)`` pairs with a key, else one ``ProducerRecord`` each."""
        if self.timestamp is None and self.headers is None:
            if self.key is None:
                return self.values
            key = self.key
            return [(key, value) for value in self.values]
        return self.records()

    def records(self) -> list[ProducerRecord]:
        return [
            ProducerRecord(
                value=value,
                key=self.key,
                partition=self.partition,
                timestamp=self.timestamp,
                headers=self.headers,
            )
            for value in self.values
        ]


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def _json_item(
    index: int,
    item: Any,
    key: bytes | None,
    partition: int | None,
    timestamp: int | None,
    headers: list[tuple[str, bytes]],
    reserved: str | None,
) -> ProducerRecord:
    if not isinstance(item, dict):
        return ProducerRecord(
            value=_as_bytes(item),
            key=key,
            partition=partition,
            timestamp=timestamp,
            headers=headers or None,
        )
    unknown = set(item) - {"key", "value", "headers", "partition", "timestamp"}
    if unknown:
        raise HttpError(
            400,
            f"record {index}: unknown field(s) {', '.join(sorted(unknown))}"
            " (known: key, value, headers, partition, timestamp)",
        )
    own_headers = list(headers)
    raw_headers = item.get("headers") or {}
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    try:
        for name, value in pairs:
            if str(name) != reserved:  # the principal header is the gateway's to write
                own_headers.append((str(name), _as_bytes(value) or b""))
    except (TypeError, ValueError):
        raise HttpError(
            400, f"record {index}: headers must be an object or a list of [name, value]"
        ) from None
    own_partition = item.get("partition", partition)
    own_timestamp = item.get("timestamp", timestamp)
    for name, value in (("partition", own_partition), ("timestamp", own_timestamp)):
        if value is not None and (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value <= _MAXIMUM[name]
        ):
            raise HttpError(
                400,
                f"record {index}: {name} must be an integer in 0..{_MAXIMUM[name]}, not {value!r}",
            )
    return ProducerRecord(
        value=_as_bytes(item.get("value")),
        key=_as_bytes(item["key"]) if "key" in item else key,
        partition=own_partition,
        timestamp=own_timestamp,
        headers=own_headers or None,
    )
