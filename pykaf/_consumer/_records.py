"""The consumer's values: ``TopicPartition``, ``OffsetAndMetadata``, ``ConsumerRecord``.

``ConsumerRecord`` is built for speed. A consumer hands out millions of records per second,
and wrapping each decoded record in a second Python object (a 9-field NamedTuple, a slotted
class) costs three to four times what decoding it does (measured: ~160 ns to decode a
100-byte record in C, +530 ns to re-wrap it). So a record is the decoder's own output: a
tuple ``(offset, timestamp, key, value, headers)`` whose *class* carries what every record
of a batch shares -- topic, partition, timestamp type, leader epoch. One such class exists
per (topic, partition, timestamp type, leader epoch), made once and cached; the C decoder
allocates instances of it directly, so the per-record cost is the decode alone.

For the user it reads like any record: ``r.topic``, ``r.partition``, ``r.offset``,
``r.timestamp``, ``r.timestamp_type``, ``r.key``, ``r.value``, ``r.headers``,
``r.leader_epoch`` (and ``r.raw_headers``, the header names as bytes);
``isinstance(r, ConsumerRecord)``; equality and hashing cover every
field; records pickle and copy. As a tuple it has the five per-record fields only.
"""

from __future__ import annotations

import collections
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pykaf.protocol._records import TimestampType, UndecodableHeaderKey

__all__ = [
    "ConsumerRecord",
    "Headers",
    "OffsetAndMetadata",
    "TopicPartition",
    "record_class",
]

Headers = tuple[tuple[str, bytes | None], ...]


# Positional (``TopicPartition("orders", 3)``) rather than keyword-only like pykaf's other
# values: written inline everywhere (assign, seek, dict keys), with an obvious order.
@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic; hashable and ordered (by topic, then partition)."""

    topic: str
    partition: int

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"TopicPartition needs a topic name, not {self.topic!r}")
        if type(self.partition) is not int or self.partition < 0:
            raise ValueError(f"TopicPartition needs a partition >= 0, not {self.partition!r}")

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """An offset to commit (the next record to read), with optional metadata and the
    leader epoch of the record before it (KIP-320; None when unknown)."""

    offset: int
    metadata: str = ""
    leader_epoch: int | None = None

    def __post_init__(self) -> None:
        if type(self.offset) is not int or self.offset < 0:
            raise ValueError(f"a committed offset is an int >= 0, not {self.offset!r}")
        if not isinstance(self.metadata, str):
            raise ValueError(f"offset metadata is a str, not {self.metadata!r}")
        epoch = self.leader_epoch
        if epoch is not None and (type(epoch) is not int or epoch < 0):
            raise ValueError(f"leader_epoch is an int >= 0 or None, not {epoch!r}")


def _getter(index: int, doc: str) -> Any:
    # CPython's namedtuple field accessor (a C descriptor) is the fastest way to read a
    # tuple item by name; other interpreters get an itemgetter property.
    tuplegetter = getattr(collections, "_tuplegetter", None)
    if tuplegetter is not None:
        return tuplegetter(index, doc)
    return property(operator.itemgetter(index), doc=doc)


_TupleBase = tuple[int, int, bytes | None, bytes | None, Headers]


class ConsumerRecord(_TupleBase):
    """One record read from Kafka (see the module doc for its shape).

    ``ConsumerRecord(topic, partition, offset, timestamp, timestamp_type, key, value,
    headers, leader_epoch)`` builds one by hand (tests, replays); the consumer makes them
    without calling this.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Set on each per-partition subclass (see record_class).
        topic: str
        partition: int
        timestamp_type: TimestampType
        leader_epoch: int | None

        @property
        def offset(self) -> int: ...
        @property
        def timestamp(self) -> int: ...
        @property
        def key(self) -> bytes | None: ...
        @property
        def value(self) -> bytes | None: ...
        @property
        def headers(self) -> Headers: ...
    else:
        offset = _getter(0, "The record's offset in its partition.")
        timestamp = _getter(1, "Milliseconds since the epoch (-1: none).")
        key = _getter(2, "The key bytes, or None.")
        value = _getter(3, "The value bytes, or None.")
        headers = _getter(4, "((name, value bytes or None), ...)")

    def __new__(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        timestamp_type: TimestampType | int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        leader_epoch: int | None = None,
    ) -> ConsumerRecord:
        kind = record_class(topic, partition, TimestampType(timestamp_type), leader_epoch)
        return tuple.__new__(kind, (offset, timestamp, key, value, tuple(headers)))

    def _meta(self) -> tuple[str, int, TimestampType, int | None]:
        return (self.topic, self.partition, self.timestamp_type, self.leader_epoch)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return tuple.__eq__(self, other)
        if isinstance(other, ConsumerRecord):
            return self._meta() == other._meta() and tuple.__eq__(self, other)
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self._meta(), tuple.__hash__(self)))

    def __repr__(self) -> str:
        return (
            f"ConsumerRecord(topic={self.topic!r}, partition={self.partition},"
            f" offset={self.offset}, timestamp={self.timestamp},"
            f" timestamp_type={self.timestamp_type.name}, key={self.key!r},"
            f" value={self.value!r}, headers={self.headers!r},"
            f" leader_epoch={self.leader_epoch})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            ConsumerRecord,
            (
                self.topic,
                self.partition,
                self.offset,
                self.timestamp,
                int(self.timestamp_type),
                self.key,
                self.value,
                self.headers,
                self.leader_epoch,
            ),
        )

    def __copy__(self) -> ConsumerRecord:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> ConsumerRecord:
        return self

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes | None], ...]:
        """The headers with their names as the bytes on the wire.

        ``headers`` names are ``str``; a name that is not valid UTF-8 (librdkafka, Go and
        Java byte-array producers can write one) reads there with U+FFFD replacement
        characters, as Java shows it, and only here as it was written. Built on each call.
        """
        return tuple(
            (name.raw if type(name) is UndecodableHeaderKey else name.encode(), value)
            for name, value in self.headers
        )

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


_ClassKey = tuple[str, int, TimestampType, int | None]
_CLASSES: dict[_ClassKey, type[ConsumerRecord]] = {}
# A long-lived consumer sees new leader epochs now and then; the cache is cleared past
# this many classes (records keep their class alive; equality does not rely on identity).
_MAX_CLASSES: Final = 100_000


def record_class(
    topic: str, partition: int, timestamp_type: TimestampType, leader_epoch: int | None
) -> type[ConsumerRecord]:
    """The ``ConsumerRecord`` subclass for records sharing these four fields."""
    key = (topic, partition, timestamp_type, leader_epoch)
    cls = _CLASSES.get(key)
    if cls is None:
        if len(_CLASSES) >= _MAX_CLASSES:
            _CLASSES.clear()
        namespace = {
            "__slots__": (),
            "__module__": ConsumerRecord.__module__,
            "__qualname__": "ConsumerRecord",
            "topic": topic,
            "partition": partition,
            "timestamp_type": timestamp_type,
            "leader_epoch": leader_epoch,
        }
        cls = type("ConsumerRecord", (ConsumerRecord,), namespace)
        # Its instances come from the decoder or tuple.__new__, never from ConsumerRecord's
        # nine-argument constructor.
        cls.__new__ = tuple.__new__  # type: ignore[assignment]
        _CLASSES[key] = cls
    return cls
