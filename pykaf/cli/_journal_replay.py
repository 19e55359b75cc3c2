"""``pykaf journal replay DIR --bootstrap B``: drain a journal a producer left behind.

It opens a public ``pykaf.Producer`` with custody "journal" on DIR: opening it recovers
every record an earlier producer journaled and did not get acknowledged, and sends them in
order per partition (``Producer.recovered()``); each one's report comes back to
``on_replayed_delivery`` and is counted per partition. The wait for those reports is
bounded by ``--timeout``; then the producer closes and the journal is inspected again, so
"left in the journal" is what the directory holds afterwards, measured, not assumed.

Exit status: 0 when every recovered record was delivered (or nothing was pending), 1 when
some failed or are left in the journal (a timeout, Ctrl-C), 2 for bad input: not a
journal, a damaged journal, a journal locked by a live producer, a bad bootstrap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, TextIO

from pykaf import DeliveryError, Producer, PykafError, RecordMetadata
from pykaf.cli._progress import Progress
from pykaf.cli._stop import Stop, stop_signals
from pykaf.errors import (
    JournalCorruptError,
    JournalError,
    JournalKeptError,
    JournalLockedError,
)
from pykaf.journal import JournalSummary, NotAJournalError, inspect_journal

__all__ = [
    "PROG",
    "BadJournalInput",
    "PartitionReplay",
    "ReplayReport",
    "format_report",
    "replay_journal",
    "report_dict",
]

PROG: Final = "pykaf journal replay"
_ERROR_SAMPLES: Final = 3  # distinct failure messages quoted in the report
_CLOSE_TIMEOUT: Final = 10.0  # the close after a flush that delivered everything
_SLICE: Final = 0.25  # seconds per flush: how soon a Ctrl-C is seen


class BadJournalInput(Exception):
    """Why the replay could not start: one line for stderr, exit status 2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionReplay:
    topic: str
    partition: int
    recovered: int
    delivered: int
    failed: int
    left: int  # still pending in the journal after the producer closed


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """What a replay did; ``--json`` prints it as is."""

    directory: str
    bootstrap: str
    recovered: int
    delivered: int
    failed: int
    failed_maybe_written: int  # of those, how many the broker may have written all the same
    left: int
    timed_out: bool
    interrupted: bool
    seconds: float
    partitions: tuple[PartitionReplay, ...] = ()
    errors: tuple[str, ...] = ()  # a few distinct failure messages
    torn_tail_bytes: int = 0  # an append a crash interrupted, cut when the journal opened

    @property
    def exit_status(self) -> int:
        return 0 if self.failed == 0 and self.left == 0 else 1


