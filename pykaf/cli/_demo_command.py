"""``pykaf demo``: its options; the job itself is ``pykaf.cli._demo``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pykaf.cli._connect import add_connection_options, client_options, run_command
from pykaf.cli._demo import DemoOptions, fresh_topic_name, run_demo

__all__ = ["run_demo_command"]


def run_demo_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pykaf demo",
        description=(
            "Start the embedded broker (or, with --bootstrap, use an existing cluster), write"
            " messages (each value unique: it carries its sequence number) with a live"
            " progress bar, read every partition's end offset back, then consume everything"
            " and check that each partition returned exactly the values written, in order."
            " Exit status 1 on any difference."
        ),
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--brokers", type=int, help="embedded brokers to start (default: 3)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per message")
    add_connection_options(parser)
    on_cluster = parser.add_argument_group("with --bootstrap (an existing cluster)")
    on_cluster.add_argument(
        "--topic", help="the topic to create and fill (default: a fresh pykaf-demo-XXXXXXXX)"
    )
    on_cluster.add_argument("--replication-factor", type=int, default=1)
    on_cluster.add_argument(
        "--keep-topic", action="store_true", help="do not delete the topic at the end"
    )
    args = parser.parse_args(argv)
    existing = args.bootstrap is not None or args.config_file is not None or args.properties
    if existing and args.brokers is not None:
        parser.error("--brokers sizes the embedded broker; with --bootstrap it has no use")
    if not existing and (args.topic or args.keep_topic or args.replication_factor != 1):
        parser.error("--topic, --replication-factor and --keep-topic need --bootstrap")
    return run_command(lambda _: _run_demo(parser, args, existing), args)


def _run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace, existing: bool) -> int:
    bootstrap, client = client_options(args) if existing else (None, {})
    if existing:  # -m bounds each request to that cluster (10 s; the clients wait 30 s)
        client["request_timeout"] = args.metadata_timeout
    try:
        opts = DemoOptions(
            messages=args.messages,
            partitions=args.partitions,
            brokers=args.brokers or 3,
            value_size=args.value_size,
            bootstrap=bootstrap,
            client=client,
            topic=args.topic or (fresh_topic_name() if existing else "pykaf-demo"),
            replication_factor=args.replication_factor,
            keep_topic=args.keep_topic,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return run_demo(opts)
