"""``pykaf topics list|describe|create|delete|alter``: topics and their configs, through
``pykaf.Admin``.

``--json`` documents (keys in this order):
- list: ``{"topics": [{"name", "topic_id", "internal", "partitions"}]}``
- describe: ``{"topics": [{"name", "topic_id", "internal", "partitions": [{"partition",
  "leader", "leader_epoch", "replicas", "isr", "offline_replicas"}], "configs": {NAME:
  {"value", "source", "is_default", "read_only", "sensitive"}}}], "errors": {NAME: text}}``
- create: ``{"validate_only", "topics": [{"name", "topic_id", "partitions",
  "replication_factor", "configs"}], "errors"}``
- delete: ``{"topics": [{"name", "topic_id"}], "errors"}``
- alter: ``{"validate_only", "topics": [{"name", "changes": [{"name", "op", "value"}],
  "partitions"}], "errors"}``
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from pykaf import Admin, ConfigChange, ConfigResource, NewTopic, PykafError
from pykaf.admin import ConfigEntry, TopicDescription
from pykaf.cli._admin_options import add_action, open_admin, parse_and_run
from pykaf.cli._connect import CommandParser, UsageError
from pykaf.cli._tables import cell, error_text, print_json, report_failures, table

__all__ = ["parse_assignment", "run_topics"]


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    """``NAME=VALUE`` as (name, value); anything else is a ``UsageError`` naming the flag."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{flag} {text!r}: expected NAME=VALUE, e.g. {flag} retention.ms=60000")
    return name.strip(), value


def _list(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        topics = admin.list_topics(internal=args.internal)
    listed = [topics[name] for name in sorted(topics)]
    if args.json:
        print_json(
            {
                "topics": [
                    {
                        "name": t.name,
                        "topic_id": t.topic_id,
                        "internal": t.internal,
                        "partitions": t.partitions,
                    }
                    for t in listed
                ]
            }
        )
    elif listed:
        rows = [(t.name, t.partitions, t.internal, t.topic_id) for t in listed]
        print(table(("TOPIC", "PARTITIONS", "INTERNAL", "TOPIC ID"), rows))
    else:
        print("no topics")
    return 0


def _configs_json(configs: Mapping[str, ConfigEntry]) -> dict[str, Any]:
    return {
        name: {
            "value": entry.value,
            "source": entry.source,
            "is_default": entry.is_default,
            "read_only": entry.read_only,
            "sensitive": entry.sensitive,
        }
        for name, entry in sorted(configs.items())
    }


def _description_json(
    description: TopicDescription, configs: Mapping[str, ConfigEntry]
) -> dict[str, Any]:
    return {
        "name": description.name,
        "topic_id": description.topic_id,
        "internal": description.internal,
        "partitions": [
            {
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline_replicas,
            }
            for p in description.partitions
        ],
        "configs": _configs_json(configs),
    }


def _print_description(
    description: TopicDescription, configs: Mapping[str, ConfigEntry], all_configs: bool
) -> None:
    replication = len(description.partitions[0].replicas) if description.partitions else 0
    internal = "  internal" if description.internal else ""
    print(
        f"topic {description.name}  id {cell(description.topic_id)}  partitions"
        f" {len(description.partitions)}  replication factor {replication}{internal}"
    )
    rows = [
        (p.partition, p.leader, p.leader_epoch, p.replicas, p.isr, p.offline_replicas)
        for p in description.partitions
    ]
    print(table(("PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"), rows, indent="  "))
    which = "all" if all_configs else "non-default"
    if configs:
        print(f"  configs ({which}):")
        rows_c = [
            (e.name, "(sensitive)" if e.sensitive else e.value, e.source) for e in configs.values()
        ]
        print(table(("NAME", "VALUE", "SOURCE"), sorted(rows_c), indent="    "))
    else:
        print(f"  configs ({which}): none")


def _describe(args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.names))
    with open_admin(args) as admin:
        described = admin.describe_topics(names)
        errors: dict[str, PykafError] = dict(described.errors)
        resources = {name: ConfigResource("topic", name) for name in described.ok}
        configs = admin.describe_configs(resources.values()) if resources else None
    shown: list[tuple[TopicDescription, Mapping[str, ConfigEntry]]] = []
    for name, description in described.ok.items():
        assert configs is not None
        resource = resources[name]
        if resource in configs.errors:
            errors[name] = configs.errors[resource]
            continue
        entries = configs.ok[resource]
        if not args.all_configs:
            entries = {k: e for k, e in entries.items() if not e.is_default}
        shown.append((description, dict(sorted(entries.items()))))
    if args.json:
        print_json(
            {
                "topics": [_description_json(d, c) for d, c in shown],
                "errors": {name: error_text(e) for name, e in errors.items()},
            }
        )
    else:
        for description, entries in shown:
            _print_description(description, entries, args.all_configs)
    return report_failures(args.prog, "topics", len(names), errors)


def _create(args: argparse.Namespace) -> int:
    configs = dict(parse_assignment(c, "--config") for c in args.config)
    names: list[str] = list(dict.fromkeys(args.names))
    topics = [
        NewTopic(
            name=name,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            configs=configs,
        )
        for name in names
    ]
    with open_admin(args) as admin:
        outcomes = admin.create_topics(topics, validate_only=args.validate_only)
    if args.json:
        print_json(
            {
                "validate_only": args.validate_only,
                "topics": [
                    {
                        "name": t.name,
                        "topic_id": t.topic_id,
                        "partitions": t.partitions,
                        "replication_factor": t.replication_factor,
                        "configs": dict(sorted(t.configs.items())),
                    }
                    for t in outcomes.ok.values()
                ],
                "errors": {name: error_text(e) for name, e in outcomes.errors.items()},
            }
        )
    else:
        verb = "would create" if args.validate_only else "created"
        for t in outcomes.ok.values():
            print(
                f"{verb} topic {t.name}: {t.partitions} partition(s), replication factor"
                f" {t.replication_factor}"
            )
    return report_failures(args.prog, "topics", len(names), outcomes.errors)


