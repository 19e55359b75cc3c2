"""The journal's downtime instruments, as events (ekaf's: downtime began, records saved
while down, replay started and finished, time down).

A journaled producer keeps taking records while no broker answers; a user running it
wants to see that happen, not only read it back in the log. ``on_custody_event(event)``
(a producer argument) receives one ``CustodyEvent`` per change:

- ``downtime_began``: no broker of the cluster can be reached (the client's outage
  episode); records go on into the journal;
- ``downtime_ended``: a broker answers again; ``seconds`` down, ``records`` journaled
  meanwhile (saved while down);
- ``replay_started``: records waiting in the journal only (recovered after a crash, or
  past ``buffer_memory``) start going back to memory; ``records`` waiting then;
- ``replay_finished``: every one of them is in memory (sent or being sent); ``records``
  fed in this replay, ``seconds`` it took.

The callback runs on the producer's threads (its loop, or the journal's feeder): keep it
short; an exception in it is logged and ignored. Downtime also logs one WARNING when it
begins and one INFO when it ends, with the counts.

The same changes go to the producer's event stream (``pykaf.events``) as
``DowntimeBegan``, ``DowntimeEnded(seconds, records_saved)``, ``ReplayStarted(records)``
and ``ReplayFinished(records, seconds)``, when someone listens. A producer with custody
"memory" has a ``Downtime`` too, with no journal: it only emits the two downtime events
(``records_saved``: records produced while down, held in memory); the client's outage
log already says the outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import DowntimeBegan, DowntimeEnded, ReplayFinished, ReplayStarted

__all__ = ["CustodyEvent", "CustodyEventCallback", "Downtime"]

log = logging.getLogger("pykaf.producer.journal")

CustodyEventKind: TypeAlias = Literal[
    "downtime_began", "downtime_ended", "replay_started", "replay_finished"
]

# A replay this large is worth a log line even without a downtime (a slow cluster).
_LOGGED_REPLAY: Final = 10_000


@dataclass(frozen=True, slots=True)
class CustodyEvent:
    """One change of a journaled producer's custody (see ``pykaf._producer._custody_events``)."""

    kind: CustodyEventKind
    #: Records saved while down (downtime_ended), waiting (replay_started) or fed
    #: (replay_finished); 0 for downtime_began.
    records: int
    #: Time down (downtime_ended) or replaying (replay_finished); 0.0 otherwise.
    seconds: float
    #: The journal directory.
    journal_dir: str


CustodyEventCallback: TypeAlias = Callable[[CustodyEvent], object]


class Downtime:
    """Counts downtime and replay episodes of one producer; emits ``CustodyEvent``s (with
    a journal) and the typed events (to ``events``, when someone listens)."""

    def __init__(
        self,
        directory: str | None,
        callback: CustodyEventCallback | None,
        events: EventBus | None = None,
        client_id: str | None = None,
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"on_custody_event must be a function (event), not {callback!r}")
        self.directory = directory
        self._callback = callback
        self._events = events
        self._client_id = client_id
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._taken_at_down = 0
        self._replay_since: float | None = None
        self._replayed = 0
        self.records_taken: Callable[[], int] = lambda: 0  # the producer's journal serial

    def _emit(self, kind: CustodyEventKind, records: int, seconds: float) -> None:
        bus = self._events
        if bus is not None and bus.active:
            bus.emit(self._typed(kind, records, seconds))
        callback = self._callback
        if callback is None or self.directory is None:
            return
        try:
            callback(CustodyEvent(kind, records, seconds, self.directory))
        except Exception:
            log.exception("on_custody_event raised")

    def _typed(
        self, kind: CustodyEventKind, records: int, seconds: float
    ) -> DowntimeBegan | DowntimeEnded | ReplayStarted | ReplayFinished:
        at, client_id = time.time(), self._client_id
        if kind == "downtime_began":
            return DowntimeBegan(time=at, client_id=client_id)
        if kind == "downtime_ended":
            return DowntimeEnded(
                time=at, client_id=client_id, seconds=seconds, records_saved=records
            )
        if kind == "replay_started":
            return ReplayStarted(time=at, client_id=client_id, records=records)
        return ReplayFinished(time=at, client_id=client_id, records=records, seconds=seconds)

    # -- downtime (the client's cluster outage episodes, on the producer's loop) -------------

    def cluster_changed(self, down: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if down == (self._down_since is not None):
                return
            if down:
                self._down_since = now
                self._taken_at_down = self.records_taken()
                saved = seconds = 0.0
            else:
                assert self._down_since is not None
                seconds = now - self._down_since
                saved = self.records_taken() - self._taken_at_down
                self._down_since = None
        if self.directory is not None:  # custody "memory": the client's outage log says it
            self._log_downtime(down, seconds, int(saved))
        if down:
            self._emit("downtime_began", 0, 0.0)
        else:
            self._emit("downtime_ended", int(saved), seconds)

    def _log_downtime(self, down: bool, seconds: float, saved: int) -> None:
        if down:
            log.warning(
                "journal %s: no broker can be reached; records go on into the journal and"
                " are sent when a broker answers",
                self.directory,
            )
        else:
            log.info(
                "journal %s: brokers reachable again after %.1f s down; %d record(s) were"
                " journaled meanwhile",
                self.directory,
                seconds,
                saved,
            )

    # -- replay (the feeder's thread) ---------------------------------------------------------

    def replay_started(self, waiting: int) -> None:
        if self._replay_since is not None:
            return
        self._replay_since = time.monotonic()
        self._replayed = 0
        if waiting >= _LOGGED_REPLAY:
            log.info("journal %s: feeding %d journaled record(s) back", self.directory, waiting)
        self._emit("replay_started", waiting, 0.0)

    def fed(self, count: int = 1) -> None:
        self._replayed += count

    def replay_finished(self, waiting: int) -> None:
        since = self._replay_since
        if since is None:
            return
        self._replay_since = None
        seconds = time.monotonic() - since
        if self._replayed >= _LOGGED_REPLAY:
            log.info(
                "journal %s: %d journaled record(s) fed back in %.1f s",
                self.directory,
                self._replayed,
                seconds,
            )
        self._emit("replay_finished", self._replayed, seconds)
