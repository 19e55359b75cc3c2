"""``pykaf produce TOPIC [FILE...]``: records from stdin or files, as ``kcat -P`` does.

One record per line (or per ``-D`` delimiter); ``-K DELIM`` splits a key off each record
at its first DELIM; ``-H name=value`` adds headers; ``--json`` reads one JSON object per
line instead (``value``, ``key``, ``headers``, ``partition``: what ``pykaf consume --json``
writes). Input is read in large binary chunks and handed to ``Producer.produce_batch``
a chunk at a time: no text decoding, no per-record call or future; failures are counted
by the producer's ``on_error``. Exit status 1 when any record failed, with the count.
Ctrl-C or SIGTERM (``_stop``) stops the reading; what was read is flushed (every record
read gets its report, failures counted as above), then exit status 130 or 143.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Final

from pykaf import Producer
from pykaf.cli._connect import (
    CommandParser,
    UsageError,
    add_connection_options,
    client_options,
    run_command,
    topic_partitions,
)
from pykaf.cli._progress import Progress
from pykaf.cli._records_json import record_from_json
from pykaf.cli._stop import Stop, stop_signals

__all__ = ["parse_delimiter", "run_produce"]

_CHUNK: Final = 1 << 20  # bytes read at a time
_CODECS: Final = ("none", "gzip", "snappy", "lz4", "zstd")
# Bigger batches than the producer's default (256 KiB), toward librdkafka's batch.size (1 MB):
# a command line pushes one stream as fast as it can; fewer, larger requests win.
_BATCH_BYTES: Final = 512 * 1024
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def parse_delimiter(text: str, option: str) -> bytes:
    """A delimiter as typed on a command line: ``\\n``, ``\\t``, ``\\r``, ``\\0`` and
    ``\\\\`` are escapes, anything else is itself (UTF-8)."""
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, None)
        if escaped is None or escaped not in _ESCAPES:
            raise UsageError(f"{option} {text!r}: unknown escape; use \\n, \\t, \\r, \\0 or \\\\")
        out.append(_ESCAPES[escaped])
    if not out:
        raise UsageError(f"{option} needs a delimiter (at least one character)")
    return "".join(out).encode()


def _parse_header(text: str) -> tuple[str, bytes]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"-H {text!r}: expected name=value (a header name, '=', its value)")
    return name, value.encode()


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="pykaf produce",
        usage="pykaf produce [options] TOPIC [FILE ...]  (or: -t TOPIC [FILE ...])",
        description="Produce records read from stdin (or FILEs) to TOPIC: one per line.",
    )
    parser.add_argument(
        "operands",
        nargs="*",
        metavar="TOPIC [FILE]",
        help="the topic, then files to read instead of stdin (- for stdin)",
    )
    parser.add_argument(
        "-t", dest="topic_flag", metavar="TOPIC", help="the topic, as kcat spells it"
    )
    parser.add_argument(
        "-D", dest="delimiter", default="\\n", help="record delimiter (default \\n; \\t, \\0...)"
    )
    parser.add_argument("-K", dest="key_delimiter", help="split key and value at the first DELIM")
    parser.add_argument("-k", dest="key", help="the key of every record")
    parser.add_argument(
        "-H",
        dest="headers",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header on every record (repeatable)",
    )
    parser.add_argument("-p", dest="partition", type=int, help="produce to this partition")
    parser.add_argument(
        "-z", dest="compression", choices=_CODECS, default="none", help="compression codec"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="each line is a JSON object: value, key, headers, partition (strings as UTF-8)",
    )
    add_connection_options(parser)
    return parser


def _chunks(paths: Sequence[str], stop: Stop) -> Iterator[bytes]:
    """The input's bytes, a large chunk at a time."""
    if not paths:
        yield from _read_all(sys.stdin.buffer, stop)
        return
    for path in paths:
        if path == "-":
            yield from _read_all(sys.stdin.buffer, stop)
            continue
        try:
            stream = open(path, "rb")  # noqa: SIM115  (closed below, after the generator)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        with stream:
            yield from _read_all(stream, stop)


def _read_all(stream: BinaryIO, stop: Stop) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)
    while True:
        with stop.waits():  # a stop raises here: a pipe may stay open and quiet for ever
            chunk = read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _pieces(chunks: Iterator[bytes], delimiter: bytes) -> Iterator[list[bytes]]:
    """The records, a list per chunk; a record cut by a chunk's end is completed from the
    next chunk; bytes after the last delimiter are a record too; empty records (blank
    lines) are skipped. kcat -P does the same."""
    tail = b""
    for chunk in chunks:
        pieces = (tail + chunk if tail else chunk).split(delimiter)
        tail = pieces.pop()
        if not all(pieces):  # a blank line (an empty bytes is false): rare, so filter then
            pieces = [piece for piece in pieces if piece]
        if pieces:
            yield pieces
    if tail:
        yield [tail]


