"""``pykaf groups list|describe|delete|reset-offsets``: consumer groups, their members and
where they resume, through ``pykaf.Admin``.

``--json`` documents (keys in this order):
- list: ``{"groups": [{"group_id", "state", "type", "protocol_type", "coordinator"}]}``
- describe: ``{"groups": [{"group_id", "state", "protocol_type", "protocol",
  "coordinator", "members": [{"member_id", "group_instance_id", "client_id",
  "client_host", "assignment": [{"topic", "partition"}]}], "offsets": [{"topic",
  "partition", "committed", "end_offset", "lag", "metadata"}]}], "errors": {GROUP: text}}``
- delete: ``{"groups": [GROUP, ...], "errors"}``
- reset-offsets: ``{"group", "dry_run", "partitions": [{"topic", "partition", "current",
  "new"}], "errors": {"TOPIC-PARTITION": text}}``
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from pykaf import Admin, OffsetSpec, PykafError, TopicPartition
from pykaf.admin import GroupDescription, GroupOffset
from pykaf.cli._admin_options import add_action, open_admin, parse_and_run
from pykaf.cli._connect import CommandParser, UsageError
from pykaf.cli._tables import error_text, print_json, report_failures, table
from pykaf.errors import GroupIdNotFoundError

__all__ = ["parse_datetime", "run_groups"]


def parse_datetime(text: str, flag: str) -> datetime.datetime:
    """An ISO 8601 date-time (no zone given: UTC); anything else is a ``UsageError``."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: expected an ISO 8601 date-time such as 2026-12-05T23:00:00Z"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _list(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        groups = sorted(admin.list_groups(), key=lambda g: g.group_id)
    if args.json:
        print_json(
            {
                "groups": [
                    {
                        "group_id": g.group_id,
                        "state": g.state,
                        "type": g.type,
                        "protocol_type": g.protocol_type,
                        "coordinator": g.coordinator,
                    }
                    for g in groups
                ]
            }
        )
    elif groups:
        rows = [(g.group_id, g.state, g.type, g.protocol_type, g.coordinator) for g in groups]
        print(table(("GROUP", "STATE", "TYPE", "PROTOCOL TYPE", "COORDINATOR"), rows))
    else:
        print("no groups")
    return 0


def _group_json(group: GroupDescription, offsets: Sequence[GroupOffset]) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "state": group.state,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol,
        "coordinator": group.coordinator,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment": [{"topic": a.topic, "partition": a.partition} for a in m.assignment],
            }
            for m in group.members
        ],
        "offsets": [
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed": o.committed,
                "end_offset": o.end_offset,
                "lag": o.lag,
                "metadata": o.metadata,
            }
            for o in offsets
        ],
    }


def _print_group(group: GroupDescription, offsets: Sequence[GroupOffset]) -> None:
    protocol = f"  protocol {group.protocol}" if group.protocol else ""
    print(
        f"group {group.group_id}  state {group.state}{protocol}  coordinator"
        f" {group.coordinator}  members {len(group.members)}"
    )
    if group.members:
        rows = [
            (m.member_id, m.client_id, m.client_host, ",".join(map(str, sorted(m.assignment))))
            for m in group.members
        ]
        print(table(("MEMBER", "CLIENT ID", "HOST", "ASSIGNMENT"), rows, indent="  "))
    if offsets:
        total = sum(o.lag for o in offsets if o.lag is not None)
        rows_o = [(o.topic, o.partition, o.committed, o.end_offset, o.lag) for o in offsets]
        print(table(("TOPIC", "PARTITION", "COMMITTED", "END", "LAG"), rows_o, indent="  "))
        print(f"  total lag {total}")
    else:
        print("  no committed offsets")


def _describe(args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.groups))
    shown: list[tuple[GroupDescription, list[GroupOffset]]] = []
    with open_admin(args) as admin:
        described = admin.describe_groups(names)
        errors: dict[str, PykafError] = dict(described.errors)
        for name, group in described.ok.items():
            offsets = admin.list_group_offsets(name)
            if offsets.errors:
                errors[name] = next(iter(offsets.errors.values()))
                continue
            shown.append((group, sorted(offsets.ok.values(), key=lambda o: (o.topic, o.partition))))
    if args.json:
        print_json(
            {
                "groups": [_group_json(g, o) for g, o in shown],
                "errors": {name: error_text(e) for name, e in errors.items()},
            }
        )
    else:
        for group, listed in shown:
            _print_group(group, listed)
    return report_failures(args.prog, "groups", len(names), errors)


def _delete(args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.groups))
    with open_admin(args) as admin:
        outcomes = admin.delete_groups(names)
    if args.json:
        print_json(
            {
                "groups": list(outcomes.ok),
                "errors": {name: error_text(e) for name, e in outcomes.errors.items()},
            }
        )
    else:
        for name in outcomes.ok:
            print(f"deleted group {name}")
    return report_failures(args.prog, "groups", len(names), outcomes.errors)


