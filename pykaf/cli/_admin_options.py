"""What the admin subcommands (topics, groups, offsets, metadata, cluster) share: their
parsers (the connection options plus ``--json``), the ``pykaf.Admin`` they open, and
running one so that a failure is one line and exit status 1 (see ``_connect``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from pykaf import Admin, Client
from pykaf.cli._connect import (
    CommandParser,
    UsageError,
    add_connection_options,
    client_options,
    run_command,
)

__all__ = ["Action", "add_action", "open_admin", "open_client", "parse_and_run"]

Action = Callable[[argparse.Namespace], int]


def add_action(parser: argparse.ArgumentParser, action: Action) -> argparse.ArgumentParser:
    """Give a (sub)command's parser the shared options; it runs ``action``."""
    add_connection_options(parser)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of tables"
    )
    parser.set_defaults(action=action)
    return parser


def _settings(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    # -m (kcat's metadata wait, 10 s) bounds every admin request: a person waits on the
    # command, and a broker that is down should say so soon (the clients wait 30 s).
    if not args.metadata_timeout > 0:
        raise UsageError(f"-m {args.metadata_timeout:g}: give a number of seconds > 0")
    return {"client_id": "pykaf-cli", "request_timeout": args.metadata_timeout, **options}


def open_admin(args: argparse.Namespace) -> Admin:
    bootstrap, options = client_options(args)
    return Admin(bootstrap, **_settings(args, options))


def open_client(args: argparse.Namespace) -> Client:
    bootstrap, options = client_options(args)
    return Client(bootstrap, **_settings(args, options))


def parse_and_run(parser: CommandParser, argv: Sequence[str]) -> int:
    """Parse, then run the chosen action; a usage mistake (or ``--help``) returns its
    status instead of leaving the process, so ``main(argv)`` always returns."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    action: Action = args.action
    return run_command(action, args)
