"""``pykaf metadata [-t TOPIC]``: brokers, topics, partitions, leaders, replicas and ISR,
laid out like ``kcat -L``, from one Metadata request (``pykaf.Client.metadata``).

``--json``: ``{"cluster_id", "controller_id", "brokers": [{"id", "host", "port",
"rack"}], "topics": [{"topic", "topic_id", "internal", "error", "partitions":
[{"partition", "leader", "leader_epoch", "replicas", "isr", "offline_replicas",
"error"}]}]}`` (``error``: null, or the broker's error for that topic or partition).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pykaf import ClusterMetadata, TopicInfo
from pykaf.cli._admin_options import add_action, open_client, parse_and_run
from pykaf.cli._connect import CommandParser
from pykaf.cli._tables import cell, error_text, print_json, report_failures

__all__ = ["run_metadata"]


def _topic_json(topic: TopicInfo) -> dict[str, Any]:
    return {
        "topic": topic.name,
        "topic_id": topic.topic_id,
        "internal": topic.internal,
        "error": error_text(topic.error) if topic.error else None,
        "partitions": [
            {
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline_replicas,
                "error": error_text(p.error) if p.error else None,
            }
            for p in topic.partitions
        ],
    }


def _print_kcat_style(metadata: ClusterMetadata, topics: Sequence[TopicInfo], asked: str) -> None:
    print(
        f"Metadata for {asked} (cluster id {cell(metadata.cluster_id)}, controller"
        f" {cell(metadata.controller_id)}):"
    )
    print(f" {len(metadata.brokers)} brokers:")
    for node_id, broker in sorted(metadata.brokers.items()):
        controller = " (controller)" if node_id == metadata.controller_id else ""
        rack = f" rack {broker.rack}" if broker.rack else ""
        print(f"  broker {node_id} at {broker.host}:{broker.port}{rack}{controller}")
    print(f" {len(topics)} topics:")
    for topic in topics:
        error = f": {error_text(topic.error)}" if topic.error else ""
        print(f'  topic "{topic.name}" with {len(topic.partitions)} partitions{error}')
        for p in topic.partitions:
            perror = f", error {error_text(p.error)}" if p.error else ""
            print(
                f"    partition {p.partition}, leader {p.leader}, replicas: {cell(p.replicas)},"
                f" isrs: {cell(p.isr)}{perror}"
            )


def _metadata(args: argparse.Namespace) -> int:
    wanted: list[str] | None = list(dict.fromkeys(args.topic)) if args.topic else None
    with open_client(args) as client:
        metadata = client.metadata(wanted)
    names = wanted if wanted is not None else sorted(metadata.topics)
    topics = [metadata.topics[n] for n in names if n in metadata.topics]
    if args.json:
        print_json(
            {
                "cluster_id": metadata.cluster_id,
                "controller_id": metadata.controller_id,
                "brokers": [
                    {"id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
                    for _, b in sorted(metadata.brokers.items())
                ],
                "topics": [_topic_json(t) for t in topics],
            }
        )
    else:
        asked = "all topics" if wanted is None else f"topic(s) {', '.join(wanted)}"
        _print_kcat_style(metadata, topics, asked)
    # A topic asked for by name that the cluster does not have is a failure, as kcat's is.
    errors = {t.name: t.error for t in topics if t.error is not None and wanted is not None}
    return report_failures(args.prog, "topics", len(names), errors)


def _parser() -> CommandParser:
    parser = CommandParser(
        prog="pykaf metadata",
        description="Brokers, topics, partitions, leaders, replicas and ISR (like kcat -L).",
    )
    add_action(parser, _metadata)
    parser.add_argument(
        "-t",
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="only this topic (repeatable; default: all)",
    )
    return parser


def run_metadata(argv: Sequence[str]) -> int:
    return parse_and_run(_parser(), argv)
