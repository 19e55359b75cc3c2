"""Records as JSON lines, both ways: what ``pykaf consume --json`` writes and
``pykaf produce --json`` reads.

One object per record: ``topic``, ``partition``, ``offset``, ``timestamp`` (ms since the
epoch), ``key``, ``value``, ``headers`` (a list of ``[name, value]`` pairs: order and
repeated names kept). Keys, values and header values are strings when their bytes are
UTF-8, else base64 strings flagged by ``key_encoding`` / ``value_encoding`` /
``headers_encoding`` = ``"base64"`` (present only then); null stays null.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from pykaf import ConsumerRecord
from pykaf.cli._connect import UsageError

__all__ = ["record_from_json", "record_to_json"]

_BASE64: Final = "base64"
_FIELDS: Final = frozenset(
    {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
        "key_encoding",
        "value_encoding",
        "headers_encoding",
    }
)
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def _text(data: bytes | None) -> tuple[str | None, bool]:
    """(the string, was it base64)."""
    if data is None:
        return None, False
    try:
        return data.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def record_to_json(record: ConsumerRecord) -> bytes:
    """One record as one line of JSON (UTF-8, no newline)."""
    offset, timestamp, key_bytes, value_bytes, headers = record
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": offset,
        "timestamp": timestamp,
    }
    key, key_b64 = _text(key_bytes)
    value, value_b64 = _text(value_bytes)
    out["key"] = key
    out["value"] = value
    if headers:
        texts = [_text(v) for _, v in headers]
        as_base64 = any(b64 for _, b64 in texts)
        if as_base64:  # all in one encoding: a reader needs no per-header flag
            out["headers"] = [
                [name, None if v is None else base64.b64encode(v).decode("ascii")]
                for name, v in headers
            ]
            out["headers_encoding"] = _BASE64
        else:
            out["headers"] = [
                [name, text] for (name, _), (text, _) in zip(headers, texts, strict=True)
            ]
    else:
        out["headers"] = []
    if key_b64:
        out["key_encoding"] = _BASE64
    if value_b64:
        out["value_encoding"] = _BASE64
    return _encode_json(out).encode()


def _bytes(obj: dict[str, Any], name: str, where: str, base64_flag: str) -> bytes | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}: {name!r} must be a string or null, not {value!r}")
    if obj.get(base64_flag) == _BASE64:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise UsageError(f"{where}: {name!r} is not valid base64") from None
    return value.encode()


def _headers(obj: dict[str, Any], where: str) -> list[tuple[str, bytes | None]] | None:
    raw = obj.get("headers")
    if raw is None or raw == []:
        return None
    pairs = raw.items() if isinstance(raw, dict) else raw
    out: list[tuple[str, bytes | None]] = []
    in_base64 = obj.get("headers_encoding") == _BASE64
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise UsageError(f"{where}: headers must be an object or a list of [name, value] pairs")
        name, value = pair
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where}: header {name!r} must be a string or null")
        if value is None:
            out.append((name, None))
        elif in_base64:
            try:
                out.append((name, base64.b64decode(value, validate=True)))
            except binascii.Error:
                raise UsageError(f"{where}: header {name!r} is not valid base64") from None
        else:
            out.append((name, value.encode()))
    return out


def record_from_json(line: bytes, partition: int | None) -> dict[str, Any]:
    """A ``produce_batch`` item from one JSON line; ``partition`` (``-p``) applies when
    the object names none. Fields ``consume --json`` adds (topic, offset, timestamp) are
    accepted and ignored, so its output can be produced again."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        shown = line[:60].decode("utf-8", "replace")
        raise UsageError(f"--json: not a JSON object ({exc}): {shown!r}") from None
    where = f"--json {line[:40].decode('utf-8', 'replace')!r}"
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object per line")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise UsageError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: key, value,"
            " headers, partition"
        )
    item: dict[str, Any] = {
        "key": _bytes(obj, "key", where, "key_encoding"),
        "value": _bytes(obj, "value", where, "value_encoding"),
    }
    headers = _headers(obj, where)
    if headers is not None:
        item["headers"] = headers
    own = obj.get("partition", partition)
    if own is not None:
        if type(own) is not int or own < 0:
            raise UsageError(f"{where}: partition must be an integer >= 0, not {own!r}")
        item["partition"] = own
    return item