def _shaper(args: argparse.Namespace) -> Callable[[list[bytes]], list[Any]] | None:
    """How a list of raw records becomes ``produce_batch`` items; None: as they are."""
    headers = [_parse_header(h) for h in args.headers] or None
    if args.json:
        partition = args.partition
        return lambda lines: [record_from_json(line, partition) for line in lines if line.strip()]
    key_delimiter = (
        None if args.key_delimiter is None else parse_delimiter(args.key_delimiter, "-K")
    )
    constant_key = None if args.key is None else args.key.encode()
    if key_delimiter is None and constant_key is None and headers is None:
        return None
    if key_delimiter is None:
        if headers is None:
            return lambda lines: [(constant_key, line) for line in lines]
        return lambda lines: [
            {"key": constant_key, "value": line, "headers": headers} for line in lines
        ]

    def split(lines: list[bytes]) -> list[Any]:
        items: list[Any] = []
        append = items.append
        for line in lines:
            key, sep, value = line.partition(key_delimiter)
            pair = (key, value) if sep else (constant_key, line)
            append(
                pair if headers is None else {"key": pair[0], "value": pair[1], "headers": headers}
            )
        return items

    return split


class _Failures:
    """The producer's ``on_error``: a count and the first error (not a list of a million)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: BaseException | None = None

    def add(self, record: Any, error: BaseException) -> None:
        # Called on the producer's one loop thread only: no lock needed for the count.
        self.count += 1
        if self.first is None:
            self.first = error


def _produce(args: argparse.Namespace) -> int:
    delimiter = parse_delimiter(args.delimiter, "-D")
    if args.json and (args.key_delimiter is not None or args.key is not None):
        raise UsageError("--json takes keys from the JSON objects: drop -K/-k")
    shape = _shaper(args)
    if args.partition is not None and args.partition < 0:
        raise UsageError(f"-p {args.partition}: a partition is a number >= 0")
    bootstrap, options = client_options(args)
    partitions = topic_partitions(
        bootstrap, options, [args.topic], timeout=args.metadata_timeout, create=True
    )[args.topic]
    if args.partition is not None and args.partition not in partitions:
        raise UsageError(
            f"-p {args.partition}: topic {args.topic!r} has partitions 0..{len(partitions) - 1}"
        )
    failures = _Failures()

    progress = (
        Progress(None, out=sys.stderr, label=f"-> {args.topic}") if sys.stderr.isatty() else None
    )
    sent = 0
    # Ctrl-C or SIGTERM (``_stop``): reading stops, and what was read is flushed.
    with (
        stop_signals() as stop,
        Producer(
            bootstrap,
            on_error=failures.add,
            compression=args.compression,
            batch_size=_BATCH_BYTES,
            linger=0.01,
            **options,
        ) as producer,
    ):
        produce_batch = producer.produce_batch
        topic, partition = args.topic, args.partition
        with (
            progress if progress is not None else contextlib.nullcontext(),
            contextlib.suppress(KeyboardInterrupt),  # the stop, raised while reading
        ):
            for pieces in _pieces(_chunks(args.files, stop), delimiter):
                items = pieces if shape is None else shape(pieces)
                produce_batch(topic, items, partition=partition)
                sent += len(items)
                if progress is not None:
                    progress.advance(len(items))
                if stop.requested:
                    break
        producer.flush()
    if failures.count:
        first = " ".join(str(failures.first).split())
        sys.stderr.write(
            f"pykaf produce: {failures.count:,} of {sent:,} record(s) failed; the first: {first}\n"
        )
    if stop.requested:
        return 128 + stop.signum  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports
    return 1 if failures.count else 0


def run_produce(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # ``TOPIC [FILE...]``, or kcat's ``-t TOPIC [FILE...]``: then every operand is a file.
    if args.topic_flag is not None:
        args.topic, args.files = args.topic_flag, args.operands
    elif args.operands:
        args.topic, args.files = args.operands[0], args.operands[1:]
    else:
        parser.error("which topic? pykaf produce TOPIC [FILE...] (or -t TOPIC, as kcat)")
    return run_command(_produce, args)
