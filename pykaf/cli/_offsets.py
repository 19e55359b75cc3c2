"""``pykaf offsets TOPIC [-p P] [--at WHEN]``: each partition's earliest and latest offset
(and the first offset at or after a time), through ``pykaf.Admin``.

``--json``: ``{"topic", "at", "partitions": [{"partition", "earliest", "latest", "at"}]}``
(the top-level ``at`` is the time asked, in ms since the epoch; a partition's ``at`` is
its offset for that time, -1 when no record is that recent; both null without ``--at``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pykaf import OffsetSpec, TopicPartition
from pykaf.cli._admin_options import add_action, open_admin, parse_and_run
from pykaf.cli._connect import CommandParser, UsageError
from pykaf.cli._groups import parse_datetime
from pykaf.cli._tables import print_json, table

__all__ = ["parse_when", "run_offsets"]


def parse_when(text: str) -> OffsetSpec:
    """``@MS`` (milliseconds since the epoch, as kcat's ``-o @ts``) or an ISO 8601
    date-time."""
    if text.startswith("@"):
        digits = text[1:]
        if not digits.isdigit():
            raise UsageError(
                f"--at {text!r}: expected @MILLISECONDS (e.g. @1764975600000) or an ISO"
                " 8601 date-time"
            )
        return OffsetSpec.at(int(digits))
    return OffsetSpec.at(parse_datetime(text, "--at"))


def _offsets(args: argparse.Namespace) -> int:
    at = parse_when(args.at) if args.at is not None else None
    with open_admin(args) as admin:
        description = admin.describe_topics([args.topic])[args.topic]
        known = [p.partition for p in description.partitions]
        wanted = known if args.partition is None else args.partition
        missing = sorted(set(wanted) - set(known))
        if missing:
            raise UsageError(
                f"topic {args.topic!r} has no partition {', '.join(map(str, missing))}"
                f" (it has {len(known)}: 0..{len(known) - 1})"
            )
        partitions = [TopicPartition(args.topic, p) for p in sorted(set(wanted))]
        earliest = admin.list_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST))
        latest = admin.list_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
        found = admin.list_offsets(dict.fromkeys(partitions, at)) if at is not None else None
    rows = [
        (
            tp.partition,
            earliest[tp].offset,
            latest[tp].offset,
            found[tp].offset if found is not None else None,
        )
        for tp in partitions
    ]
    if args.json:
        print_json(
            {
                "topic": args.topic,
                "at": at.timestamp if at is not None else None,
                "partitions": [
                    {"partition": p, "earliest": low, "latest": high, "at": when}
                    for p, low, high, when in rows
                ],
            }
        )
    else:
        headers = ["PARTITION", "EARLIEST", "LATEST"]
        if at is not None:
            headers.append(f"AT {args.at}")
        print(table(headers, [row[: len(headers)] for row in rows]))
    return 0


def _parser() -> CommandParser:
    parser = CommandParser(
        prog="pykaf offsets",
        description="Each partition's earliest and latest offset (and the offset at a time).",
    )
    add_action(parser, _offsets)
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument(
        "-p",
        "--partition",
        type=int,
        action="append",
        metavar="P",
        help="only this partition (repeatable; default: all)",
    )
    parser.add_argument(
        "--at",
        metavar="WHEN",
        help="also the first offset at or after WHEN: @MILLISECONDS or an ISO 8601 date-time",
    )
    return parser


def run_offsets(argv: Sequence[str]) -> int:
    return parse_and_run(_parser(), argv)
