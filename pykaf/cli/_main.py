"""Dispatch ``pykaf <command> ...`` to the command's own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pykaf.cli._connect import add_connection_options, client_options, run_command
from pykaf.cli._demo import DemoOptions, fresh_topic_name, run_demo

__all__ = ["main"]


def _demo(argv: Sequence[str]) -> int:
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


def _journal(argv: Sequence[str]) -> int:
    from pykaf.cli._journal import run_journal  # noqa: PLC0415  (only when asked for)

    return run_journal(argv)


def _broker(argv: Sequence[str]) -> int:
    from pykaf.broker.cli import main as broker_main  # noqa: PLC0415  (only when asked for)

    return broker_main(argv)


def _certs(argv: Sequence[str]) -> int:
    from pykaf.cli._certs import run_certs  # noqa: PLC0415  (only when asked for)

    return run_certs(argv)


def _produce(argv: Sequence[str]) -> int:
    from pykaf.cli._produce import run_produce  # noqa: PLC0415  (only when asked for)

    return run_produce(argv)


def _consume(argv: Sequence[str]) -> int:
    from pykaf.cli._consume import run_consume  # noqa: PLC0415  (only when asked for)

    return run_consume(argv)


def _topics(argv: Sequence[str]) -> int:
    from pykaf.cli._topics import run_topics  # noqa: PLC0415  (only when asked for)

    return run_topics(argv)


def _groups(argv: Sequence[str]) -> int:
    from pykaf.cli._groups import run_groups  # noqa: PLC0415  (only when asked for)

    return run_groups(argv)


def _offsets(argv: Sequence[str]) -> int:
    from pykaf.cli._offsets import run_offsets  # noqa: PLC0415  (only when asked for)

    return run_offsets(argv)


def _metadata(argv: Sequence[str]) -> int:
    from pykaf.cli._metadata import run_metadata  # noqa: PLC0415  (only when asked for)

    return run_metadata(argv)


def _cluster(argv: Sequence[str]) -> int:
    from pykaf.cli._cluster import run_cluster  # noqa: PLC0415  (only when asked for)

    return run_cluster(argv)


def _gateway(argv: Sequence[str]) -> int:
    from pykaf.cli._gateway import run_gateway  # noqa: PLC0415  (only when asked for)

    return run_gateway(argv)


_COMMANDS = {
    "demo": (_demo, "the main job: a million messages through the embedded broker"),
    "broker": (_broker, "run the embedded Kafka-compatible broker (see pykaf broker -h)"),
    "journal": (_journal, "inspect (or replay) a producer's journal directory"),
    "certs": (_certs, "write a throwaway CA, server and client certificates for local TLS"),
    "produce": (_produce, "produce records from stdin or files, one per line (like kcat -P)"),
    "consume": (_consume, "consume records to stdout (like kcat -C)"),
    "topics": (_topics, "list|describe|create|delete|alter topics"),
    "groups": (_groups, "list|describe|delete consumer groups; reset-offsets"),
    "offsets": (_offsets, "a topic's earliest/latest offsets"),
    "metadata": (_metadata, "brokers and topics, like kcat -L"),
    "cluster": (_cluster, "cluster id, controller, brokers"),
    "gateway": (_gateway, "serve Kafka over HTTP (kafboy's routes, Confluent REST v3)"),
}


def _usage() -> str:
    lines = ["usage: pykaf <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"pykaf: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return command[0](args[1:])