def _delete(args: argparse.Namespace) -> int:
    names: list[str] = list(dict.fromkeys(args.names))
    with open_admin(args) as admin:
        outcomes = admin.delete_topics(names)
    if args.json:
        print_json(
            {
                "topics": [{"name": n, "topic_id": i} for n, i in outcomes.ok.items()],
                "errors": {name: error_text(e) for name, e in outcomes.errors.items()},
            }
        )
    else:
        for name in outcomes.ok:
            print(f"deleted topic {name}")
    return report_failures(args.prog, "topics", len(names), outcomes.errors)


def _changes(args: argparse.Namespace) -> list[ConfigChange]:
    changes = [ConfigChange(*parse_assignment(c, "--config")) for c in args.config]
    changes += [ConfigChange(name, op="delete") for name in args.delete_config]
    for flag, op in (("--append-config", "append"), ("--subtract-config", "subtract")):
        values = getattr(args, flag[2:].replace("-", "_"))
        changes += [ConfigChange(*parse_assignment(c, flag), op=op) for c in values]  # type: ignore[arg-type]
    return changes


def _alter_topics(
    admin: Admin, args: argparse.Namespace, names: Sequence[str], changes: list[ConfigChange]
) -> dict[str, PykafError]:
    errors: dict[str, PykafError] = {}
    if args.partitions is not None:
        grown = admin.create_partitions(
            dict.fromkeys(names, args.partitions), validate_only=args.validate_only
        )
        errors.update(grown.errors)
    if changes:
        wanted = {ConfigResource("topic", n): changes for n in names if n not in errors}
        if wanted:
            altered = admin.alter_configs(wanted, validate_only=args.validate_only)
            errors.update({r.name: e for r, e in altered.errors.items()})
    return errors


def _alter(args: argparse.Namespace) -> int:
    changes = _changes(args)
    if not changes and args.partitions is None:
        raise UsageError(
            "nothing to change: give --config, --delete-config, --append-config,"
            " --subtract-config or --partitions"
        )
    names: list[str] = list(dict.fromkeys(args.names))
    with open_admin(args) as admin:
        errors = _alter_topics(admin, args, names, changes)
    done = [n for n in names if n not in errors]
    if args.json:
        print_json(
            {
                "validate_only": args.validate_only,
                "topics": [
                    {
                        "name": name,
                        "changes": [
                            {"name": c.name, "op": c.op, "value": c.value} for c in changes
                        ],
                        "partitions": args.partitions,
                    }
                    for name in done
                ],
                "errors": {name: error_text(e) for name, e in errors.items()},
            }
        )
    else:
        verb = "would alter" if args.validate_only else "altered"
        said = [f"{c.op} {c.name}" + ("" if c.value is None else f"={c.value}") for c in changes]
        if args.partitions is not None:
            said.insert(0, f"partitions -> {args.partitions}")
        for name in done:
            print(f"{verb} topic {name}: {', '.join(said)}")
    return report_failures(args.prog, "topics", len(names), errors)


def _parser() -> CommandParser:
    parser = CommandParser(
        prog="pykaf topics", description="List, describe, create, delete and alter topics."
    )
    actions = parser.add_subparsers(dest="command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every topic, with its partition count")
    add_action(listing, _list)
    listing.add_argument("--internal", action="store_true", help="include __consumer_offsets & co")

    describe = actions.add_parser("describe", help="partitions, leaders, replicas, ISR and configs")
    add_action(describe, _describe)
    describe.add_argument("names", nargs="+", metavar="NAME")
    describe.add_argument(
        "--all-configs", action="store_true", help="every config, not only the non-default ones"
    )

    create = actions.add_parser("create", help="create topics")
    add_action(create, _create)
    create.add_argument("names", nargs="+", metavar="NAME")
    create.add_argument("--partitions", type=int, default=-1, help="(default: the broker's)")
    create.add_argument(
        "--replication-factor", type=int, default=-1, help="(default: the broker's)"
    )
    create.add_argument(
        "--config", action="append", default=[], metavar="NAME=VALUE", help="(repeatable)"
    )
    create.add_argument("--validate-only", action="store_true", help="check, create nothing")

    delete = actions.add_parser("delete", help="delete topics")
    add_action(delete, _delete)
    delete.add_argument("names", nargs="+", metavar="NAME")

    alter = actions.add_parser(
        "alter", help="change topic configs (incrementally) or grow partitions"
    )
    add_action(alter, _alter)
    alter.add_argument("names", nargs="+", metavar="NAME")
    for flag, metavar, text in (
        ("--config", "NAME=VALUE", "set a config"),
        ("--delete-config", "NAME", "return a config to its default"),
        ("--append-config", "NAME=VALUE", "add a value to a list config"),
        ("--subtract-config", "NAME=VALUE", "remove a value from a list config"),
    ):
        alter.add_argument(
            flag, action="append", default=[], metavar=metavar, help=f"{text} (repeatable)"
        )
    alter.add_argument("--partitions", type=int, help="grow to this many partitions (a total)")
    alter.add_argument("--validate-only", action="store_true", help="check, change nothing")
    return parser


def run_topics(argv: Sequence[str]) -> int:
    return parse_and_run(_parser(), argv)
