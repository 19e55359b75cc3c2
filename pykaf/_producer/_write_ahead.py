"""``AheadWriter``: the journal's second thread, which writes the newest segment's pages
ahead of the appends, with zeros (``JournalStore.write_ahead``; why, in ``_mapped``'s
module doc: a store into a page written ahead costs the appending thread, holding the
GIL, one cheap fault instead of the kernel's page preparation).

Apart from the syncing thread (``GroupCommit``), which wrote ahead after each sync before:
an fsync blocks that thread for as long as the disk takes, 10 to 80 ms here while 200 MB/s
are appended, and the appends ran past the pages written ahead meanwhile. Measured
(``benchmarks/custody.py``, journal level, 200,000 records of 1 KiB): the appending
thread took 57 to 77 major faults per 1,000 records and 0.65 us of system time a record;
with this thread, 2 to 3 and 0.2 to 0.35.

The store asks for a step (``JournalStore.ahead_due``) when it creates a segment file and
once per ``DROP_STEP`` of appends; the thread sleeps otherwise. A step it finds unneeded
returns at once (``write_ahead``). Writing ahead is a speed-up only: an unexpected error
in it (a bug) is logged at ERROR with its traceback once per episode, and the thread goes
on; the appends then prepare their pages themselves, as before.
"""

from __future__ import annotations

import logging
import threading

from pykaf._producer.journal import JournalStore

__all__ = ["AheadWriter"]

log = logging.getLogger("pykaf.producer.journal")


class AheadWriter:
    """The thread writing one store's pages ahead (see the module doc)."""

    def __init__(self, store: JournalStore) -> None:
        self._store = store
        self._due = threading.Event()
        self._stopping = False
        self._trouble = False  # an unexpected error was logged, and no step succeeded since
        self._thread = threading.Thread(target=self._run, name="pykaf-journal-ahead", daemon=True)
        self._thread.start()
        store.ahead_due = self._due.set

    def close(self, timeout: float) -> None:
        """Stop the thread (a step in flight ends first), within ``timeout``. The store
        may still call ``ahead_due`` after it: that sets an event nobody waits for."""
        self._stopping = True
        self._due.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        due = self._due
        while True:
            due.wait()
            due.clear()
            if self._stopping:
                return
            try:
                self._store.write_ahead()
            except Exception as exc:  # a bug: the appends go on without pages ahead
                if not self._trouble:
                    self._trouble = True
                    log.error(
                        "journal %s: writing pages ahead hit an unexpected error (%s); the"
                        " appends go on without them",
                        self._store.directory,
                        exc,
                        exc_info=exc,
                    )
            else:
                self._trouble = False
