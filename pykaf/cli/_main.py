"""Dispatch ``pykaf <command> ...`` to the command's own module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(argv: Sequence[str]) -> int:
    from pykaf.cli._demo_command import run_demo_command  # noqa: PLC0415  (only when asked for)

    return run_demo_command(argv)


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


def _without_kio_test_strategies() -> None:
    """Import kio's phantom types with ``hypothesis`` hidden, then show it again.

    When hypothesis is installed, kio registers a hypothesis strategy for each of its
    primitive types as they are defined: ~0.3 s of every command's start (a third of
    ``pykaf produce``'s time for a million lines). A command never generates test data.
    Only for a process the command owns (``main()`` reading ``sys.argv``), and only when
    neither kio nor hypothesis is loaded yet: a test run that called ``main([...])`` or
    uses hypothesis keeps kio's strategies."""
    if "kio.static._phantom" in sys.modules or "hypothesis" in sys.modules:
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import kio.static._phantom  # noqa: F401, PLC0415
    finally:
        del sys.modules["hypothesis"]


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        _without_kio_test_strategies()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"pykaf: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return command[0](args[1:])
