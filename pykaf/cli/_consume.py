"""``pykaf consume TOPIC...``: records to stdout, as ``kcat -C`` does.

Each ``poll`` hands a list of records; the list is rendered in one go (``-f`` format,
``--json`` or the value and a newline) and written to ``sys.stdout.buffer`` in one call.
With ``-G`` the group's offsets are committed by this command, not by auto-commit: only
what reached stdout is committed (every second, when partitions are revoked, and on the
way out, Ctrl-C and SIGTERM included), so a second run resumes right after the last
record printed.

Ctrl-C or SIGTERM (``_stop``): the handler raises only while ``poll`` waits (then
nothing half-rendered is lost); during rendering and writing it just asks the loop to stop
after the write. Exit status 0 then, as kcat's; a closed stdout (``| head``) ends quietly
with 0 too.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from pykaf import Consumer, ConsumerRecord, TopicPartition
from pykaf.cli._connect import (
    CommandParser,
    UsageError,
    add_connection_options,
    client_options,
    run_command,
    topic_partitions,
)
from pykaf.cli._consume_format import DEFAULT_FORMAT, Renderer, compile_format, json_renderer
from pykaf.cli._stop import Stop, stop_signals
from pykaf.errors import CommitFailedError

__all__ = ["OffsetSpec", "parse_offset", "run_consume"]

_POLL_RECORDS: Final = 20_000  # records per poll: one render and one write each
_COMMIT_EVERY: Final = 1.0  # seconds between commits of what was printed (-G)
_OFFSET_HELP: Final = (
    "use beginning, end, stored, an offset (42), -N (N before the end of each partition)"
    " or @TIMESTAMP_MS"
)


@dataclass(frozen=True, slots=True)
class OffsetSpec:
    """Where to start: ``kind`` is beginning, end, stored, absolute, from_end or time."""

    kind: str
    value: int = 0


def parse_offset(text: str) -> OffsetSpec:
    """``-o``: beginning | end | stored | N | -N | @TS (kcat's s@TS too)."""
    word = text.strip().lower()
    if word in ("beginning", "end", "stored"):
        return OffsetSpec(word)
    number = word[2:] if word.startswith("s@") else word[1:] if word.startswith("@") else None
    try:
        if number is not None:
            if int(number) < 0:
                raise ValueError
            return OffsetSpec("time", int(number))
        value = int(word)
    except ValueError:
        raise UsageError(f"-o {text!r}: {_OFFSET_HELP}") from None
    if word.startswith("-"):
        return OffsetSpec("from_end", -value)
    return OffsetSpec("absolute", value)


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="pykaf consume",
        description="Write the records of TOPIC(s) to stdout: by default each value and a newline.",
    )
    parser.add_argument("topics", nargs="*", metavar="TOPIC")
    parser.add_argument(
        "-t",
        dest="topic_flags",
        action="append",
        default=[],
        metavar="TOPIC",
        help="a topic, as kcat spells it (repeatable; beside or instead of TOPIC)",
    )
    parser.add_argument("-o", dest="offset", help=f"where to start: {_OFFSET_HELP}")
    parser.add_argument("-p", dest="partition", type=int, help="only this partition")
    parser.add_argument(
        "-e", dest="stop_at_end", action="store_true", help="exit at the end of every partition"
    )
    parser.add_argument("-c", dest="count", type=int, help="exit after COUNT records")
    parser.add_argument(
        "-G", dest="group", help="consume as a member of GROUP, committing what was printed"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-f",
        dest="format",
        help="kcat's format: %%s value, %%k key, %%t topic, %%p partition, %%o offset,"
        " %%T timestamp, %%h headers, %%S/%%K lengths, \\n \\t (default: %%s\\n)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per record: topic, partition, offset, timestamp, key, value,"
        " headers (key/value as text when UTF-8, else base64 with key_encoding/value_encoding)",
    )
    add_connection_options(parser)
    return parser


def _partitions(
    bootstrap: str, options: dict[str, Any], args: argparse.Namespace
) -> list[TopicPartition]:
    """Every partition to read (refusing missing topics and partitions before reading)."""
    partitions: list[TopicPartition] = []
    for name, numbers in topic_partitions(
        bootstrap, options, args.topics, timeout=args.metadata_timeout
    ).items():
        if args.partition is not None and args.partition not in numbers:
            raise UsageError(
                f"-p {args.partition}: topic {name!r} has partitions 0..{len(numbers) - 1}"
            )
        chosen = numbers if args.partition is None else [args.partition]
        partitions += [TopicPartition(name, n) for n in chosen]
    return partitions


def _position(consumer: Consumer, partitions: list[TopicPartition], spec: OffsetSpec) -> None:
    if spec.kind == "beginning":
        consumer.seek_to_beginning(*partitions)
    elif spec.kind == "end":
        consumer.seek_to_end(*partitions)
    elif spec.kind == "absolute":
        for tp in partitions:
            consumer.seek(tp, spec.value)
    elif spec.kind == "from_end":
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - spec.value))
    else:  # time: partitions with no record at or after it start at their end
        found = consumer.offsets_for_times(dict.fromkeys(partitions, spec.value))
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            hit = found.get(tp)
            consumer.seek(tp, ends[tp] if hit is None else hit[0])


