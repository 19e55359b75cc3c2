"""What the gateway knows of the cluster: its topics, its id, and whether Kafka answers.

Asked through the admin client (``pykaf.AsyncAdmin``, as any user would), and kept:
a request must not cost a Metadata request each time, and while Kafka does not answer,
the gateway must not wait on it per request. ``Backend`` (the producers) builds on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pykaf import AsyncAdmin
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._settings import GatewaySettings

__all__ = ["TOPICS_FRESH", "ClusterView"]

log = logging.getLogger("pykaf.gateway")

# How long a list of the cluster's topics is trusted, and how often an unknown topic
# may make the gateway ask again (a client posting to a typo must not cost a Metadata
# request each time).
TOPICS_FRESH = 10.0
_UNKNOWN_RECHECK = 1.0
# Bounds one topic lookup: past it Kafka counts as unreachable and the record is taken
# into custody unchecked (it is checked again by the producer when Kafka returns).
_LOOKUP_TIMEOUT = 2.0

_ADMIN_KEYS = frozenset(
    {
        "security_protocol",
        "ssl_context",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_oauth_token_provider",
        "request_timeout",
        "client_id",
    }
)


class ClusterView:
    """The admin client, the cluster's topics and id as last seen, and ``reachable``."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._admin: AsyncAdmin | None = None
        self._topics: frozenset[str] = frozenset()
        self._topics_at = -1e9
        self._topics_tried_at = -1e9
        self._unknown_at: dict[str, float] = {}
        self._refresh: asyncio.Task[bool] | None = None
        self._cluster_id: str | None = None
        self._describe: asyncio.Future[str | None] | None = None
        self._described_at = -1e9
        self.reachable: bool | None = None  # None: not asked yet
        self.closed = False
        #: Called with (role, client) as each Kafka client opens (telemetry watches them).
        self.client_listeners: list[Callable[[str, Any], None]] = []

    def _check_open(self) -> None:
        if self.closed:
            raise HttpError(503, "the gateway is shutting down")

    def _opened(self, role: str, client: Any) -> None:
        for listener in self.client_listeners:
            listener(role, client)

    def admin(self) -> AsyncAdmin:
        if self._admin is None:
            self._check_open()
            options = {k: v for k, v in self.settings.producer_options.items() if k in _ADMIN_KEYS}
            self._admin = AsyncAdmin(self.settings.bootstrap, **options)
            self._opened("admin", self._admin)
        return self._admin

    def listed(self, topic: str) -> bool:
        """Whether the cluster's list of topics, as last seen, has ``topic`` (a list
        older than ``TOPICS_FRESH`` is refreshed in the background meanwhile)."""
        if topic not in self._topics:
            return False
        if time.monotonic() - self._topics_at >= TOPICS_FRESH and (
            self._refresh is None or self._refresh.done()
        ):
            self._refresh = asyncio.ensure_future(self._list_topics())
        return True

    async def topic_exists(self, topic: str) -> bool | None:
        """True or False as the cluster says, None when Kafka could not be asked. A topic
        seen in the cluster's list counts as there until a later list says otherwise
        (a list older than ``TOPICS_FRESH`` is refreshed in the background)."""
        if self.listed(topic):
            return True
        now = time.monotonic()
        if self.reachable is False and now - self._topics_tried_at < _UNKNOWN_RECHECK:
            return None  # Kafka was just found unreachable: do not wait on it per request
        if now - self._unknown_at.get(topic, -1e9) < _UNKNOWN_RECHECK:
            return False
        if not await self._refresh_topics():
            return None
        if topic in self._topics:
            self._unknown_at.pop(topic, None)
            return True
        if len(self._unknown_at) > 10_000:  # bounded: typos must not grow memory
            self._unknown_at.clear()
        self._unknown_at[topic] = time.monotonic()
        return False

    async def _refresh_topics(self) -> bool:
        # Concurrent requests for unknown topics share one Metadata request.
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._list_topics())
        return await asyncio.shield(self._refresh)

    async def _list_topics(self) -> bool:
        self._topics_tried_at = time.monotonic()
        try:
            listing = await asyncio.wait_for(self.admin().list_topics(), _LOOKUP_TIMEOUT)
        except Exception as exc:  # Kafka unreachable: the caller decides what that means
            self._topics_tried_at = time.monotonic()
            self.kafka_answered(exc)
            return False
        self.kafka_answered()
        self._topics = frozenset(listing)
        self._topics_at = time.monotonic()
        return True

    async def cluster_id(self) -> str | None:
        """The cluster's id as REST v3 shows it: ``settings.cluster_id``, else the id the
        cluster reports (asked once, then kept); None while Kafka cannot be asked (asked
        again at most once a second, and concurrent callers share one question)."""
        if self.settings.cluster_id is not None:
            return self.settings.cluster_id
        if self._cluster_id is None:
            if self._describe is None or (
                self._describe.done() and time.monotonic() - self._described_at >= _UNKNOWN_RECHECK
            ):
                self._describe = asyncio.ensure_future(self._describe_cluster())
            self._cluster_id = await asyncio.shield(self._describe)
        return self._cluster_id

    async def _describe_cluster(self) -> str | None:
        try:
            described = await asyncio.wait_for(self.admin().describe_cluster(), _LOOKUP_TIMEOUT)
        except Exception as exc:  # unreachable: the caller decides what that means
            self.kafka_answered(exc)
            return None
        finally:
            self._described_at = time.monotonic()
        self.kafka_answered()
        return described.cluster_id

    def kafka_answered(self, failure: BaseException | None = None) -> None:
        """What any look at the cluster found (None: it answered): ``reachable`` kept, and
        a WARNING once when Kafka stops answering, once when it answers again."""
        if failure is not None:
            if self.reachable is not False:
                log.warning(
                    "Kafka is not reachable from the gateway: %s",
                    failure or type(failure).__name__,
                )
            self.reachable = False
            return
        if self.reachable is False:
            log.warning("Kafka is reachable from the gateway again")
        self.reachable = True
