"""``pykaf journal inspect DIR [--json]`` and ``pykaf journal replay DIR --bootstrap B``.

``inspect`` prints what a producer's journal directory holds (``pykaf.journal``), without
locking or changing it: a table for people on stdout, or one JSON object with ``--json``.
Exit status 0; 2 when the path is not a journal, a file is damaged or unreadable.
``replay`` sends what it holds pending (``_journal_replay``): exit status 0 when all of it
was delivered, 1 when some failed or stays in the journal, 2 for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from pykaf.cli._journal_replay import PROG as REPLAY_PROG
from pykaf.cli._journal_replay import BadJournalInput, format_report, replay_journal, report_dict
from pykaf.errors import JournalCorruptError
from pykaf.journal import JournalSummary, NotAJournalError, inspect_journal

__all__ = ["format_summary", "run_journal"]

_DEFAULT_TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pykaf journal",
        description="Look at, or drain, a producer's journal directory (journal_dir).",
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="{inspect,replay}")
    inspect = commands.add_parser(
        "inspect",
        help="print what the journal holds (takes no lock, changes nothing)",
        description=(
            "Print the journal's segments, records pending per partition, the oldest"
            " pending record's age, a torn tail if the newest segment ends in one, and"
            " whether a live process holds its lock. Read-only: safe while a producer runs."
            " Exit status 2 when DIR is not a journal or a file is damaged."
        ),
    )
    inspect.add_argument("directory", metavar="DIR", help="the producer's journal_dir")
    inspect.add_argument("--json", action="store_true", help="one JSON object on stdout")
    replay = commands.add_parser(
        "replay",
        help="send the journal's pending records to a cluster, then reclaim them",
        description=(
            "Open a producer (custody 'journal') on DIR: it sends every record an earlier"
            " producer journaled and did not get acknowledged, in order per partition, to"
            " the cluster at --bootstrap. Waits up to --timeout for their reports, then"
            " prints what was recovered, delivered, failed and is left in the journal per"
            " partition. Ctrl-C stops it; what was not sent stays in the journal. Exit"
            " status 0 when everything was delivered (or nothing was pending), 1 when"
            " records failed or are left, 2 when DIR is not a journal, is damaged or is"
            " locked by a live producer."
        ),
    )
    replay.add_argument("directory", metavar="DIR", help="the producer's journal_dir")
    replay.add_argument(
        "-b", "--bootstrap", required=True, metavar="B", help="host:port[,host:port]"
    )
    replay.add_argument(
        "--timeout",
        type=_seconds,
        default=_DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for every report (default {_DEFAULT_TIMEOUT:g})",
    )
    replay.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def run_journal(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "replay":
        return _replay(args)
    try:
        summary = inspect_journal(args.directory)
    except (NotAJournalError, JournalCorruptError) as exc:
        print(f"pykaf journal inspect: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pykaf journal inspect: cannot read the journal: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print(lambda out: _dump_json(dataclasses.asdict(summary), out))
    else:
        _print(lambda out: format_summary(summary, out))
    return 0


def _replay(args: argparse.Namespace) -> int:
    progress = sys.stderr if sys.stderr.isatty() and not args.json else None
    try:
        report = replay_journal(
            args.directory, args.bootstrap, timeout=args.timeout, progress_to=progress
        )
    except BadJournalInput as exc:
        print(f"{REPLAY_PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the replay's own Ctrl-C handling began
        print(
            f"{REPLAY_PROG}: interrupted before the replay began; nothing was sent", file=sys.stderr
        )
        return 1
    if args.json:
        _print(lambda out: _dump_json(report_dict(report), out))
    else:
        _print(lambda out: format_report(report, args.timeout, out))
    return report.exit_status


def _dump_json(value: object, out: TextIO) -> None:
    json.dump(value, out, indent=2)
    out.write("\n")


def _print(write: Callable[[TextIO], object]) -> None:
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader that stopped early (``| head``): not an error of ours. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _when(timestamp_ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"timestamp {timestamp_ms} ms"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _age(seconds: float) -> str:
    if seconds < 0:
        return f"{-seconds:.1f} s in the future"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _lock_line(summary: JournalSummary) -> str:
    lock = summary.lock
    if lock.held is None:
        return "lock: cannot tell whether a process holds it (no /proc/locks)"
    if not lock.held:
        return "lock: free (no live process has the journal open)"
    holder = f"pid {lock.pid}" if lock.pid is not None else "a process outside this namespace"
    return f"lock: held by {holder} (a producer is using it: figures are a snapshot)"


def format_summary(summary: JournalSummary, out: TextIO) -> None:
    """The human-readable report ``pykaf journal inspect`` prints."""
    write = out.write
    write(f"journal {summary.directory}\n{_lock_line(summary)}\n")
    write(f"segments: {len(summary.segments)}, {summary.size_bytes:,} bytes\n")
    if summary.segments:
        write(f"  {'FILE':<28} {'BYTES':>11} {'RECORDS':>9} {'PENDING':>9} {'DONE ENTRIES':>12}\n")
    for segment in summary.segments:
        write(
            f"  {segment.name:<28} {segment.size_bytes:>11,} {segment.records:>9,}"
            f" {segment.pending_records:>9,} {segment.done_entries:>12,}\n"
        )
    write(
        f"records: {summary.records:,} journaled, {summary.pending_records:,} pending,"
        f" {summary.done_records:,} done; next serial {summary.next_serial}\n"
    )
    oldest = summary.oldest_pending_timestamp_ms
    if oldest is not None and summary.oldest_pending_age_s is not None:
        write(
            f"oldest pending record: {_when(oldest)} (age {_age(summary.oldest_pending_age_s)}),"
            f" first pending serial {summary.first_pending_serial}\n"
        )
    else:
        write("oldest pending record: none (nothing pending)\n")
    torn = summary.torn_tail
    if torn is None:
        write("torn tail: none\n")
    else:
        # While a producer holds the lock, the "tail" may be an append it has not finished.
        write(
            f"torn tail: {torn.size_bytes:,} bytes at byte {torn.position:,} of {torn.segment}"
            f" ({torn.reason}); "
            + (
                "maybe an append in progress\n"
                if summary.lock.held
                else "a producer opening the journal cuts it, inspect did not\n"
            )
        )
    if not summary.partitions:
        return
    write(
        f"  {'TOPIC':<24} {'PARTITION':>9} {'PENDING':>9} {'PRODUCER ID':>12} {'EPOCH':>6}"
        f" {'BASE SEQ':>9}\n"
    )
    for backlog in summary.partitions:
        identity = backlog.identity
        ids = (
            f" {identity.producer_id:>12} {identity.epoch:>6} {identity.base_sequence:>9}"
            if identity is not None
            else f" {'-':>12} {'-':>6} {'-':>9}"
        )
        write(f"  {backlog.topic:<24} {backlog.partition:>9} {backlog.pending_records:>9,}{ids}\n")
