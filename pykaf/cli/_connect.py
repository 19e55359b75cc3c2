"""What every data and admin subcommand shares: where the cluster is, how to log in, and
how a failure reaches the user (one line on stderr saying what to do, exit status 1).

The options follow kcat: ``-b`` brokers, ``-F FILE`` a Kafka properties file,
``-X key=value`` one property, plus pykaf's own flags named after the client settings
(``--ssl-cafile`` is ``ssl_cafile``). Later wins: the file, then ``-X``, then the flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from pykaf import Client
from pykaf.cli._stop import sigterm_as_ctrl_c
from pykaf.errors import (
    BrokerConnectionError,
    KafkaTimeoutError,
    NoBrokersError,
    PykafError,
    SaslError,
    TlsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "CommandParser",
    "UsageError",
    "add_connection_options",
    "client_options",
    "parse_properties",
    "run_command",
    "topic_partitions",
]

DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
# A command line should say "no broker" soon; the clients' own default is 30 s.
DEFAULT_METADATA_TIMEOUT: Final = 10.0
BOOTSTRAP_ENV: Final = "PYKAF_BOOTSTRAP"

# Kafka (librdkafka) property names -> pykaf client settings. Only what pykaf can honour:
# an unknown key is refused rather than silently ignored (a typo in a password key would
# otherwise show up as an authentication failure).
_PROPERTIES: Final = {
    "security.protocol": "security_protocol",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "client.id": "client_id",
}
_BOOTSTRAP_KEYS: Final = ("bootstrap.servers", "metadata.broker.list")
_HOSTNAME_KEY: Final = "ssl.endpoint.identification.algorithm"

# The flags named after client settings (dest = the setting's name).
_FLAG_SETTINGS: Final = (
    "security_protocol",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
)


class UsageError(ValueError):
    """The command line (or a -F file) asks for something that cannot work."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line and exit status 1, like every other
    failure of a data command (argparse's own: the usage block and status 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(1)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``-b``, the security flags, ``-F``, ``-X`` and ``--debug``."""
    parser.set_defaults(prog=parser.prog)  # run_command's lines start with it
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-b",
        "--bootstrap",
        metavar="HOST:PORT[,...]",
        help=f"brokers to start from (default: ${BOOTSTRAP_ENV}, else {DEFAULT_BOOTSTRAP})",
    )
    group.add_argument(
        "-F",
        dest="config_file",
        metavar="FILE",
        help="Kafka properties file (bootstrap.servers=, security.protocol=, ssl.ca.location=,"
        " sasl.mechanism=, sasl.username=, sasl.password=, ...; # comments)",
    )
    group.add_argument(
        "-X",
        dest="properties",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one Kafka property, as in -F (repeatable)",
    )
    group.add_argument(
        "--security-protocol",
        metavar="PROTOCOL",
        help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    group.add_argument("--ssl-cafile", metavar="PEM", help="CA certificates to trust")
    group.add_argument("--ssl-certfile", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--ssl-keyfile", metavar="PEM", help="client certificate's key")
    group.add_argument("--ssl-password", metavar="PASSWORD", help="the key's password")
    group.add_argument(
        "--no-ssl-check-hostname",
        dest="ssl_check_hostname",
        action="store_false",
        default=None,
        help="accept a broker certificate issued for another host name",
    )
    group.add_argument(
        "--sasl-mechanism",
        metavar="MECHANISM",
        help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    group.add_argument("--sasl-username", metavar="USER")
    group.add_argument("--sasl-password", metavar="PASSWORD")
    group.add_argument(
        "-m",
        dest="metadata_timeout",
        type=float,
        default=DEFAULT_METADATA_TIMEOUT,
        metavar="SECONDS",
        help="wait this long for the cluster's first answer (as kcat's -m; default"
        f" {DEFAULT_METADATA_TIMEOUT:g})",
    )
    group.add_argument("--debug", action="store_true", help="on failure, print the whole traceback")


def parse_properties(lines: Iterable[str], source: str) -> dict[str, str]:
    """``key=value`` lines (blank lines and ``#`` comments skipped) as a dict; a line with
    no ``=`` is refused naming its place."""
    properties: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{source} line {number}: expected key=value, got {line!r}")
        properties[key.strip()] = value.strip()
    return properties


def _read_config_file(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-F {path}: cannot read it ({exc.strerror or exc})") from None
    return parse_properties(text.splitlines(), f"-F {path}")


def _apply_properties(
    properties: dict[str, str], source: str, options: dict[str, Any]
) -> str | None:
    """Fold Kafka properties into ``options``; returns bootstrap.servers if given."""
    bootstrap = None
    for key, value in properties.items():
        if key in _BOOTSTRAP_KEYS:
            bootstrap = value
        elif key == _HOSTNAME_KEY:
            if value.lower() not in ("none", "https", ""):
                raise UsageError(f"{source}: {key} must be 'https' or 'none', not {value!r}")
            options["ssl_check_hostname"] = value.lower() == "https"
        elif key in _PROPERTIES:
            options[_PROPERTIES[key]] = value
        else:
            known = ", ".join([*_BOOTSTRAP_KEYS, *_PROPERTIES, _HOSTNAME_KEY])
            raise UsageError(f"{source}: unknown property {key!r} (known: {known})")
    return bootstrap


def client_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(bootstrap, client settings) for ``pykaf.Producer`` / ``Consumer`` / ``Admin``
    from the parsed connection options. Raises ``UsageError`` for a bad -F/-X."""
    options: dict[str, Any] = {}
    bootstrap = None
    if args.config_file is not None:
        source = f"-F {args.config_file}"
        bootstrap = _apply_properties(_read_config_file(args.config_file), source, options)
    for item in args.properties:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-X {item!r}: expected KEY=VALUE")
        found = _apply_properties({key.strip(): value.strip()}, f"-X {key.strip()}", options)
        bootstrap = found or bootstrap
    for name in _FLAG_SETTINGS:
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.ssl_check_hostname is not None:
        options["ssl_check_hostname"] = args.ssl_check_hostname
    if options.get("security_protocol"):
        options["security_protocol"] = str(options["security_protocol"]).upper()
    bootstrap = args.bootstrap or bootstrap or os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    return bootstrap, options


def topic_partitions(
    bootstrap: str,
    options: dict[str, Any],
    topics: Sequence[str],
    *,
    timeout: float = DEFAULT_METADATA_TIMEOUT,
    create: bool = False,
) -> dict[str, list[int]]:
    """Each topic's partition numbers, asked once before any data moves, so a missing
    topic fails at once (a producer would wait ``max_block`` for it). ``create``: let a
    broker that auto-creates topics create them (as a producer's first record would)."""
    if not timeout > 0:
        raise UsageError(f"-m {timeout}: the wait is a number of seconds > 0")
    with Client(bootstrap, allow_auto_topic_creation=create, **options) as client:
        metadata = client.metadata(list(topics), timeout=timeout)
    found: dict[str, list[int]] = {}
    for name in topics:
        info = metadata.topics.get(name)
        if info is None or info.error is not None or not info.partitions:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        found[name] = [p.partition for p in info.partitions]
    return found


def _advice(exc: BaseException) -> str:
    """One line: what failed and what to do about it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UnknownTopicOrPartitionError):
        return f"{text}; check the topic name, or create it first (pykaf topics create NAME)"
    if isinstance(exc, TopicAuthorizationFailedError):
        return f"{text}; this user may not use the topic (ask for an ACL)"
    if isinstance(exc, TlsError):
        return f"TLS failed: {text}"  # the message names the setting to change
    if isinstance(exc, SaslError):
        return f"login failed: {text}"  # the message names the settings to check
    if isinstance(exc, NoBrokersError | BrokerConnectionError):
        return (
            f"no broker reachable: {text}; check -b/--bootstrap (or ${BOOTSTRAP_ENV}) and that"
            " the broker is up"
        )
    if isinstance(exc, KafkaTimeoutError):
        return f"timed out: {text}; is the broker up and the topic there?"
    if isinstance(exc, UsageError | ValueError | TypeError):
        return text
    return f"{type(exc).__name__}: {text}"


_EXPECTED: Final = (PykafError, ValueError, TypeError, OSError)


def run_command(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: its exit status, or 1 with one line on stderr for an expected
    failure (the traceback too with ``--debug``); Ctrl-C is 130 and quiet, SIGTERM does
    what Ctrl-C does and is 143 (``_stop``); a closed stdout
    (``| head``) ends quietly with 0, as kcat and the shell tools do."""
    debug = getattr(args, "debug", False)
    # pykaf logs what it retries at WARNING; a command says what failed in one line, so
    # below ERROR the logs show only with --debug.
    logging.basicConfig(
        level=logging.INFO if debug else logging.ERROR, format=f"{args.prog}: %(message)s"
    )
    try:
        with sigterm_as_ctrl_c() as term:
            return fn(args)
    except KeyboardInterrupt:
        return 128 + (term.signum or signal.SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except _EXPECTED as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{getattr(args, 'prog', 'pykaf')}: {_advice(exc)}\n")
        return 1


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; on a closed pipe that prints "Exception ignored":
    # point fd 1 at /dev/null so the final flush has somewhere to go.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
