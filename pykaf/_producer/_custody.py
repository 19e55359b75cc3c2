"""A producer's custody level, chosen once when it is built (DESIGN.md "Custody").

"memory" builds the plain ``Accumulator``: nothing here runs per record. The journal
levels open the ``JournalStore`` (its lock refuses a second live producer on the same
directory with ``JournalLockedError``), start its group-commit thread, build the
``JournalAccumulator`` and feed back what recovery found pending, before any new record
(new appends wait behind the feed: order per partition holds across the crash).

The feed reads the journal segment by segment (``JournalStore.iter_pending``) and puts
each record back in the partition it was journaled for, with its serial, waiting for
memory as batches complete: a journal larger than ``buffer_memory`` is fed as it drains.
Replayed records report to ``on_replayed_delivery(metadata, error)`` when given, else
their failures go to ``on_error`` / the log: the callbacks of the crashed process are gone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

from pykaf._errors import (
    BufferFullError,
    JournalError,
    KafkaTimeoutError,
    ProducerClosedError,
    PykafError,
)
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batches import TopicUnknownError, check_report
from pykaf._producer._delivery import DeliveryCallback, ProducerRecord, Reporter
from pykaf._producer._engine import ProducerEngine
from pykaf._producer._group_commit import GroupCommit
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._replay_identity import ReplayPlan, ReplayStats, ReplayTally, ReplayUnit
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import BlockWhenFull
from pykaf._producer.journal import JournalRecord, JournalStore

__all__ = ["Custody", "build_accumulator", "open_custody", "start_feed_thread"]

log = logging.getLogger("pykaf.producer.journal")

_CHUNK: Final = 512  # recovered records read per executor call (async feed)
_PLAN_LOCK: Final = threading.Lock()  # makes ``Custody.replay`` once


class Custody:
    """The journal of one producer: its store, its thread, what recovery found."""

    def __init__(
        self,
        settings: ProducerSettings,
        reporter: Reporter,
        on_replayed_delivery: DeliveryCallback | None,
    ) -> None:
        if on_replayed_delivery is not None:
            check_report(on_replayed_delivery)
        assert settings.journal_dir is not None  # the settings refuse a journal without it
        store = JournalStore(
            settings.journal_dir,
            max_bytes=settings.journal_max_bytes,
            segment_bytes=settings.journal_segment_bytes,
        )
        self.recovery = store.open()
        self.store = store
        self.commit = GroupCommit(store, settings.journal_fsync_interval)
        self.sync_each = settings.custody == "journal_sync"
        self._reporter = reporter
        self.on_replayed = on_replayed_delivery
        # The feed's progress: flush() and close() wait for it, so a replayed record is
        # covered by the first flush like any record produced before it.
        self.fed = threading.Event()
        self.fed_count = 0
        if not self.recovery.pending_records:
            self.fed.set()
        if self.recovery.pending_records:
            log.warning(
                "journal %s: %d record(s) of an earlier producer were not acknowledged;"
                " sending them again first (at-least-once)",
                store.directory,
                self.recovery.pending_records,
            )

    def recovered(self) -> dict[tuple[str, int], int]:
        """What is being replayed: records per (topic, partition)."""
        return dict(self.recovery.pending_by_partition)

    @property
    def replay_plan(self) -> ReplayPlan:
        """How the recovered records go back: as the batches they were sent in, where
        their identities were journaled (``_replay_identity``). Made at first use, by
        the feed or by ``replay_stats`` (other threads), once."""
        plan: ReplayPlan | None = getattr(self, "_replay_plan", None)
        if plan is None:
            with _PLAN_LOCK:
                plan = getattr(self, "_replay_plan", None)
                if plan is None:
                    tally = ReplayTally(self.store.directory, self.recovery.pending_records)
                    recovery = self.recovery
                    plan = ReplayPlan(recovery.batch_identities, tally, recovery.next_serial)
                    self._replay_plan = plan
        return plan

    def replay_stats(self) -> ReplayStats:
        """What became of the recovered records so far (see ``ReplayStats``)."""
        return self.replay_plan.tally.snapshot()

    @property
    def pending(self) -> bool:
        return self.recovery.pending_records > 0

    def wait_fed(self, timeout: float) -> float:
        """Wait up to ``timeout`` for the feed of recovered records to hand them all
        over; returns the time left of ``timeout``."""
        if self.fed.is_set():
            return timeout
        started = time.monotonic()
        self.fed.wait(timeout)
        return max(0.0, timeout - (time.monotonic() - started))

    def unfed(self) -> int:
        """Recovered records not handed to the accumulator yet."""
        return 0 if self.fed.is_set() else max(0, self.recovery.pending_records - self.fed_count)

    def close(self, timeout: float) -> None:
        """After the producer's last report: DONE entries written, synced, reclaimed."""
        try:
            self.commit.close(timeout)
        finally:
            self.store.close()

    # -- records that cannot be put back ----------------------------------------------------

    def _lost(self, accumulator: JournalAccumulator, rec: JournalRecord, error: Exception) -> None:
        """A recovered record that cannot be sent (its topic or partition is gone): its
        report, then a DONE entry."""
        accumulator.give_up(rec)
        if self.on_replayed is not None:
            try:
                self.on_replayed(None, error)  # type: ignore[arg-type]
            except Exception:
                log.exception("on_replayed_delivery raised")
            return
        on_error = self._reporter.on_error
        if on_error is None:
            log.error(
                "a recovered record to %s-%d was not delivered: %s", rec.topic, rec.partition, error
            )
            return
        record = ProducerRecord(
            topic=rec.topic,
            partition=rec.partition,
            key=rec.key,
            value=rec.value,
            headers=rec.headers or None,
            timestamp=rec.timestamp_ms,
        )
        try:
            on_error(record, error)
        except Exception:
            log.exception("on_error raised for a record to %s", rec.topic)

    # -- the feed ---------------------------------------------------------------------------

    def feed_blocking(self, accumulator: JournalAccumulator) -> None:
        """The blocking producer's feeder thread: every recovered record, in order."""
        try:
            for rec in self.store.iter_pending():
                if not self._put_back_blocking(accumulator, rec):
                    return
                self.fed_count += 1
        except JournalError as exc:
            log.error("journal %s: the replay stopped: %s", self.store.directory, exc)
        finally:
            accumulator.end_replay()
            self.fed.set()

    def _put_back_blocking(self, accumulator: JournalAccumulator, rec: JournalRecord) -> bool:
        # Records of a batch sent before the crash go back together, as that batch.
        for unit in self.replay_plan.take(rec, accumulator):
            if not self._put_unit_blocking(accumulator, unit):
                return False
        return True

    def _put_unit_blocking(self, accumulator: JournalAccumulator, unit: ReplayUnit) -> bool:
        while True:
            try:
                self.replay_plan.put(accumulator, unit, self.on_replayed, block=True)
                return True
            except ProducerClosedError:
                return False  # closed: the rest stays in the journal for the next producer
            except KafkaTimeoutError:
                continue  # no metadata yet (brokers away): the records wait, never fail
            except (ValueError, PykafError) as exc:
                self._lost_unit(accumulator, unit, exc)
                return True

    async def feed_async(self, accumulator: JournalAccumulator, engine: ProducerEngine) -> None:
        """The asyncio producer's feed, run first in its backlog. The journal is read in
        chunks in an executor: file reads never block the loop."""
        loop = engine.loop
        records = self.store.iter_pending()
        try:
            while True:
                chunk = await loop.run_in_executor(None, _next_chunk, records)
                if not chunk:
                    return
                for rec in chunk:
                    if not await self._put_back_async(accumulator, engine, rec):
                        return
        except JournalError as exc:
            log.error("journal %s: the replay stopped: %s", self.store.directory, exc)
        finally:
            accumulator.end_replay()

    async def _put_back_async(
        self, accumulator: JournalAccumulator, engine: ProducerEngine, rec: JournalRecord
    ) -> bool:
        for unit in self.replay_plan.take(rec, accumulator):
            if not await self._put_unit_async(accumulator, engine, unit):
                return False
        return True

    async def _put_unit_async(
        self, accumulator: JournalAccumulator, engine: ProducerEngine, unit: ReplayUnit
    ) -> bool:
        while True:
            try:
                self.replay_plan.put(accumulator, unit, self.on_replayed, block=False)
                return True
            except TopicUnknownError:
                try:
                    await engine.ensure_topic(unit.records[0].topic, engine.settings.max_block)
                except KafkaTimeoutError:
                    continue
                except ProducerClosedError:
                    return False
                except PykafError as exc:
                    self._lost_unit(accumulator, unit, exc)
                    return True
            except BufferFullError:
                await engine.wait_for_space(1.0)
            except ProducerClosedError:
                return False
            except (ValueError, PykafError) as exc:
                self._lost_unit(accumulator, unit, exc)
                return True

    def _lost_unit(
        self, accumulator: JournalAccumulator, unit: ReplayUnit, error: Exception
    ) -> None:
        for rec in unit.records:
            self._lost(accumulator, rec, error)
        self.replay_plan.lost(unit)


