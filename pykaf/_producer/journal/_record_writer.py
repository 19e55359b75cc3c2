"""Which writer puts a RECORD entry into a mapped segment: the C twin of
``_format.encode_record_into_python`` when the optional extension has it, else that
function. Apart from ``_format`` because choosing reads the environment and imports the
extension: the format itself stays bytes in, bytes out (an import contract says so).

Written in C because it is the journal's per-record cost: 0.20 us for a 1 KiB record
against 1.14 us in Python (benchmarks/custody.py shows the level's throughput).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from pykaf._producer.journal._format import encode_record_into_python

__all__ = [
    "FastAppend",
    "FastIdentity",
    "JournalTail",
    "RecordInto",
    "Tail",
    "encode_record_into",
    "no_fast_append",
    "no_fast_identity",
    "record_into_in_c",
]


class FastAppend(Protocol):
    """(serial, topic, partition, timestamp_ms, key, value, headers=None) -> where the
    RECORD entry ends, or -1 (nothing written: the store's locked path must do it)."""

    def __call__(
        self,
        serial: int,
        topic: str,
        partition: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
        /,
    ) -> int: ...


# (topic, partition, producer_id, epoch, base_sequence, first_serial, last_serial,
#  record_count) -> where the IDENTITY entry ends, or -1 (nothing written)
FastIdentity = Callable[[str, int, int, int, int, int, int, int], int]
# What ``settle`` hands back: (pos, next_serial, bytes written, runs, identities).
TailRun = tuple[str, int, int, int]
TailIdentity = tuple[str, int, int, int, int, int, int, int]
Settled = tuple[int, int, int, list[TailRun] | None, list[TailIdentity] | None]
RecordInto = Callable[[memoryview, int, int, int, bytes, int, int, bytes | None, bytes | None], int]


def _load_c_module() -> Any:
    # The switch pykaf.protocol._records honours: PYKAF_NO_EXTENSIONS forces pure Python.
    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        return None
    try:
        from pykaf.protocol import _crecords  # noqa: PLC0415
    except ImportError:
        return None
    return _crecords


_crecords = _load_c_module()
# Built without them: an older build, or a CPU family without the CRC32C instruction.
_c_record_into: RecordInto | None = getattr(_crecords, "journal_record_into", None)


class Tail(Protocol):
    """``_crecords.JournalTail``: the store's appends without its lock (see its comment
    in ``_crecords.c`` and ``_segments``)."""

    @property
    def armed(self) -> bool: ...
    @property
    def next_serial(self) -> int: ...
    @property
    def added(self) -> int: ...
    @property
    def records(self) -> int: ...
    def arm(
        self, target: memoryview, pos: int, limit: int, next_serial: int, drop_at: int
    ) -> None: ...

    # (serial, topic, partition, timestamp_ms, key, value) -> where the entry ends, or -1
    append: FastAppend
    # The same for an IDENTITY entry (the sender's, before a Produce request).
    identity: FastIdentity

    def settle(self) -> Settled | None: ...
    def applied(self) -> None: ...


JournalTail: Callable[[], Tail] | None = getattr(_crecords, "JournalTail", None)
"""The C type of ``Tail``, or None without the extension."""


# The store's ``fast_append`` and ``fast_identity`` without the extension: nothing is
# ever written without the lock (-1), so every append takes the locked path.
def no_fast_append(*_entry: object) -> int:
    """``FastAppend`` without the extension: -1 for every entry."""
    return -1


def no_fast_identity(
    topic: str,
    partition: int,
    producer_id: int,
    epoch: int,
    base_sequence: int,
    first_serial: int,
    last_serial: int,
    record_count: int,
) -> int:
    return -1


encode_record_into: RecordInto = (
    encode_record_into_python if _c_record_into is None else _c_record_into
)
"""``encode_record_into_python``'s contract, in C when ``_crecords`` has it."""


def record_into_in_c() -> bool:
    """True when :data:`encode_record_into` runs in C."""
    return encode_record_into is not encode_record_into_python
