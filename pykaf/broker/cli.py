"""The standalone broker: ``python -m pykaf.broker`` / ``pykaf broker``.

The first line on stdout (flushed) is the bootstrap list ``host:port,host:port,...``, so a
script can start the broker and read where it listens (with ``--control-port``, a second
line ``control=127.0.0.1:PORT`` names the fault-injection endpoint, see ``_control``; then
one line ``PROTOCOL=host:port,...`` per ``--listener``); it then runs until SIGTERM or
SIGINT and exits 0 after closing every listener and log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from pykaf.broker._cluster import Cluster
from pykaf.broker._control import ControlServer
from pykaf.broker._segments import LogCorruptionError
from pykaf.broker._server import (
    DEFAULT_CONNECTIONS_MAX_IDLE,
    DEFAULT_QUEUED_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_RECEIVE_TIMEOUT,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pykaf broker",
        description="Run an embedded Kafka-compatible cluster on this machine.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=9092,
        help="port of the first broker; the others take the next ones (0: free ports)",
    )
    parser.add_argument("--brokers", type=int, default=1, help="number of brokers (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on and advertise")
    parser.add_argument("--data-dir", default=None, help="keep logs here (default: in memory)")
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="with --data-dir: fsync every append before acknowledging it (survives an OS"
        " crash or power loss; without it a crash of the process loses nothing acknowledged)",
    )
    parser.add_argument(
        "--partitions", type=int, default=1, help="partitions of auto-created topics"
    )
    parser.add_argument(
        "--no-auto-create", action="store_true", help="do not create topics on first use"
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=None,
        help="serve fault injection (JSON over HTTP) on 127.0.0.1 at this port (0: a free"
        " one); its address is the second line of output, control=127.0.0.1:PORT",
    )
    parser.add_argument(
        "--queued-max-request-bytes",
        type=int,
        default=DEFAULT_QUEUED_MAX_REQUEST_BYTES,
        help="bytes partially received requests may hold per broker; connections needing"
        " more are paused until space frees (Kafka's queued.max.request.bytes;"
        " default %(default)s)",
    )
    parser.add_argument(
        "--connections-max-idle",
        type=float,
        default=DEFAULT_CONNECTIONS_MAX_IDLE,
        help="close connections idle this many seconds (Kafka's connections.max.idle.ms;"
        " default %(default)s)",
    )
    parser.add_argument(
        "--request-receive-timeout",
        type=float,
        default=DEFAULT_REQUEST_RECEIVE_TIMEOUT,
        help="close a connection whose started request has not fully arrived within this"
        " many seconds (default %(default)s)",
    )
    parser.add_argument(
        "--security-protocol",
        default="PLAINTEXT",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        type=str.upper,
        help="PLAINTEXT (default), SSL (TLS with --ssl-certfile and --ssl-keyfile),"
        " SASL_PLAINTEXT or SASL_SSL (with --user)",
    )
    parser.add_argument("--ssl-certfile", help="the brokers' certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="its private key (PEM, unencrypted)")
    parser.add_argument(
        "--ssl-cafile",
        help="require client certificates signed by this CA (PEM): mutual TLS",
    )
    parser.add_argument(
        "--sasl-mechanism",
        action="append",
        default=[],
        type=str.upper,
        metavar="MECHANISM",
        help="a SASL mechanism to accept: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (default: these"
        " three), OAUTHBEARER (unsigned JWT tokens, as Kafka's development default; no --user"
        " needed) (repeatable)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        type=_user,
        metavar="NAME:PASSWORD",
        help="a user of the SASL listeners (repeatable); the password is kept only as"
        " salted SCRAM credentials",
    )
    parser.add_argument(
        "--listener",
        action="append",
        default=[],
        metavar="PROTOCOL[:PORT]",
        type=_listener,
        help="another listener beside the main one (e.g. PLAINTEXT:9192 beside SSL at"
        " --port): port of the first broker, the others take the next ones (none or 0: free"
        " ports); its addresses are printed as PROTOCOL=host:port,... (repeatable)",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING, ...)"
    )
    return parser


def _listener(text: str) -> tuple[str, int]:
    name, _, port = text.partition(":")
    try:
        return name.upper(), int(port or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PROTOCOL[:PORT]") from None


def _user(text: str) -> tuple[str, str]:
    name, colon, password = text.partition(":")
    if not name or not colon or not password:
        # Not echoed: the text holds a password.
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD (both non-empty)")
    return name, password


async def _run(args: argparse.Namespace) -> None:
    users = dict(args.user)
    args.user = None  # the cluster keeps salted credentials only

    cluster = Cluster(
        args.brokers,
        port=args.port,
        host=args.host,
        data_dir=args.data_dir,
        fsync=args.fsync,
        default_partitions=args.partitions,
        auto_create_topics=not args.no_auto_create,
        queued_max_request_bytes=args.queued_max_request_bytes,
        connections_max_idle=args.connections_max_idle,
        request_receive_timeout=args.request_receive_timeout,
        security_protocol=args.security_protocol,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        ssl_cafile=args.ssl_cafile,
        extra_listeners=args.listener,
        users=users or None,
        **({"sasl_mechanisms": args.sasl_mechanism} if args.sasl_mechanism else {}),
    )
    users.clear()
    await cluster.start()
    control: ControlServer | None = None
    try:
        lines = [cluster.bootstrap]
        if args.control_port is not None:
            control = ControlServer(cluster, port=args.control_port)
            await control.start()
            lines.append(f"control={control.address}")
        lines += [f"{name}={cluster.bootstrap_for(name)}" for name in cluster.listeners[1:]]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        if control is not None:
            await control.stop()
        await cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    args = _parser().parse_args(argv)
    if args.brokers < 1:
        print("pykaf broker: --brokers must be at least 1", file=sys.stderr)
        return 2
    if args.fsync and args.data_dir is None:
        print("pykaf broker: --fsync needs --data-dir (logs are in memory)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_run(args))
    except LogCorruptionError as exc:
        print(f"pykaf broker: refusing to start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pykaf broker: cannot start: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pykaf broker: {exc}", file=sys.stderr)
        return 2
    return 0
