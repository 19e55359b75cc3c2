"""The Kafka side of the gateway: producers per custody, the admin client, topic checks.

Uses the public API only (``pykaf.AsyncProducer``, ``pykaf.AsyncAdmin``), as any user
would. One journal producer serves both journal levels: "journal_sync" is "journal"
followed by ``fsync()`` (callers waiting together share one fsync), so a record's
custody is chosen per request without a second journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from pykaf import AsyncAdmin, AsyncProducer, ProducerRecord, RecordMetadata
from pykaf.errors import (
    BufferFullError,
    JournalFullError,
    KafkaTimeoutError,
    ProducerClosedError,
)
from pykaf.gateway._access_log import count_records
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._settings import Custody, GatewaySettings

__all__ = ["Backend", "Outcome"]

log = logging.getLogger("pykaf.gateway")

# How long a list of the cluster's topics is trusted, and how often an unknown topic
# may make the gateway ask again (a client posting to a typo must not cost a Metadata
# request each time).
_TOPICS_FRESH = 10.0
_UNKNOWN_RECHECK = 1.0
# Bounds one topic lookup: past it Kafka counts as unreachable and the record is taken
# into custody unchecked (it is checked again by the producer when Kafka returns).
_LOOKUP_TIMEOUT = 2.0
# A full buffer or journal answers 429 after this long, rather than holding the request.
_MAX_BLOCK = 0.05
# Topics made known to the producers ahead of use (see ``_watch_topics``); a cluster with
# more gets the rest on first use, as any producer does.
_WARM_AT_MOST = 2000

Outcome = RecordMetadata | BaseException

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


class Backend:
    """Producers, admin and what the gateway knows about the cluster's topics."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._memory: AsyncProducer | None = None
        self._journal: AsyncProducer | None = None
        self._admin: AsyncAdmin | None = None
        self._topics: frozenset[str] = frozenset()
        self._topics_at = -1e9
        self._topics_tried_at = -1e9
        self._unknown_at: dict[str, float] = {}
        self._refresh: asyncio.Task[bool] | None = None
        self._watch: asyncio.Future[None] | None = None
        self._warm_topics: set[str] = set()
        self.failed_after_accept = 0  # records answered 2xx that later failed
        self.reachable: bool | None = None  # None: not asked yet
        self.started = False
        self.closed = False
        #: Called with (role, client) as each Kafka client opens (telemetry watches them).
        self.client_listeners: list[Callable[[str, Any], None]] = []

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal now (it replays what an earlier run left) and start looking
        at the cluster's topics; the memory producer opens on first use."""
        if self.started:
            return
        self.started = True
        if self.settings.journal_dir is not None:
            self.journal_producer()
        self._watch = asyncio.ensure_future(self._watch_topics())

    async def _watch_topics(self) -> None:
        # Every topic the cluster has is made known to the producers ahead of use: a
        # producer places a record by its topic's partitions, so a topic first posted
        # during an outage could not be journaled unless it was known before.
        while not self.closed:
            try:
                if await self._refresh_topics():
                    await self._warm(self._topics)
            except Exception:  # a bug of ours must not end the watch silently
                log.exception("the gateway's topic watch failed; it goes on")
            await asyncio.sleep(_TOPICS_FRESH)

    async def _warm(self, topics: frozenset[str]) -> None:
        cold = sorted(topics - self._warm_topics)[:_WARM_AT_MOST]
        producers = [p for p in (self._journal, self._memory) if p is not None]
        for topic in cold:
            for producer in producers:
                try:
                    await producer.partitions_for(topic)
                except Exception as exc:  # Kafka went away meanwhile: next round
                    log.debug("could not prepare topic %r: %s", topic, exc)
                    return
            self._warm_topics.add(topic)

    async def close(self, timeout: float | None = 30.0) -> int:
        """Flush and close: returns how many records were still unreported (in the
        journal they are kept for the next start)."""
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        left = 0
        for producer in (self._memory, self._journal):
            if producer is not None:
                left += await producer.close(timeout)
        if self._admin is not None:
            await self._admin.close()
        return left

    # -- producers ------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {"max_block": _MAX_BLOCK, **self.settings.producer_options}

    def memory_producer(self) -> AsyncProducer:
        if self._memory is None:
            self._check_open()
            self._memory = AsyncProducer(
                self.settings.bootstrap, on_error=self._failed, **self._options()
            )
            self._opened("producer-memory", self._memory)
        return self._memory

    def journal_producer(self) -> AsyncProducer:
        if self._journal is None:
            self._check_open()
            directory = self.settings.journal_dir
            if directory is None:
                raise HttpError(
                    400,
                    "custody 'journal' needs a gateway started with a journal directory"
                    " (--journal-dir)",
                )
            os.makedirs(directory, exist_ok=True)
            self._journal = AsyncProducer(
                self.settings.bootstrap,
                on_error=self._failed,
                custody="journal",
                journal_dir=directory,
                on_replayed_delivery=self._replayed,
                **self._options(),
            )
            self._opened("producer-journal", self._journal)
        return self._journal

    def producer(self, custody: Custody) -> AsyncProducer:
        return self.memory_producer() if custody == "memory" else self.journal_producer()

    def _opened(self, role: str, client: Any) -> None:
        for listener in self.client_listeners:
            listener(role, client)

    @property
    def clients(self) -> dict[str, Any]:
        """The Kafka clients open now, by role ("producer-memory", "producer-journal",
        "admin")."""
        found: dict[str, Any] = {
            "producer-memory": self._memory,
            "producer-journal": self._journal,
            "admin": self._admin,
        }
        return {role: client for role, client in found.items() if client is not None}

    def _check_open(self) -> None:
        if self.closed:
            raise HttpError(503, "the gateway is shutting down")

    def _failed(self, record: ProducerRecord, error: BaseException) -> None:
        # A record answered 202 that Kafka never took: counted, and logged (once per
        # kind at WARNING, the producer's own log has each one).
        self.failed_after_accept += 1
        if self.failed_after_accept == 1 or self.failed_after_accept % 1000 == 0:
            log.warning(
                "%d accepted record(s) failed after their answer (last: topic %r: %s)",
                self.failed_after_accept,
                record.topic,
                error,
            )

    def _replayed(self, metadata: RecordMetadata | None, error: BaseException | None) -> None:
        if error is not None:
            self._failed(ProducerRecord(topic=None if metadata is None else metadata.topic), error)

    # -- admin and topics -----------------------------------------------------------------

    def admin(self) -> AsyncAdmin:
        if self._admin is None:
            self._check_open()
            options = {k: v for k, v in self.settings.producer_options.items() if k in _ADMIN_KEYS}
            self._admin = AsyncAdmin(self.settings.bootstrap, **options)
            self._opened("admin", self._admin)
        return self._admin

    async def topic_exists(self, topic: str) -> bool | None:
        """True or False as the cluster says, None when Kafka could not be asked. A topic
        seen in the cluster's list counts as there until a later list says otherwise
        (a list older than ``_TOPICS_FRESH`` is refreshed in the background)."""
        now = time.monotonic()
        if topic in self._topics:
            if now - self._topics_at >= _TOPICS_FRESH and (
                self._refresh is None or self._refresh.done()
            ):
                self._refresh = asyncio.ensure_future(self._list_topics())
            return True
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
            if self.reachable is not False:
                log.warning("Kafka is not reachable from the gateway: %s", exc)
            self.reachable = False
            return False
        if self.reachable is False:
            log.warning("Kafka is reachable from the gateway again")
        self.reachable = True
        self._topics = frozenset(listing)
        self._topics_at = time.monotonic()
        return True

    async def check_topic(self, topic: str, custody: Custody) -> None:
        """404 for a topic the cluster says it does not have. When Kafka cannot be asked,
        a journal takes the record anyway (that is what it is for); memory custody too,
        within ``buffer_memory``, and the producer reports it if it never arrives."""
        exists = await self.topic_exists(topic)
        if exists is False:
            raise HttpError(404, f"topic {topic!r} does not exist in the cluster", error_code=40403)

    # -- records --------------------------------------------------------------------------

    async def accept(self, topic: str, records: Sequence[ProducerRecord], custody: Custody) -> None:
        """Take ``records`` into ``custody`` and return (no waiting for Kafka): in memory,
        appended to the journal, or appended and fsynced ("journal_sync")."""
        producer = self.producer(custody)
        try:
            if len(records) == 1:
                r = records[0]
                await producer.produce(
                    topic,
                    r.value,
                    r.key,
                    partition=r.partition,
                    headers=r.headers,
                    timestamp=r.timestamp,
                )
            else:
                await producer.produce_batch(topic, records)
            if custody == "journal_sync":
                await producer.fsync()
            count_records(len(records))
        except (BufferFullError, JournalFullError) as exc:
            raise self.full(exc) from None
        except ProducerClosedError:
            raise HttpError(503, "the gateway is shutting down") from None
        except KafkaTimeoutError:
            raise self.unplaceable(topic) from None

    def unplaceable(self, topic: str) -> HttpError:
        return HttpError(
            503,
            f"Kafka is unreachable and the gateway has not seen topic {topic!r} before (its"
            " partitions are unknown), so it cannot take the record into custody; retry"
            f" after {self.settings.retry_after} s",
            headers={"retry-after": str(self.settings.retry_after)},
        )

    def send(
        self, topic: str, record: ProducerRecord, custody: Custody
    ) -> asyncio.Future[RecordMetadata]:
        """One record; the future resolves when Kafka acknowledges it."""
        producer = self.producer(custody)
        try:
            sent = producer.send(
                topic,
                record.value,
                record.key,
                partition=record.partition,
                headers=record.headers,
                timestamp=record.timestamp,
            )
        except ProducerClosedError:
            raise HttpError(503, "the gateway is shutting down") from None
        count_records(1)
        return sent

    async def deliver(
        self, topic: str, records: Sequence[ProducerRecord], custody: Custody
    ) -> list[Outcome]:
        """Send ``records`` and wait (within ``ack_timeout``) for each one's outcome."""
        futures = [self.send(topic, r, custody) for r in records]
        if custody == "journal_sync":
            await self.producer(custody).fsync()
        done, _ = await asyncio.wait(futures, timeout=self.settings.ack_timeout)
        outcomes: list[Outcome] = []
        for future in futures:
            if future not in done:
                outcomes.append(
                    TimeoutError(
                        f"not acknowledged within {self.settings.ack_timeout:g} s"
                        " (it stays in custody and may still be delivered)"
                    )
                )
            elif future.exception() is not None:
                outcomes.append(future.exception())  # type: ignore[arg-type]
            else:
                outcomes.append(future.result())
        return outcomes

    def full(self, exc: BaseException) -> HttpError:
        return HttpError(
            429,
            f"the gateway's {'journal' if isinstance(exc, JournalFullError) else 'buffer'}"
            f" is full; retry after {self.settings.retry_after} s",
            headers={"retry-after": str(self.settings.retry_after)},
        )
