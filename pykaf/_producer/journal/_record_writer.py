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

from pykaf._producer.journal._format import encode_record_into_python

__all__ = ["RecordInto", "encode_record_into", "record_into_in_c"]

RecordInto = Callable[[memoryview, int, int, int, bytes, int, int, bytes | None, bytes | None], int]


def _load_c_record_into() -> RecordInto | None:
    # The switch pykaf.protocol._records honours: PYKAF_NO_EXTENSIONS forces pure Python.
    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        return None
    try:
        from pykaf.protocol import _crecords  # noqa: PLC0415
    except ImportError:
        return None
    # Built without it: an older build, or a CPU family without the CRC32C instruction.
    fn: RecordInto | None = getattr(_crecords, "journal_record_into", None)
    return fn


_c_record_into = _load_c_record_into()

encode_record_into: RecordInto = (
    encode_record_into_python if _c_record_into is None else _c_record_into
)
"""``encode_record_into_python``'s contract, in C when ``_crecords`` has it."""


def record_into_in_c() -> bool:
    """True when :data:`encode_record_into` runs in C."""
    return encode_record_into is not encode_record_into_python
