"""How the admin subcommands print: aligned tables for people, one JSON document with
``--json`` (stable keys, documented per command), and partial failures named on stderr."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TextIO

from pykaf.errors import (
    GroupIdNotFoundError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    NonEmptyGroupError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

__all__ = ["cell", "error_text", "hint", "print_json", "report_failures", "table"]


def cell(value: object) -> str:
    """One value as a table shows it: nothing known is "-", lists are comma-joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) if value else "-"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, indent: str = "") -> str:
    """Columns aligned on the widest cell; numbers right-aligned, text left-aligned."""
    raw = [list(row) for row in rows]
    body = [[cell(v) for v in row] for row in raw]
    # A column of numbers (some perhaps unknown: "-") lines up on the right.
    numeric = [
        any(_is_number(row[i]) for row in raw)
        and all(_is_number(row[i]) or row[i] is None for row in raw)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in body)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(f"not JSON: {type(value).__name__}")


def print_json(document: Mapping[str, Any], out: TextIO | None = None) -> None:
    """One JSON document on stdout; the keys keep the order the command built them in."""
    print(json.dumps(document, indent=2, default=_jsonable), file=out or sys.stdout)


# What to do about the item errors an admin command meets most (one line each).
_HINTS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (
        UnknownTopicOrPartitionError,
        "check the topic name (pykaf topics list), or create it (pykaf topics create)",
    ),
    (TopicAlreadyExistsError, "pick another name, or delete it first (pykaf topics delete)"),
    (GroupIdNotFoundError, "check the group name (pykaf groups list)"),
    (NonEmptyGroupError, "the group has members: stop its consumers first"),
    (InvalidPartitionsError, "give --partitions a count the broker accepts"),
    (InvalidReplicationFactorError, "give --replication-factor at most the number of brokers"),
    (InvalidConfigError, "check the config name and value (pykaf topics describe --all-configs)"),
)


def hint(error: BaseException) -> str:
    """``error``'s text and, for the usual mistakes, what to do about it."""
    for kind, advice in _HINTS:
        if isinstance(error, kind):
            return f"{error_text(error)}; {advice}"
    return error_text(error)


def error_text(error: BaseException) -> str:
    """An error on one line: its type (it names the Kafka error) and its message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report_failures(prog: str, noun: str, asked: int, errors: Mapping[Any, BaseException]) -> int:
    """Name every failed item on one stderr line; the exit status (1 if any failed).

    The items that succeeded have already been printed: one failure must not hide them."""
    if not errors:
        return 0
    if asked == 1:
        (error,) = errors.values()
        sys.stderr.write(f"{prog}: {hint(error)}\n")
    else:
        named = " | ".join(f"{item}: {hint(error)}" for item, error in errors.items())
        sys.stderr.write(f"{prog}: {len(errors)} of {asked} {noun} failed: {named}\n")
    return 1
