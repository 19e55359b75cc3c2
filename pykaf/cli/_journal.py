"""``pykaf journal inspect DIR [--json]`` and ``pykaf journal replay DIR --bootstrap B``.

``inspect`` prints what a producer's journal directory holds (``pykaf.journal``), without
locking or changing it: a table for people on stdout, or one JSON object with ``--json``.
Exit status 0; 2 when the path is not a journal, a file is damaged or unreadable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from pykaf.errors import JournalCorruptError
from pykaf.journal import JournalSummary, NotAJournalError, inspect_journal

__all__ = ["REPLAY_UNAVAILABLE", "format_summary", "run_journal"]

REPLAY_UNAVAILABLE = (
    "pykaf journal replay: not available yet: the producer's journal custody (issue 12) is"
    " not built"
)


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
            "Send every pending record of the journal to the cluster at --bootstrap, in"
            " order per partition, and reclaim what was acknowledged. Not available yet:"
            " it needs the producer's journal custody (issue 12); exits with status 2."
        ),
    )
    replay.add_argument("directory", metavar="DIR", help="the producer's journal_dir")
    replay.add_argument("--bootstrap", required=True, metavar="B", help="host:port[,host:port]")
    return parser


def run_journal(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "replay":
        print(REPLAY_UNAVAILABLE, file=sys.stderr)
        return 2
    try:
        summary = inspect_journal(args.directory)
    except (NotAJournalError, JournalCorruptError) as exc:
        print(f"pykaf journal inspect: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pykaf journal inspect: cannot read the journal: {exc}", file=sys.stderr)
        return 2
    try:
        if args.json:
            json.dump(dataclasses.asdict(summary), sys.stdout, indent=2)
            print(flush=True)
        else:
            format_summary(summary, sys.stdout)
            sys.stdout.flush()
    except BrokenPipeError:
        # A reader that stopped early (``| head``): not an error of ours. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


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