class _Printed:
    """Per partition, the offset after the last record written to stdout: what -G commits."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.offsets: dict[TopicPartition, int] = {}
        self.last_commit = time.monotonic()

    def add(self, records: Sequence[ConsumerRecord]) -> None:
        last: dict[type, int] = {}
        for record in records:
            last[record.__class__] = record[0]
        offsets = self.offsets
        for cls, offset in last.items():
            offsets[TopicPartition(cls.topic, cls.partition)] = offset + 1  # type: ignore[attr-defined]

    def commit_if_due(self) -> None:
        if time.monotonic() - self.last_commit >= _COMMIT_EVERY and self.offsets:
            self.last_commit = time.monotonic()
            self.consumer.commit_async(dict(self.offsets))

    def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit synchronously (revoked partitions, or all on the way out)."""
        mine = {
            tp: offset
            for tp, offset in self.offsets.items()
            if partitions is None or tp in partitions
        }
        if mine:
            self.consumer.commit(mine)


def _consume(args: argparse.Namespace) -> int:
    spec = parse_offset(args.offset) if args.offset is not None else None
    if args.count is not None and args.count < 1:
        raise UsageError(f"-c {args.count}: the count is a number >= 1")
    if args.partition is not None and args.partition < 0:
        raise UsageError(f"-p {args.partition}: a partition is a number >= 0")
    if args.group is not None:
        if args.partition is not None:
            raise UsageError("-p and -G exclude each other: the group assigns the partitions")
        if spec is not None and spec.kind not in ("beginning", "end", "stored"):
            raise UsageError(
                f"-o {args.offset}: with -G, -o says where to start when the group has no"
                " committed offset: beginning, end or stored"
            )
    elif spec is not None and spec.kind == "stored":
        raise UsageError("-o stored needs -G GROUP (the group whose offsets are stored)")
    render: Renderer = json_renderer if args.json else compile_format(args.format or DEFAULT_FORMAT)
    bootstrap, options = client_options(args)
    partitions = _partitions(bootstrap, options, args)
    reset = "earliest" if spec is not None and spec.kind == "beginning" else "latest"
    # SIGINT or SIGTERM: a clean stop (exit 0, as kcat); what was printed is committed.
    with stop_signals() as stop, contextlib.suppress(KeyboardInterrupt):
        consumer = Consumer(
            bootstrap,
            group_id=args.group,
            stop_at_end=args.stop_at_end,
            enable_auto_commit=False,
            auto_offset_reset=reset if args.group else "earliest",
            max_partition_fetch_bytes=4 << 20,
            **options,
        )
        with consumer:
            printed = _Printed(consumer)
            try:
                _setup(consumer, args, partitions, spec or OffsetSpec("beginning"), printed)
                _loop(consumer, args, render, stop, printed)
            finally:
                if args.group is not None:
                    _final_commit(printed)
    return 0


def _setup(
    consumer: Consumer,
    args: argparse.Namespace,
    partitions: list[TopicPartition],
    spec: OffsetSpec,
    printed: _Printed,
) -> None:
    if args.group is None:
        consumer.assign(partitions)
        _position(consumer, partitions, spec)
        return

    def on_revoked(revoked: set[TopicPartition]) -> None:
        printed.commit(revoked)  # before another member takes them over

    consumer.subscribe(args.topics, on_revoked=on_revoked)


def _loop(
    consumer: Consumer,
    args: argparse.Namespace,
    render: Renderer,
    stop: Stop,
    printed: _Printed,
) -> None:
    write = _writer(sys.stdout.buffer)
    flush = sys.stdout.buffer.flush
    remaining = args.count
    group = args.group is not None
    poll_timeout = None if args.stop_at_end else 1.0
    poll = consumer.poll
    while not stop.requested:
        with stop.waits():
            records = poll(poll_timeout, _POLL_RECORDS)
        if not records:
            if args.stop_at_end:
                return
            if group:
                printed.commit_if_due()
            continue
        if remaining is not None:
            records = records[:remaining]
            remaining -= len(records)
        write(render(records))
        flush()
        if group:
            printed.add(records)
            printed.commit_if_due()
        if remaining == 0:
            return


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    """``stream.write`` until all is written: a signal whose handler returns (Ctrl-C, see
    ``_stop.Stop``) makes a blocked ``BufferedWriter.write`` return early with a count."""
    raw_write = stream.write

    def write(data: bytes) -> None:
        written = raw_write(data)
        if written is None or written >= len(data):
            return
        view = memoryview(data)[written:]
        while view:
            view = view[raw_write(view) or 0 :]

    return write


def _final_commit(printed: _Printed) -> None:
    try:
        printed.commit(printed.consumer.assignment())
    except CommitFailedError as exc:
        sys.stderr.write(
            f"pykaf consume: the last commit failed ({exc}); the next run may print some"
            " records again\n"
        )


def run_consume(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.topics = args.topic_flags + args.topics
    if not args.topics:
        parser.error("which topic? pykaf consume TOPIC (or -t TOPIC, as kcat)")
    return run_command(_consume, args)
