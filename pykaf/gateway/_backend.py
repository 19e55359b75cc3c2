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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pykaf import AsyncProducer, ProducerRecord, Receipt, RecordMetadata
from pykaf.errors import (
    BufferFullError,
    JournalFullError,
    JournalKeptError,
    KafkaTimeoutError,
    ProducerClosedError,
)
from pykaf.gateway import _cluster_view
from pykaf.gateway._access_log import count_records
from pykaf.gateway._asgi import HttpError
from pykaf.gateway._body import LineBatch
from pykaf.gateway._cluster_view import ClusterView
from pykaf.gateway._outcomes import http_error_for, without_frames
from pykaf.gateway._settings import Custody, GatewaySettings

__all__ = ["Backend", "Outcome"]

log = logging.getLogger("pykaf.gateway")

# A full buffer or journal answers 429 after this long, rather than holding the request.
_MAX_BLOCK = 0.05
# Topics made known to the producers ahead of use (see ``_watch_topics``); a cluster with
# more gets the rest on first use, as any producer does.
_WARM_AT_MOST = 2000
# A topic's first record waits this long (at most) for its metadata; tries are bounded.
_PREPARE_TIMEOUT = 5.0
_PREPARE_TRIES = 200

Outcome = RecordMetadata | BaseException


class Backend(ClusterView):
    """Producers per custody, on top of what the gateway knows of the cluster
    (``ClusterView``: the admin client, the topics, the cluster's id, reachability)."""

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self._memory: AsyncProducer | None = None
        self._journal: AsyncProducer | None = None
        self._watch: asyncio.Future[None] | None = None
        self._warm_topics: set[str] = set()
        # Per producer (by id): the topics it is known to have metadata for.
        self._known: defaultdict[int, set[str]] = defaultdict(set)
        self.failed_after_accept = 0  # records answered 2xx that later failed
        self.kept_at_close = 0  # records the journal keeps for the next start
        self.started = False

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal now (it replays what an earlier run left) and start looking
        at the cluster's topics; the memory producer opens on first use."""
        if self.started:
            return
        if self.settings.journal_dir is not None:
            self.journal_producer()  # may raise (locked, damaged): then not started
        self.started = True
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
            await asyncio.sleep(_cluster_view.TOPICS_FRESH)

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
                self._known[id(producer)].add(topic)
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

    def _failed(self, record: ProducerRecord, error: BaseException) -> None:
        # A record answered 202 that Kafka never took: counted, and logged (once per
        # kind at WARNING, the producer's own log has each one). One the journal keeps
        # for the next start has not failed: it is sent then.
        if isinstance(error, JournalKeptError):
            self.kept_at_close += 1
            return
        self.failed_after_accept += 1
        if self.failed_after_accept == 1 or self.failed_after_accept % 1000 == 0:
            log.warning(
                "%d accepted record(s) failed after their answer (last: topic %r: %s)",
                self.failed_after_accept,
                record.topic,
                error,
            )

    def orphan(self, topic: str, futures: Iterable[asyncio.Future[RecordMetadata]]) -> None:
        """Records whose answer is given without their outcome (504: not acknowledged in
        time; 503: a failed fsync) or that no one waits for any more (the client gone):
        a failure that comes later is counted and logged like any record failed after
        its answer (``_failed``), not left as an exception no one retrieves."""

        def settled(future: asyncio.Future[RecordMetadata]) -> None:
            if not future.cancelled() and future.exception() is not None:
                self._failed(ProducerRecord(topic=topic), future.exception())  # type: ignore[arg-type]

        for future in futures:
            future.add_done_callback(settled)

    def orphan_receipt(self, topic: str, receipt: Receipt) -> None:
        """``orphan`` for the records of a receipt: the runs told from now on that
        failed are counted (a run told already was answered as it was)."""
        answered = len(receipt.runs)

        def settled(done: asyncio.Future[None]) -> None:
            for run in receipt.runs[answered:]:
                if run[5] is not None:
                    for _ in range(run[1]):
                        self._failed(ProducerRecord(topic=topic), run[5])

        receipt.done.add_done_callback(settled)

    def _replayed(self, metadata: RecordMetadata | None, error: BaseException | None) -> None:
        if error is not None:
            self._failed(ProducerRecord(topic=None if metadata is None else metadata.topic), error)

    async def check_topic(self, topic: str, custody: Custody) -> None:
        """404 for a topic the cluster says it does not have. When Kafka cannot be asked,
        a journal takes the record anyway (that is what it is for); memory custody too,
        within ``buffer_memory``, and the producer reports it if it never arrives."""
        exists = await self.topic_exists(topic)
        if exists is False:
            raise HttpError(404, f"topic {topic!r} does not exist in the cluster", error_code=40403)

    # -- records --------------------------------------------------------------------------

    async def prepare(
        self, topic: str, custody: Custody, producer: AsyncProducer | None = None
    ) -> None:
        """Make ``topic`` known to the custody's producer before its first record. A
        producer here waits only ``max_block`` (50 ms: a full buffer must answer 429 at
        once) for a topic's metadata, which a busy Kafka can miss on a fresh producer;
        so the first record of a topic waits here, up to ``_PREPARE_TIMEOUT`` while
        Kafka answers, and fails at once with 503 when Kafka is known to be away."""
        if producer is None:
            producer = self.producer(custody)
        known = self._known[id(producer)]
        if topic in known:
            return
        deadline = time.monotonic() + min(_PREPARE_TIMEOUT, self.settings.ack_timeout)
        for _ in range(_PREPARE_TRIES):
            try:
                await producer.partitions_for(topic)
            except KafkaTimeoutError:
                if self.reachable is False or time.monotonic() >= deadline:
                    break
                continue
            except Exception as exc:
                raise http_error_for(exc, retry_after=self.settings.retry_after) from None
            if len(known) < _WARM_AT_MOST * 2:  # bounded; a topic past it asks each time
                known.add(topic)
            return
        raise self.unplaceable(topic)

    async def accept(
        self, topic: str, records: Sequence[ProducerRecord] | LineBatch, custody: Custody
    ) -> None:
        """Take ``records`` into ``custody`` and return (no waiting for Kafka): in memory,
        appended to the journal, or appended and fsynced ("journal_sync"). A record
        for a partition the topic lacks refuses the whole request (400) before any is
        taken: a client that sends it again must not duplicate the rest."""
        producer = self.producer(custody)
        if topic not in self._known[id(producer)]:  # known: no await (the hot path)
            await self.prepare(topic, custody, producer)
        if isinstance(records, LineBatch):
            lines: LineBatch | None = records
            # One partition for all the lines: checked once (none named: nothing to check).
            bad = []
            if records.partition is not None:
                named = [ProducerRecord(partition=records.partition)]
                bad = await self._bad_partitions(producer, topic, named)
            records = []
        else:
            lines = None
            bad = await self._bad_partitions(producer, topic, records)
        if bad:
            index, error = bad[0]
            where = f"record {index}: " if len(records) > 1 or (lines and not lines.single) else ""
            raise HttpError(400, f"{where}{error}; nothing was taken", error_code=40002)
        try:
            if lines is not None and lines.single:
                await producer.produce(
                    topic,
                    lines.values[0],
                    lines.key,
                    partition=lines.partition,
                    headers=lines.headers,
                    timestamp=lines.timestamp,
                )
            elif lines is not None:
                await producer.produce_batch(topic, lines.items(), partition=lines.partition)
            elif len(records) == 1:
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
            count_records(len(lines) if lines is not None else len(records))
        except (BufferFullError, JournalFullError) as exc:
            raise self.full(exc) from None
        except ProducerClosedError:
            raise HttpError(503, "the gateway is shutting down") from None
        except KafkaTimeoutError:
            raise self.unplaceable(topic) from None
        except Exception as exc:  # anything else the producer refuses, answered as itself
            raise http_error_for(exc, retry_after=self.settings.retry_after) from None

    @staticmethod
    async def _bad_partitions(
        producer: AsyncProducer, topic: str, records: Sequence[ProducerRecord]
    ) -> list[tuple[int, Exception]]:
        """The records naming a partition ``topic`` lacks, with what is wrong."""
        if all(r.partition is None for r in records):
            return []  # the hot path: the producer's partitioner chooses
        count = len(await producer.partitions_for(topic))
        return [
            (
                i,
                ValueError(
                    f"partition {r.partition} is not in 0..{count - 1} (topic {topic!r} has"
                    f" {count} partitions)"
                ),
            )
            for i, r in enumerate(records)
            if r.partition is not None and not 0 <= r.partition < count
        ]

    def unplaceable(self, topic: str) -> HttpError:
        return HttpError(
            503,
            f"Kafka is unreachable and the gateway has not seen topic {topic!r} before (its"
            " partitions are unknown), so it cannot take the record into custody; retry"
            f" after {self.settings.retry_after} s",
            headers={"retry-after": str(self.settings.retry_after)},
        )

    def send_values(
        self,
        topic: str,
        values: list[bytes],
        custody: Custody,
        receipt: Receipt,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> int:
        """``AsyncProducer.produce_values``: as many of ``values`` as the producer
        takes at once (plain bytes, no key, each with ``headers``), their outcomes told
        to ``receipt``; returns how many (the caller sends the rest with ``send_many``)."""
        producer = self.producer(custody)
        try:
            taken = producer.produce_values(topic, values, receipt, headers=headers)
        except ProducerClosedError:
            return 0  # send_many answers each record 503
        count_records(taken)
        return taken

    def send_many(
        self, topic: str, records: Sequence[Sequence[Any]], custody: Custody
    ) -> list[asyncio.Future[RecordMetadata] | Exception]:
        """Records given as ``(value, key, partition, headers, timestamp, ...)`` (what
        follows is not looked at: a v3 ``Parsed`` goes as it is), each sent
        with its own future (resolved when Kafka acknowledges it), in order; a record
        the producer refuses at once has its exception in its place."""
        producer = self.producer(custody)
        send = producer.send
        sent: list[asyncio.Future[RecordMetadata] | Exception] = []
        refused = 0
        for record in records:
            try:
                future = send(
                    topic,
                    record[0],
                    record[1],
                    partition=record[2],
                    headers=record[3],
                    timestamp=record[4],
                )
                sent.append(future)
            except ProducerClosedError:
                sent.append(HttpError(503, "the gateway is shutting down"))
                refused += 1
            except Exception as exc:  # a bad record, or one refused at once
                sent.append(without_frames(exc))  # its frame is this one, holding ``sent``
                refused += 1
        count_records(len(records) - refused)
        return sent

    async def deliver(
        self, topic: str, records: Sequence[ProducerRecord] | LineBatch, custody: Custody
    ) -> list[Outcome]:
        """Send ``records`` and wait (within ``ack_timeout``) for each one's outcome."""
        if isinstance(records, LineBatch):
            records = records.records()  # a future each: the records themselves
        if not records:
            return []  # asyncio.wait() refuses an empty set
        await self.prepare(topic, custody)
        bad = dict(await self._bad_partitions(self.producer(custody), topic, records))
        good = [
            (r.value, r.key, r.partition, r.headers, r.timestamp)
            for i, r in enumerate(records)
            if i not in bad
        ]
        # A record the producer refuses at once (a full buffer, a closing gateway) is that
        # record's outcome, not the whole request's failure.
        sent = iter(self.send_many(topic, good, custody))
        futures = [
            _refused(bad[index]) if index in bad else _as_future(next(sent))
            for index in range(len(records))
        ]
        if custody == "journal_sync":
            try:
                await self.producer(custody).fsync()
            except Exception as exc:  # the journal failed: the request is answered as such
                self.orphan(topic, futures)
                raise http_error_for(exc, retry_after=self.settings.retry_after) from None
        done, late = await asyncio.wait(futures, timeout=self.settings.ack_timeout)
        self.orphan(topic, late)  # answered 504: still in custody, their end still counts
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
        what = "journal" if isinstance(exc, JournalFullError) else "buffer"
        taken = getattr(exc, "taken", None) or 0
        part = (
            f"; the first {taken} record(s) of the batch were taken: send the rest (from"
            f" record {taken}) again"
            if taken
            else ""
        )
        return HttpError(
            429,
            f"the gateway's {what} is full{part}; retry after {self.settings.retry_after} s",
            headers={"retry-after": str(self.settings.retry_after)},
            extra={"accepted": taken},
        )


def _as_future(
    sent: asyncio.Future[RecordMetadata] | Exception,
) -> asyncio.Future[RecordMetadata]:
    return _refused(sent) if isinstance(sent, Exception) else sent


def _refused(exc: BaseException) -> asyncio.Future[RecordMetadata]:
    refused: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
    refused.set_exception(exc)
    return refused