def _refuse_if_active(admin: Admin, group_id: str) -> None:
    try:
        group = admin.describe_groups([group_id])[group_id]
    except GroupIdNotFoundError:
        return  # offsets may be set for a group that has none yet, as Kafka's tool does
    if group.members:
        raise UsageError(
            f"group {group_id!r} is not empty: it has {len(group.members)} active member(s)"
            f" (state {group.state}); stop its consumers first, offsets are reset only on an"
            " empty group"
        )


def _partitions(admin: Admin, topics: Sequence[str]) -> list[TopicPartition]:
    described = admin.describe_topics(topics)
    if len(described.errors) > 1:
        described.raise_for_errors()
    partitions = []
    for topic in topics:
        description = described[topic]  # raises that topic's own error
        partitions += [TopicPartition(topic, p.partition) for p in description.partitions]
    return partitions


def _targets(
    admin: Admin, args: argparse.Namespace, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Where each partition will resume: always inside [earliest, latest] as Kafka's own
    tool does (an offset outside the log would only be reset again by the consumer)."""
    earliest = admin.list_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST))
    latest = admin.list_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
    low = {tp: earliest[tp].offset for tp in partitions}
    high = {tp: latest[tp].offset for tp in partitions}
    if args.to_earliest:
        return low
    if args.to_latest:
        return high
    if args.to_offset is not None:
        return {tp: min(max(args.to_offset, low[tp]), high[tp]) for tp in partitions}
    spec = OffsetSpec.at(parse_datetime(args.to_datetime, "--to-datetime"))
    found = admin.list_offsets(dict.fromkeys(partitions, spec))
    # No record at or after that time: the group resumes at the end, as Kafka's tool does.
    return {tp: found[tp].offset if found[tp].offset >= 0 else high[tp] for tp in partitions}


def _reset(args: argparse.Namespace) -> int:
    if args.to_datetime is not None:
        parse_datetime(args.to_datetime, "--to-datetime")  # a bad date fails before connecting
    if args.to_offset is not None and args.to_offset < 0:
        raise UsageError(f"--to-offset {args.to_offset}: an offset is >= 0")
    topics: list[str] = list(dict.fromkeys(args.topic))
    with open_admin(args) as admin:
        _refuse_if_active(admin, args.group)
        partitions = _partitions(admin, topics)
        current = admin.list_group_offsets(args.group, partitions)
        targets = _targets(admin, args, partitions)
        errors: Mapping[TopicPartition, PykafError] = {}
        if not args.dry_run:
            altered = admin.alter_group_offsets(args.group, targets)
            errors = altered.errors
    done = [tp for tp in partitions if tp not in errors]
    now = {tp: current.ok[tp].committed if tp in current.ok else None for tp in partitions}
    if args.json:
        print_json(
            {
                "group": args.group,
                "dry_run": args.dry_run,
                "partitions": [
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "current": now[tp],
                        "new": targets[tp],
                    }
                    for tp in done
                ],
                "errors": {str(tp): error_text(e) for tp, e in errors.items()},
            }
        )
    else:
        rows = [(tp.topic, tp.partition, now[tp], targets[tp]) for tp in done]
        print(table(("TOPIC", "PARTITION", "CURRENT", "NEW"), rows))
        verb = "would reset (dry run, nothing changed)" if args.dry_run else "reset"
        print(f"{verb} group {args.group} on {len(done)} partition(s)")
    return report_failures(args.prog, "partitions", len(partitions), errors)


def _parser() -> CommandParser:
    parser = CommandParser(
        prog="pykaf groups", description="List, describe and delete consumer groups; reset offsets."
    )
    actions = parser.add_subparsers(dest="command", required=True, metavar="ACTION")

    add_action(actions.add_parser("list", help="every consumer group, with its state"), _list)

    describe = actions.add_parser(
        "describe", help="state, members and assignments; committed offset, end and lag"
    )
    add_action(describe, _describe)
    describe.add_argument("groups", nargs="+", metavar="GROUP")

    delete = actions.add_parser("delete", help="delete empty groups")
    add_action(delete, _delete)
    delete.add_argument("groups", nargs="+", metavar="GROUP")

    reset = actions.add_parser(
        "reset-offsets", help="move where an empty group resumes on the given topics"
    )
    add_action(reset, _reset)
    reset.add_argument("group", metavar="GROUP")
    reset.add_argument(
        "--topic", action="append", required=True, metavar="TOPIC", help="(repeatable)"
    )
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the start of each partition")
    to.add_argument("--to-latest", action="store_true", help="the end of each partition")
    to.add_argument(
        "--to-datetime",
        metavar="ISO",
        help="the first record at or after this time (ISO 8601; no zone given: UTC)",
    )
    to.add_argument(
        "--to-offset", type=int, metavar="N", help="this offset (kept inside each partition's log)"
    )
    reset.add_argument(
        "--dry-run", action="store_true", help="show the new offsets, change nothing"
    )
    return parser


def run_groups(argv: Sequence[str]) -> int:
    return parse_and_run(_parser(), argv)
