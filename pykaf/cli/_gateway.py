"""``pykaf gateway``: serve Kafka over HTTP (kafboy's routes, Confluent's REST v3).

Settings come from ``--config FILE`` (TOML: the gateway's settings, ``[producer]``,
``[security]``, ``[limits]``, ``[server]``) and the flags, which win over the file. The
Kafka side takes the same connection options as every data command (``-b``, ``-F``,
``-X``, ``--security-protocol``...). Once listening, the URL is printed on stdout (one
line, so a script can wait for it); the logs, one JSON access line per request
included, go to stderr. SIGTERM or Ctrl-C stops it gracefully (exit status 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

from pykaf.cli._connect import (
    BOOTSTRAP_ENV,
    DEFAULT_BOOTSTRAP,
    CommandParser,
    add_connection_options,
    client_options,
    run_command,
)

__all__ = ["run_gateway"]

_INSTALL: Final = "pip install 'pykaf[gateway]'"
_CUSTODY: Final = ("memory", "journal", "journal_sync")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="pykaf gateway",
        description=(
            "Serve Kafka over HTTP: kafboy's routes (POST /async/TOPIC, /sync, /batch/...,"
            " /safe/...) and Confluent's REST v3, with /healthz and /metrics. With"
            " --journal-dir, records accepted during a Kafka outage wait on disk and are"
            " sent when it returns. Prints the URL once listening; SIGTERM stops it"
            " gracefully."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file: the gateway's settings (bootstrap, journal_dir, ...) and the"
        " [producer], [security], [limits] and [server] tables; flags win over it",
    )
    served = parser.add_argument_group("serving")
    served.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    served.add_argument("--port", type=int, help="port to listen on (default 8080; 0: a free one)")
    served.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    served.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    served.add_argument("--tls-ca", metavar="PEM", help="CA that verifies client certificates")
    served.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        help="refuse TLS clients without a certificate signed by --tls-ca",
    )
    served.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve beyond loopback without authentication (anyone may write to Kafka)",
    )
    served.add_argument(
        "--graceful-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take to finish (default 30)",
    )
    served.add_argument(
        "--close-timeout",
        type=float,
        metavar="SECONDS",
        help="then, how long the producers may take to flush (default 30; what is left"
        " stays in the journal)",
    )
    served.add_argument(
        "--no-access-log", action="store_true", help="no JSON line per request on stderr"
    )
    kept = parser.add_argument_group("custody")
    kept.add_argument("--journal-dir", metavar="DIR", help="keep accepted records on disk here")
    kept.add_argument(
        "--async-custody",
        choices=_CUSTODY,
        help="default custody of /async and /batch/async (default: journal with"
        " --journal-dir, else memory)",
    )
    kept.add_argument(
        "--sync-custody", choices=_CUSTODY, help="default custody of the acknowledged routes"
    )
    kept.add_argument("--cluster-id", help="the cluster id REST v3 shows (default: Kafka's)")
    add_connection_options(parser)
    return parser


# Flag (argparse dest) -> the configuration key it overrides.
_OVERRIDES: Final = {
    "host": "server.host",
    "port": "server.port",
    "graceful_timeout": "server.graceful_timeout",
    "close_timeout": "close_timeout",
    "journal_dir": "journal_dir",
    "async_custody": "async_custody",
    "sync_custody": "sync_custody",
    "cluster_id": "cluster_id",
    "tls_cert": "security.tls_certfile",
    "tls_key": "security.tls_keyfile",
    "tls_ca": "security.tls_ca_certs",
}


def _overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(overrides, defaults) for ``load_config``: the flags given, and the Kafka
    bootstrap from the environment or the default when neither flags nor file set it."""
    overrides = {key: getattr(args, dest) for dest, key in _OVERRIDES.items()}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.tls_require_client_cert:
        overrides["security.tls_client_cert"] = "required"
    if args.allow_anonymous:
        overrides["security.allow_anonymous"] = True
    bootstrap, kafka = client_options(args)
    for name, value in kafka.items():
        overrides[f"producer.{name}"] = value
    fallback = os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    if args.bootstrap is not None or bootstrap != fallback:  # -b, or -F/-X's
        overrides["bootstrap"] = bootstrap
    return overrides, {"bootstrap": fallback}


def _log_to_stderr(args: argparse.Namespace) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    # run_command's handler says "pykaf gateway: message"; a server's log wants the
    # level and the source too.
    for handler in root.handlers:
        handler.setFormatter(
            logging.Formatter("pykaf gateway: %(levelname)s %(name)s: %(message)s")
        )
    access = logging.getLogger("pykaf.gateway.access")
    access.propagate = False  # the JSON lines alone, without the prefix
    access.setLevel(logging.CRITICAL if args.no_access_log else logging.INFO)
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(plain)


def _announce(url: str) -> None:
    print(url, flush=True)


def _serve(args: argparse.Namespace) -> int:
    try:
        from pykaf.gateway import load_config, serve  # noqa: PLC0415  (only when asked for)

        overrides, defaults = _overrides(args)
        settings, server = load_config(args.config, overrides, defaults=defaults)
        _log_to_stderr(args)
        serve(settings, server, on_listening=_announce)
    except ImportError as exc:  # the gateway extra is missing
        text = str(exc) if "pip install" in str(exc) else f"{exc.name or exc} is missing"
        sys.stderr.write(f"pykaf gateway: {text}; the server needs: {_INSTALL}\n")
        return 1
    return 0


def run_gateway(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    return run_command(_serve, args)
