"""The journal's own thread: group-commit fsyncs, DONE entries, reclaim.

``JournalStore.sync`` blocks for an fsync, so it never runs on an event loop: one daemon
thread per journaled producer runs it. The thread sleeps while the journal has nothing
new. Appending threads read ``idle`` (a plain attribute, no lock) after their append and
``kick`` only an idle thread; the thread sets ``idle`` before its last look for work, so
an append it misses always sees it idle and kicks it (see ``_next_work``).

Once woken it waits ``interval`` (so one fsync covers everything appended meanwhile: the
"journal" level's bound on unsynced records), unless an asyncio caller waits for the
sync ("journal_sync" on an event loop), then writes the queued DONE entries, syncs,
resolves the waiters the sync covered, and reclaims acknowledged segments now and then.
It also starts and stops the journal's second thread (``AheadWriter``, ``_write_ahead``),
which writes the newest segment's next pages ahead of the appends, with zeros, so that
the appending threads store into pages the kernel has prepared already: on its own, not
after the fsync here, which blocks for as long as the disk takes.
A failed sync stops the store (``JournalSyncError``); the waiters get the error and later
appends raise ``JournalFailedError`` from the store itself. Anything else a round raises
is a bug: logged at ERROR with its traceback, once per episode, and the round's work is
tried again shortly; the thread does not end with it (``_unexpected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Final

from pykaf._errors import JournalError
from pykaf._producer._write_ahead import AheadWriter
from pykaf._producer.journal import Done, JournalStore

__all__ = ["GroupCommit"]

log = logging.getLogger("pykaf.producer.journal")

_RECLAIM_EVERY: Final = 0.5  # seconds between reclaims (each one syncs and scans)
_RETRY_AFTER: Final = 0.05  # seconds before a round that raised unexpectedly is tried again


class _StoreClosed(Exception):
    """The store was closed while the thread still ran: nothing more to do."""


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class GroupCommit:
    """The syncing thread of one journal store (see the module doc)."""

    def __init__(self, store: JournalStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.idle = False  # read without the lock by appenders (see the module doc)
        self.failure: JournalError | None = None
        self._trouble = False  # an unexpected error was logged, and no round succeeded since
        self._cond = threading.Condition()
        self._dones: list[Done] = []
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._stopping = False
        self._reclaim_at = 0.0
        self._ahead = AheadWriter(store)
        self._thread = threading.Thread(target=self._run, name="pykaf-journal", daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------

    def kick(self) -> None:
        with self._cond:
            self._cond.notify()

    def add_dones(self, dones: list[Done]) -> None:
        """Records got their final report: write DONE entries for them (soon)."""
        with self._cond:
            self._dones.extend(dones)
            if self.idle:
                self._cond.notify()

    @property
    def dones_waiting(self) -> bool:
        """DONE entries are queued (read without the lock: the reporting thread asks
        about the entries it queued itself)."""
        return bool(self._dones)

    def take_dones(self) -> list[Done]:
        """The queued DONE entries, taken: the caller writes them (the sender, before
        it sends newer batches; ``JournalAccumulator.journal_identities``) or gives them
        back with ``add_dones``."""
        with self._cond:
            dones, self._dones = self._dones, []
        return dones

    def synced(self, serial: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future (of ``loop``, call on it) resolved once record ``serial`` is fsynced,
        or failed with the journal's error. Callers waiting together share one fsync."""
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            failure = self.failure if self.failure is not None else self.store.failed
            if failure is not None:
                future.set_exception(failure)
            elif serial < self.store.synced_serial:
                future.set_result(None)
            else:
                self._waiters.append((serial, loop, future))
                self._cond.notify()
        return future

    def close(self, timeout: float) -> None:
        """Write what is queued, sync, reclaim, stop the thread (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        self._ahead.close(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- the thread ----------------------------------------------------------------------

    def _dirty(self) -> bool:
        store = self.store
        return bool(self._dones or self._waiters) or store.next_serial > store.synced_serial

    def _next_work(self) -> bool:
        """Wait for work (the lock held); False once stopping with nothing left."""
        while not self._dirty():
            if self._stopping:
                return False
            self.idle = True
            if self._dirty():  # an append between the look above and ``idle``
                break
            self._cond.wait()
        self.idle = False
        if not self._waiters and not self._stopping and self.interval > 0:
            # Group commit: whatever is appended in the next ``interval`` shares the fsync.
            self._cond.wait(self.interval)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._next_work():
                    break
                dones, self._dones = self._dones, []
                waiters, self._waiters = self._waiters, []
            try:
                if not self._round(dones, waiters):
                    return
            except _StoreClosed:
                return
            except Exception as exc:  # a bug in a step: custody must not end with it
                self._unexpected(exc, dones, waiters)
                if self._stopping:
                    # Closing: no retry for good. What the close leaves is for the next
                    # producer on the journal; the waiters get the error, not a hang.
                    self._fail_waiters(JournalError(f"the journal could not be synced: {exc}"))
                    break
            else:
                self._trouble = False
        with contextlib.suppress(_StoreClosed):
            try:
                self._commit([])
                self._reclaim(force=True)
            except Exception:
                log.exception(
                    "journal %s: the last sync before closing failed", self.store.directory
                )

    def _round(
        self,
        dones: list[Done],
        waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]],
    ) -> bool:
        """Write ``dones``, sync, answer ``waiters`` the sync covered; False once the
        store has stopped (the thread ends). Each list is emptied as its work is done:
        what is left in them when a step raises is what ``_unexpected`` puts back for the
        next round."""
        error = self._commit(dones)
        synced = self.store.synced_serial
        late = []
        for serial, loop, future in waiters:
            if error is None and serial >= synced:
                late.append((serial, loop, future))  # appended after the ticket
                continue
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(_resolve, future, error)
        waiters.clear()
        if late:
            with self._cond:
                self._waiters[:0] = late
        if error is not None and self.store.failed is None:
            # Full even with the headroom for DONE entries, or the disk full: they count
            # in memory (``mark_done``), so reclaim can delete the segments they empty;
            # else nothing ever freed the disk, and every later produce() was refused.
            # Their entries are kept for the next round, a little later.
            if dones:
                self.store.mark_done(dones)
                self._reclaim(force=True)
            with self._cond:
                self._dones[:0] = dones
                dones.clear()
                self._cond.wait(max(self.interval, 0.01))
        elif error is not None:
            self._fail_waiters(error)
            return False
        return True

    def _unexpected(
        self,
        exc: Exception,
        dones: list[Done],
        waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]],
    ) -> None:
        """A round raised what no step should (a bug): logged at ERROR with its traceback
        once per episode (until a round succeeds), and the round's work put back for the
        next one, a little later. Before, the thread ended: "journal_sync" callers on a
        loop waited forever, and nothing was fsynced, marked done or reclaimed again.
        Only what the round had not done yet is put back (``_round`` empties its lists as
        it goes); were more put back, a DONE entry written twice would change nothing
        more, and a waiter answered already is not answered again (``_resolve``)."""
        if not self._trouble:
            self._trouble = True
            log.error(
                "journal %s: the journal's thread hit an unexpected error (%s); it goes on,"
                " retrying every %gs",
                self.store.directory,
                exc,
                _RETRY_AFTER,
                exc_info=exc,
            )
        with self._cond:
            self._dones[:0] = dones
            self._waiters[:0] = waiters
            if not self._stopping:  # (closing: ``_run`` stops retrying)
                self._cond.wait(_RETRY_AFTER)

    def _commit(self, dones: list[Done]) -> JournalError | None:
        store = self.store
        try:
            if dones:
                store.append(dones)
                dones.clear()  # written: a step that fails later must not write them again
            store.sync()
        except RuntimeError as exc:  # closed under us (a close that gave up waiting)
            raise _StoreClosed from exc
        except JournalError as exc:
            # The store has logged it (once per episode) and stopped, or it is full
            # even with its headroom for DONE entries: those records are sent again
            # after a restart (at-least-once), never lost.
            if store.failed is not None:
                self.failure = exc
            return exc
        self._reclaim(force=False)
        return None

    def _reclaim(self, *, force: bool) -> None:
        now = time.monotonic()
        if now < self._reclaim_at and not force:
            return
        self._reclaim_at = now + _RECLAIM_EVERY
        try:
            self.store.reclaim()
        except JournalError as exc:
            log.debug("journal reclaim failed: %s", exc)  # DiskHealth logged the episode
        except RuntimeError:
            pass  # the store was closed meanwhile

    def _fail_waiters(self, error: JournalError) -> None:
        # The store stopped: no later sync can cover anything. Fail every waiter, now
        # and later (``synced`` sees ``failure``).
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for _, loop, future in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, error)
