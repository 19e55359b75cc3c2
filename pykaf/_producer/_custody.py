"""A producer's custody level, chosen once when it is built (DESIGN.md "Custody").

"memory" builds the plain ``Accumulator``: nothing here runs per record. The journal
levels open the ``JournalStore`` (its lock refuses a second live producer on the same
directory with ``JournalLockedError``), start its group-commit thread, and build the
``JournalAccumulator``.

Records that wait in the journal only (recovered after a crash, or spilled past
``buffer_memory``, see ``_journaled``) are fed back by one feeder thread: it reads them
in serial order (``JournalStore.read_pending``, a chunk at a time) and puts each in the
partition it was journaled for, with its serial, waiting for memory as batches complete.
A journal larger than ``buffer_memory`` is fed as it drains; the feeder stops when it
has caught up and starts again with the next spill. Recovered records report to
``on_replayed_delivery(metadata, error)`` when given, else their failures go to
``on_error`` / the log: the callbacks of the crashed process are gone. The downtime
instruments (``_custody_events``) report what the feed and the outages do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from pykaf._errors import (
    ClientClosedError,
    DeliveryError,
    DeliveryTimeoutError,
    JournalError,
    KafkaTimeoutError,
    ProducerClosedError,
    PykafError,
)
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batches import TopicUnknownError, check_report
from pykaf._producer._custody_events import CustodyEventCallback, Downtime
from pykaf._producer._delivery import DeliveryCallback, LooseRecords, Reporter
from pykaf._producer._group_commit import GroupCommit
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._replay_identity import ReplayPlan, ReplayStats, ReplayTally, ReplayUnit
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import BlockWhenFull
from pykaf._producer.journal import JournalRecord, JournalStore
from pykaf._producer.journal._tail import ReadPosition
from pykaf._telemetry._bus import EventBus

__all__ = ["Custody", "build_accumulator", "open_custody"]

log = logging.getLogger("pykaf.producer.journal")

# Between two looks for a topic's metadata while brokers are away (the feeder's retry).
_NO_METADATA_PAUSE: Final = 0.05
# A failed feed pass is tried again after this, doubling up to the max (seconds).
# Plain records the feed puts back under one hold of the accumulator's lock: long enough
# that the lock and the index cost nothing per record, short beside a batch.
_FEED_RUN: Final = 256
_FEED_RETRY_FIRST: Final = 0.1
_FEED_RETRY_MAX: Final = 5.0


class Custody:
    """The journal of one producer: its store, its threads, what recovery found."""

    def __init__(
        self,
        settings: ProducerSettings,
        reporter: Reporter,
        on_replayed_delivery: DeliveryCallback | None,
        on_custody_event: CustodyEventCallback | None = None,
        events: EventBus | None = None,
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
        self.downtime = Downtime(
            str(store.directory), on_custody_event, events, settings.client.client_id
        )
        expiry = settings.journal_delivery_timeout
        self._expiry_ms = None if expiry is None else expiry * 1000
        self._accumulator: JournalAccumulator | None = None
        self._ensure_topic: Callable[[str], None] | None = None
        self._report: Callable[[LooseRecords, DeliveryError], None] | None = None
        self._feeder_lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._replay_plan: ReplayPlan | None = None
        self._read_position = ReadPosition()  # the feed's, across its passes
        self._feeder_running = False
        self._feed_wanted = False
        self._feed_stop = threading.Event()  # set by close(): a failing feed stops retrying
        self._feed_failing = False  # an error of the feed was logged, none got through since
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
        with self._plan_lock:
            if self._replay_plan is None:
                recovery = self.recovery
                tally = ReplayTally(self.store.directory, recovery.pending_records)
                self._replay_plan = ReplayPlan(
                    recovery.batch_identities, tally, recovery.next_serial
                )
            return self._replay_plan

    def replay_stats(self) -> ReplayStats:
        """What became of the recovered records so far (see ``ReplayStats``)."""
        return self.replay_plan.tally.snapshot()

    @property
    def pending(self) -> bool:
        """Are there records in the journal only (recovered or spilled) to feed?"""
        accumulator = self._accumulator
        if accumulator is None:
            return self.recovery.pending_records > 0
        return not accumulator.is_fed()

    def wait_fed(self, timeout: float) -> tuple[bool, float]:
        """Wait up to ``timeout`` until every record journaled so far is in memory (a
        flush covers it then); returns whether they are, and the time left."""
        accumulator = self._accumulator
        if accumulator is None:
            return not self.recovery.pending_records, timeout
        return accumulator.wait_fed(timeout)

    def unfed(self) -> int:
        """Records in the journal only, not handed to memory yet."""
        accumulator = self._accumulator
        return self.recovery.pending_records if accumulator is None else accumulator.unfed

    def kept(self) -> int:
        """After close: records left in the journal for the next producer."""
        accumulator = self._accumulator
        return 0 if accumulator is None else accumulator.unfed + accumulator.kept_at_close

    def close(self, timeout: float) -> None:
        """After the producer's last report: DONE entries written, synced, reclaimed."""
        self._feed_stop.set()
        try:
            self.commit.close(timeout)
        finally:
            self.store.close()
        kept = self.kept()
        if kept:
            log.warning(
                "journal %s: %d record(s) were not delivered before close(); they stay in"
                " the journal, and the next producer on it (or `pykaf journal replay`)"
                " sends them",
                self.store.directory,
                kept,
            )

    # -- the feeder -------------------------------------------------------------------------

    def attach(
        self,
        accumulator: Accumulator,
        *,
        ensure_topic: Callable[[str], None],
        report: Callable[[LooseRecords, DeliveryError], None],
        wake: Callable[[], object],
    ) -> None:
        """Connect the feeder to its producer, from the feeder's thread: ``ensure_topic``
        fetches a topic's metadata, ``report`` gives a failure to the reporter on the
        producer's loop, ``wake`` wakes that loop. Starts feeding what recovery found."""
        assert isinstance(accumulator, JournalAccumulator)
        self._accumulator = accumulator
        self._ensure_topic = ensure_topic
        self._report = report
        accumulator.feed_wake = wake
        accumulator.on_spill = self.start_feeder
        self.downtime.records_taken = lambda: accumulator.last_serial + 1
        if not accumulator.is_fed():
            self.start_feeder()

    def start_feeder(self) -> None:
        """Feed what waits in the journal (a thread, unless one runs: it will see it)."""
        with self._feeder_lock:
            self._feed_wanted = True
            if self._feeder_running:
                return
            self._feeder_running = True
        threading.Thread(target=self._feed, name="pykaf-journal-feed", daemon=True).start()

    def _feed(self) -> None:
        """The feeder thread: passes over the journal until it has caught up. An error
        (a read the disk failed, a bug) does not end it: it is logged once per episode
        and the pass starts again, after a pause that doubles up to ``_FEED_RETRY_MAX``,
        until one gets through or the producer closes. Before, the thread ended there,
        and the records still in the journal waited for another spill or a new producer
        (flush() for them in vain). A retried pass takes nothing twice: each record put
        back moved the feed's start past it (``JournalFeed._fed``)."""
        pause = _FEED_RETRY_FIRST
        try:
            while True:
                try:
                    self._feed_passes()
                    return
                except Exception as exc:
                    # An interrupted read may have looked past records it did not put back.
                    self._read_position = ReadPosition()
                    if not self._feed_failing:
                        pause = _FEED_RETRY_FIRST  # a new episode
                    self._feed_failed(exc)
                if self._feed_stop.wait(pause):
                    return  # closing: the rest stays in the journal (close() says so)
                pause = min(pause * 2, _FEED_RETRY_MAX)
        finally:
            with self._feeder_lock:
                self._feeder_running = False

    def _feed_passes(self) -> None:
        accumulator = self._accumulator
        assert accumulator is not None
        position = self._read_position  # where the last pass stopped
        while True:
            span = accumulator.feed_span()
            if span is None:
                self._feed_recovered()
                self.downtime.replay_finished(accumulator.unfed)
                with self._feeder_lock:
                    if not self._feed_wanted:
                        self._feeder_running = False
                        return
                    self._feed_wanted = False
                continue
            first, end = span
            self.downtime.replay_started(accumulator.unfed)
            run: list[JournalRecord] = []  # plain records, put back together
            for rec in self.store.read_pending(first, end, position):
                if self.replay_plan.is_plain(rec) and not self._expired(rec):
                    run.append(rec)
                    if len(run) < _FEED_RUN:
                        continue
                    if not self._put_run(accumulator, run):
                        return  # closed: the rest stays in the journal (close() says so)
                    continue
                if run and not self._put_run(accumulator, run):
                    return
                if not self._put_back(accumulator, rec):
                    return
                self.downtime.fed()
            if run and not self._put_run(accumulator, run):
                return
            accumulator.fed_through(end)
            self._feed_recovered()

    def _feed_failed(self, exc: Exception) -> None:
        if self._feed_failing:
            log.debug("journal %s: the feed failed again: %r", self.store.directory, exc)
            return
        self._feed_failing = True
        message = (
            "journal %s: the feed of journaled records failed: %s; it tries again, and the"
            " records wait in the journal meanwhile"
        )
        if isinstance(exc, JournalError):
            log.error(message, self.store.directory, exc)  # the disk: its cause says it
        else:
            # A bug, not a disk: with its traceback (a thread's on stderr is easy to miss).
            log.exception(message, self.store.directory, f"{type(exc).__name__}: {exc}")

    def _feed_recovered(self) -> None:
        if self._feed_failing:
            self._feed_failing = False
            log.info("journal %s: the feed of journaled records goes on", self.store.directory)

    def _expired(self, rec: JournalRecord) -> bool:
        # journal_delivery_timeout, for records that waited in the journal only: their
        # age is their timestamp's (the time produce() took them, unless one was given).
        expiry = self._expiry_ms
        return expiry is not None and time.time() * 1000 - rec.timestamp_ms > expiry

    def _expiry_error(self, unit: ReplayUnit) -> DeliveryTimeoutError:
        assert self._expiry_ms is not None
        rec = unit.records[0]
        # Sent by the crashed producer (an identity was journaled for it): its answer
        # never came back to anyone, so Kafka may hold it.
        sent = unit.identity is not None or unit.sent_before
        maybe = " (sent before a crash, unanswered: it may be in the log all the same)"
        return DeliveryTimeoutError(
            f"a journaled record to {rec.topic}-{rec.partition} was not acknowledged within"
            f" journal_delivery_timeout ({self._expiry_ms / 1000:g}s){maybe if sent else ''}",
            maybe_persisted=sent,
        )

    def _put_run(self, accumulator: JournalAccumulator, run: list[JournalRecord]) -> bool:
        """Put back a run of plain records together (``JournalFeed.replay_run``); any it
        stops at go one by one (``_put_back`` handles what is wrong with them). Empties
        ``run``; False once the producer is closed."""
        rest = run
        while rest:
            try:
                taken = self.replay_plan.put_run(accumulator, rest, self.on_replayed, block=True)
            except (ProducerClosedError, ClientClosedError):
                return False
            self.downtime.fed(taken)
            if taken < len(rest):  # the record it stopped at, then the rest together again
                if not self._put_back(accumulator, rest[taken]):
                    return False
                self.downtime.fed()
                taken += 1
            rest = rest[taken:]
        run.clear()
        return True

    def _put_back(self, accumulator: JournalAccumulator, rec: JournalRecord) -> bool:
        # Records of a batch sent before a crash go back together, as that batch.
        for unit in self.replay_plan.take(rec, accumulator):
            if self._expired(unit.records[0]):  # the oldest of the unit
                self._lost_unit(accumulator, unit, self._expiry_error(unit))
            elif not self._put_unit(accumulator, unit):
                return False
        return True

    def _put_unit(self, accumulator: JournalAccumulator, unit: ReplayUnit) -> bool:
        assert self._ensure_topic is not None
        while True:
            try:
                self.replay_plan.put(accumulator, unit, self.on_replayed, block=True)
                return True
            except (ProducerClosedError, ClientClosedError):
                return False
            except TopicUnknownError:
                try:
                    self._ensure_topic(unit.records[0].topic)
                except KafkaTimeoutError:
                    time.sleep(_NO_METADATA_PAUSE)  # brokers away: the records wait
                except (ProducerClosedError, ClientClosedError):
                    return False
                except PykafError as exc:
                    self._lost_unit(accumulator, unit, exc)
                    return True
            except KafkaTimeoutError:
                time.sleep(_NO_METADATA_PAUSE)  # no metadata yet: wait, never fail
            except (ValueError, PykafError) as exc:
                self._lost_unit(accumulator, unit, exc)
                return True

    def _lost_unit(
        self, accumulator: JournalAccumulator, unit: ReplayUnit, error: Exception
    ) -> None:
        for rec in unit.records:
            self._lost(accumulator, rec, error)
        self.replay_plan.lost(unit)

    def _lost(self, accumulator: JournalAccumulator, rec: JournalRecord, error: Exception) -> None:
        """A record that cannot be sent (its topic or partition is gone): a DONE entry,
        then its report (a recovered record's goes to ``on_replayed_delivery``)."""
        report = accumulator.give_up(rec)
        if rec.serial < accumulator.opened_serial:
            report = self.on_replayed
        failure = (
            error
            if isinstance(error, DeliveryError)
            else DeliveryError(
                f"a journaled record to {rec.topic}-{rec.partition} cannot be sent: {error}",
                cause=error,
            )
        )
        assert self._report is not None
        self._report(
            LooseRecords(
                rec.topic,
                rec.partition,
                [(rec.key, rec.value, rec.headers or None, rec.timestamp_ms)],
                None if report is None else [(0, report)],
                rec.timestamp_ms,
            ),
            failure,
        )


def open_custody(
    settings: ProducerSettings,
    reporter: Reporter,
    on_replayed: DeliveryCallback | None,
    on_custody_event: CustodyEventCallback | None = None,
    events: EventBus | None = None,
) -> Custody | None:
    """The journal for the settings' custody level, opened; None for "memory".
    ``events``: the client's bus, where the downtime and replay events go."""
    if settings.custody == "memory":
        return None
    return Custody(settings, reporter, on_replayed, on_custody_event, events)


def build_accumulator(
    settings: ProducerSettings,
    custody: Custody | None,
    when_full: BlockWhenFull,
    *,
    can_block: Callable[[], bool],
    sync_in_caller: bool,
    awaits_room: bool = False,
) -> Accumulator:
    """The accumulator for the custody level: the plain one for "memory"."""
    if custody is None:
        return Accumulator(settings, when_full=when_full)
    return JournalAccumulator(
        settings,
        custody.store,
        custody.commit,
        sync_each=custody.sync_each and sync_in_caller,
        can_block=can_block,
        awaits_room=awaits_room,
        recovered=custody.recovery.pending_records,
    )
