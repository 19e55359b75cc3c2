"""``Request.query``: a query string is parsed once and shared by the requests that send
it again (read-only), escaped or not, with a bounded cache whatever strings are sent."""

from __future__ import annotations

from typing import Any

import pytest

from pykaf.gateway import _asgi
from pykaf.gateway._asgi import Request


def _request(query: bytes) -> Request:
    scope: dict[str, Any] = {"method": "POST", "path": "/async/t", "query_string": query}

    async def nothing(*_: Any) -> Any:
        return None

    return Request(scope, nothing, nothing, max_body=1024)


def test_the_same_query_string_is_parsed_once_and_shared() -> None:
    first = _request(b"custody=journal&key=k").query
    again = _request(b"custody=journal&key=k").query
    assert first == {"custody": "journal", "key": "k"}
    assert again is first


def test_escaped_repeated_and_empty_queries() -> None:
    assert _request(b"key=a%20b&key=c+d&header.x=").query == {"key": "c d", "header.x": ""}
    assert _request(b"a=1&&b").query == {"a": "1", "b": ""}
    assert _request(b"").query == {}


def test_the_cache_stays_bounded() -> None:
    for i in range(3 * _asgi._QUERIES_KEPT):
        assert _request(b"n=%d" % i).query == {"n": str(i)}
    assert len(_asgi._QUERIES) <= _asgi._QUERIES_KEPT


def test_a_shared_query_cannot_be_changed() -> None:
    query = _request(b"custody=memory").query
    with pytest.raises(TypeError):
        query["custody"] = "journal"  # type: ignore[index]
    assert _request(b"custody=memory").query == {"custody": "memory"}