def _next_chunk(records: Iterator[JournalRecord]) -> list[JournalRecord]:
    return list(itertools.islice(records, _CHUNK))


def open_custody(
    settings: ProducerSettings, reporter: Reporter, on_replayed: DeliveryCallback | None
) -> Custody | None:
    """The journal for the settings' custody level, opened; None for "memory"."""
    if settings.custody == "memory":
        return None
    return Custody(settings, reporter, on_replayed)


def build_accumulator(
    settings: ProducerSettings,
    custody: Custody | None,
    when_full: BlockWhenFull,
    *,
    can_block: Callable[[], bool],
    sync_in_caller: bool,
) -> Accumulator:
    """The accumulator for the custody level: the plain one for "memory"."""
    if custody is None:
        return Accumulator(settings, when_full=when_full)
    return JournalAccumulator(
        settings,
        custody.store,
        custody.commit,
        sync_each=custody.sync_each and sync_in_caller,
        blocking=when_full,
        can_block=can_block,
    )


def start_feed_thread(custody: Custody, accumulator: Accumulator) -> None:
    """The blocking producer: feed what recovery found from a thread of its own."""
    assert isinstance(accumulator, JournalAccumulator)
    accumulator.begin_replay()
    threading.Thread(
        target=custody.feed_blocking, args=(accumulator,), name="pykaf-replay", daemon=True
    ).start()