@dataclass(slots=True)
class _Tally:
    """Reports counted on the producer's thread, read by the caller's."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    delivered: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: int = 0
    maybe_written: int = 0
    errors: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    progress: Progress | None = None

    def report(self, metadata: RecordMetadata | None, error: BaseException | None) -> None:
        with self.lock:
            if error is None and metadata is not None:
                self.delivered[(metadata.topic, metadata.partition)] += 1
            elif isinstance(error, JournalKeptError):
                pass  # the close kept it in the journal: counted there, as left
            else:
                # A failure report carries no metadata: its partition is worked out
                # afterwards (recovered - delivered - left in the journal).
                self.failed += 1
                if isinstance(error, DeliveryError) and error.maybe_persisted:
                    self.maybe_written += 1
                if len(self.errors) < _ERROR_SAMPLES:
                    self.errors[str(error)] = None
        if self.progress is not None:
            self.progress.advance(1)


def _inspect(directory: str) -> JournalSummary:
    try:
        return inspect_journal(directory)
    except (NotAJournalError, JournalCorruptError) as exc:
        raise BadJournalInput(str(exc)) from None
    except OSError as exc:
        raise BadJournalInput(f"cannot read the journal: {exc}") from None


def _check_unlocked(summary: JournalSummary) -> None:
    lock = summary.lock
    if lock.held:
        holder = f"pid {lock.pid}" if lock.pid is not None else "a process outside this namespace"
        raise BadJournalInput(
            f"journal {summary.directory} is locked by a live producer ({holder}): that"
            " producer sends its records itself; stop it first to replay them from here"
        )


def _pending_by_partition(summary: JournalSummary) -> dict[tuple[str, int], int]:
    return {(p.topic, p.partition): p.pending_records for p in summary.partitions}


def _wait_for_reports(producer: Producer, timeout: float, stop: Stop) -> bool:
    """Flush in short slices until nothing is pending, ``timeout`` passes or ``stop`` is
    asked; True when everything got its report."""
    deadline = time.monotonic() + timeout
    while not stop.requested:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if producer.flush(min(_SLICE, remaining)) == 0:
            return True
    return False


def _open_producer(directory: str, bootstrap: str, tally: _Tally, client_id: str) -> Producer:
    try:
        return Producer(
            bootstrap,
            custody="journal",
            journal_dir=directory,
            on_replayed_delivery=tally.report,
            client_id=client_id,
        )
    except JournalLockedError as exc:
        raise BadJournalInput(f"the journal is locked by a live producer: {exc}") from None
    except JournalError as exc:  # damaged (JournalCorruptError), unreadable disk...
        raise BadJournalInput(str(exc)) from None
    except (ValueError, TypeError, PykafError) as exc:  # a malformed bootstrap list
        raise BadJournalInput(
            f"cannot open a producer for --bootstrap {bootstrap!r}: {exc}"
        ) from None


def replay_journal(
    directory: str,
    bootstrap: str,
    *,
    timeout: float,
    client_id: str = "pykaf-journal-replay",
    progress_to: TextIO | None = None,
) -> ReplayReport:
    """Send what the journal in ``directory`` holds pending; raises ``BadJournalInput``
    when it cannot start. A Ctrl-C during the wait stops it (``interrupted``)."""
    before = _inspect(directory)
    _check_unlocked(before)
    started = time.monotonic()
    if before.pending_records == 0:
        return ReplayReport(
            directory=directory,
            bootstrap=bootstrap,
            recovered=0,
            delivered=0,
            failed=0,
            failed_maybe_written=0,
            left=0,
            timed_out=False,
            interrupted=False,
            seconds=0.0,
        )
    tally = _Tally()
    # Ctrl-C or SIGTERM asks the wait to stop rather than raising ``KeyboardInterrupt``
    # wherever it lands (half way through opening the producer, or through its close):
    # the replay checks it between short waits and closes cleanly (``_stop``).
    with stop_signals() as stop:
        producer = _open_producer(directory, bootstrap, tally, client_id)
        done = False
        try:
            recovered = producer.recovered()
            if progress_to is not None:
                tally.progress = Progress(sum(recovered.values()), out=progress_to, label="replay")
            with tally.progress or contextlib.nullcontext():
                done = _wait_for_reports(producer, timeout, stop)
        finally:
            # Nothing left to wait for unless everything was delivered: the close must not
            # stretch --timeout (what it cannot send stays in the journal, measured below).
            producer.close(_CLOSE_TIMEOUT if done else 0.0)
    interrupted = stop.requested and not done
    timed_out = not done and not interrupted
    seconds = time.monotonic() - started
    left = _pending_by_partition(_inspect(directory))
    report = _report(directory, bootstrap, recovered, tally, left, timed_out, interrupted, seconds)
    torn = before.torn_tail
    return report if torn is None else dataclasses.replace(report, torn_tail_bytes=torn.size_bytes)


def _report(
    directory: str,
    bootstrap: str,
    recovered: dict[tuple[str, int], int],
    tally: _Tally,
    left: dict[tuple[str, int], int],
    timed_out: bool,
    interrupted: bool,
    seconds: float,
) -> ReplayReport:
    with tally.lock:
        delivered = dict(tally.delivered)
        failed_total = tally.failed
        maybe_written = tally.maybe_written
        errors = tuple(tally.errors)
    partitions = []
    for key in sorted(recovered.keys() | delivered.keys() | left.keys()):
        got, ok, stays = recovered.get(key, 0), delivered.get(key, 0), left.get(key, 0)
        partitions.append(
            PartitionReplay(
                topic=key[0],
                partition=key[1],
                recovered=got,
                delivered=ok,
                failed=max(0, got - ok - stays),
                left=stays,
            )
        )
    return ReplayReport(
        directory=directory,
        bootstrap=bootstrap,
        recovered=sum(recovered.values()),
        delivered=sum(delivered.values()),
        failed=failed_total,
        failed_maybe_written=maybe_written,
        left=sum(left.values()),
        timed_out=timed_out,
        interrupted=interrupted,
        seconds=round(seconds, 3),
        partitions=tuple(partitions),
        errors=errors,
    )


def report_dict(report: ReplayReport) -> dict[str, object]:
    """The report as ``--json`` prints it, with its exit status."""
    return {**dataclasses.asdict(report), "exit_status": report.exit_status}


def format_report(report: ReplayReport, timeout: float, out: TextIO) -> None:
    """The human-readable summary ``pykaf journal replay`` prints."""
    write = out.write
    if report.recovered == 0 and not report.partitions:
        write(f"journal {report.directory}: nothing pending, nothing to replay\n")
        return
    write(
        f"journal {report.directory}: {report.recovered:,} record(s) recovered, replayed to"
        f" {report.bootstrap}\n"
    )
    write(
        f"  {'TOPIC':<24} {'PARTITION':>9} {'RECOVERED':>10} {'DELIVERED':>10} {'FAILED':>7}"
        f" {'LEFT':>7}\n"
    )
    for p in report.partitions:
        write(
            f"  {p.topic:<24} {p.partition:>9} {p.recovered:>10,} {p.delivered:>10,}"
            f" {p.failed:>7,} {p.left:>7,}\n"
        )
    write(
        f"delivered {report.delivered:,} of {report.recovered:,} in {report.seconds:.2f} s;"
        f" failed {report.failed:,}; left in the journal {report.left:,}\n"
    )
    if report.torn_tail_bytes:
        write(
            f"a torn tail of {report.torn_tail_bytes:,} bytes (an append a crash interrupted)"
            " was cut when the journal was opened\n"
        )
    if report.interrupted:
        write("interrupted (Ctrl-C): the replay stopped before every report came back\n")
    elif report.timed_out:
        write(f"not every record was acknowledged within --timeout {timeout:g} s\n")
    if report.failed:
        maybe = (
            f" ({report.failed_maybe_written:,} of them may have been written by the broker"
            " all the same)"
            if report.failed_maybe_written
            else ""
        )
        write(
            f"{report.failed:,} record(s) failed with a report and are no longer in the"
            f" journal{maybe}; first error(s):\n"
        )
        for error in report.errors:
            write(f"  {error}\n")
    if report.left:
        write(
            f"{report.left:,} record(s) stay in the journal: run `pykaf journal replay` again"
            " (or open a producer on it) to send them\n"
        )
    elif report.exit_status == 0:
        write("every recovered record was delivered; the journal holds nothing pending\n")
