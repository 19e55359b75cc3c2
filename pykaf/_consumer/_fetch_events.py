"""The ``FetchDone`` event of one fetch answer: records, bytes, and lag per partition.

Built only when someone listens (the fetcher tests ``bus.active`` once per answer, see
``pykaf._telemetry._bus``): then the answer is walked a second time, batch header by
batch header -- never record by record, and records are not decoded. The record count
comes from the batch headers: the records at or after the offset fetched (brokers send
whole batches), control batches left out. Transactional records later skipped as aborted
(read_committed) are counted: the count is what the broker handed in.
"""

from __future__ import annotations

import struct
import time
import uuid
from typing import Any, Final

from pykaf._consumer._partition_state import PartitionState
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import FetchDone

__all__ = ["count_records", "emit_fetch_done"]

_LENGTH: Final = struct.Struct(">qi")  # base offset, batch length (from byte 0)
_MAGIC_AT: Final = 16
_ATTRIBUTES: Final = struct.Struct(">hi")  # attributes, last offset delta (from byte 21)
_ATTRIBUTES_AT: Final = 21
_COUNT: Final = struct.Struct(">i")  # records count (from byte 57)
_COUNT_AT: Final = 57
_HEADER_SIZE: Final = 61
_LOG_OVERHEAD: Final = 12  # what the batch length does not count
_CONTROL_BIT: Final = 0x20
_MAGIC_V2: Final = 2

Sent = list[tuple[PartitionState, int, int, int]]  # (state, epoch, generation, offset)


def count_records(data: bytes, fetch_offset: int) -> int:
    """Records at or after ``fetch_offset`` in the complete v2 batches of ``data``
    (control batches left out; a truncated last batch is fetched again, not counted)."""
    total = 0
    pos, end = 0, len(data)
    while pos + _HEADER_SIZE <= end:
        base, length = _LENGTH.unpack_from(data, pos)
        stop = pos + _LOG_OVERHEAD + length
        if length < _HEADER_SIZE - _LOG_OVERHEAD or stop > end:
            break
        if data[pos + _MAGIC_AT] == _MAGIC_V2:
            attributes, last_delta = _ATTRIBUTES.unpack_from(data, pos + _ATTRIBUTES_AT)
            last = base + last_delta
            if not attributes & _CONTROL_BIT and last >= fetch_offset:
                (count,) = _COUNT.unpack_from(data, pos + _COUNT_AT)
                total += count if base >= fetch_offset else min(count, last - fetch_offset + 1)
        pos = stop
    return total


def emit_fetch_done(
    bus: EventBus,
    client_id: str | None,
    node: int,
    response: Any,
    sent: Sent,
    by_id: dict[uuid.UUID, str],
    answered: set[int],
    *,
    read_committed: bool,
) -> None:
    """Emit ``FetchDone`` for ``response`` (the partitions of ``sent`` that ``answered``
    lists). Lag is the log's end (the last stable offset for read_committed, else the
    high watermark) minus the next offset to fetch, as the answer left them."""
    offsets = {(st.tp.topic, st.tp.partition): off for st, _, _, off in sent}
    records = size = 0
    for topic in response.responses:
        name = getattr(topic, "topic", None)
        if not name:
            topic_id = getattr(topic, "topic_id", None)
            name = None if topic_id is None else by_id.get(topic_id)
        for part in topic.partitions:
            data = part.records
            offset = offsets.get((name, part.partition_index)) if name else None
            if data and offset is not None and not part.error_code:
                size += len(data)
                records += count_records(data, offset)
    lag: list[tuple[str, int, int]] = []
    for i in sorted(answered):
        st = sent[i][0]
        end = st.last_stable_offset if read_committed else st.high_watermark
        if end >= 0:
            lag.append((st.tp.topic, st.tp.partition, max(0, end - st.fetch_offset)))
    bus.emit(
        FetchDone(
            time=time.time(),
            client_id=client_id,
            broker=node,
            records=records,
            bytes=size,
            lag=tuple(lag),
        )
    )
