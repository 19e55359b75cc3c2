"""Partition strategies: which partition a record goes to. Pure: no I/O, no clock.

Keyed records are placed exactly as the Java client places them
(``Utils.toPositive(Utils.murmur2(key)) % numPartitions``, the rule of Java's
``BuiltInPartitioner.partitionForKey`` and of librdkafka's ``murmur2``/``murmur2_random``
partitioners), so pykaf, Java and librdkafka producers agree on where a key lives. An empty
key ``b""`` is a key like any other and is hashed; only ``None`` means "no key".

Keyless records follow the strategy (see :func:`make_partitioner`). Randomness comes only
from an injectable ``random.Random``, so every sequence is reproducible in tests.

``partition()`` runs once per record under the accumulator's lock, so it is written for
speed: no allocation on the keyless sticky path (one dict lookup, one identity check), no
isinstance chains, the hash inlined. The partitioners are not thread-safe by themselves:
the accumulator serialises calls.
"""

from __future__ import annotations

import itertools
import operator
import os
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, Protocol, SupportsIndex

__all__ = [
    "PARTITIONER_NAMES",
    "Partitioner",
    "PartitionerFunction",
    "PartitionerSpec",
    "make_partitioner",
    "murmur2",
    "murmur2_in_c",
    "murmur2_partition",
    "murmur2_python",
    "to_positive",
]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_POSITIVE = 0x7FFFFFFF

Bytes = bytes | bytearray | memoryview
PartitionerFunction = Callable[[str, bytes | None, int], int]
"""A user partitioner: ``fn(topic, key, partition_count) -> partition`` (key None: no key)."""
PartitionerSpec = str | PartitionerFunction


# --------------------------------------------------------------------------------------
# murmur2, exactly as Java's org.apache.kafka.common.utils.Utils.murmur2
# --------------------------------------------------------------------------------------


def murmur2_python(data: Bytes) -> int:
    """Java's ``Utils.murmur2(data)``: a signed 32-bit int, in pure Python.

    Java does its arithmetic on wrapping 32-bit ints; here every product is masked to 32
    bits, and ``>>`` on the non-negative masked value is Java's unsigned ``>>>``.
    """
    if type(data) is not bytes:
        # memoryview() refuses non-buffers (an int would otherwise become zero bytes).
        data = memoryview(data).tobytes()
    length = len(data)
    h = (_SEED ^ length) & _U32
    words = length >> 2
    if words:
        for word in struct.unpack_from(f"<{words}I", data):
            k = (word * _M) & _U32
            k ^= k >> 24
            h = ((h * _M) & _U32) ^ ((k * _M) & _U32)
    rest = length & 3
    if rest:
        # Java's switch falls through from case 3 to case 1.
        tail = words << 2
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    h ^= h >> 15
    return h - 0x1_0000_0000 if h & 0x8000_0000 else h


def _load_c_murmur2() -> Callable[[Bytes], int] | None:
    # Same switch as pykaf.protocol._records: PYKAF_NO_EXTENSIONS forces pure Python.
    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        return None
    try:
        from pykaf.protocol import _crecords  # noqa: PLC0415
    except ImportError:
        return None
    # An extension built before murmur2 was added has the record loops only.
    fn: Callable[[Bytes], int] | None = getattr(_crecords, "murmur2", None)
    return fn


_c_murmur2 = _load_c_murmur2()

murmur2: Callable[[Bytes], int] = _c_murmur2 if _c_murmur2 is not None else murmur2_python
"""Java's ``Utils.murmur2``: the C version when ``_crecords`` has it, else pure Python."""


def murmur2_in_c() -> bool:
    """True when :data:`murmur2` runs in C."""
    return murmur2 is not murmur2_python


def to_positive(n: int) -> int:
    """Java's ``Utils.toPositive``: clear the sign bit (not ``abs``: MIN_VALUE maps to 0)."""
    return n & _POSITIVE


def murmur2_partition(key: Bytes, partition_count: int) -> int:
    """The partition of ``key`` among ``partition_count``, as Java and librdkafka pick it."""
    if partition_count < 1:
        raise ValueError(f"partition_count must be >= 1, not {partition_count!r}")
    return (murmur2(key) & _POSITIVE) % partition_count


# --------------------------------------------------------------------------------------
# The strategy interface used by the accumulator
# --------------------------------------------------------------------------------------


class Partitioner(Protocol):
    """Chooses a partition per record; told when a sticky batch is done.

    ``available``: the partitions that have a live leader, ascending. Empty means "none
    known to be up": then every partition in ``range(partition_count)`` is a candidate.
    Pass the same immutable sequence object (e.g. the metadata snapshot's tuple) while it
    holds: sticky strategies check it by identity and only re-examine a new one.
    ``partition_count`` is >= 1 (the accumulator waits for metadata before calling).
    """

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int: ...

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        """The batch being filled for ``previous`` is full or closed: a sticky strategy
        may move on (only if ``previous`` is still its current partition for ``topic``)."""
        ...


def _pick(rng: random.Random, count: int, available: Sequence[int], avoid: int) -> int:
    """A uniformly random candidate, other than ``avoid`` when there is another."""
    # Draw among the others and step over ``avoid``: one draw, no retry loop.
    n = len(available)
    if n:
        if n > 1 and avoid in available:
            skip = available.index(avoid)
            r = rng.randrange(n - 1)
            return available[r + (r >= skip)]
        return available[rng.randrange(n)]
    if count < 1:
        raise ValueError(f"partition_count must be >= 1, not {count!r}")
    if count > 1 and 0 <= avoid < count:
        r = rng.randrange(count - 1)
        return r + (r >= avoid)
    return rng.randrange(count)


def _candidates(count: int, available: Sequence[int]) -> tuple[int, ...]:
    if available:
        return tuple(available)
    if count < 1:
        raise ValueError(f"partition_count must be >= 1, not {count!r}")
    return tuple(range(count))


def _next_in_order(count: int, available: Sequence[int], previous: int) -> int:
    """The candidate after ``previous`` in ascending id order, wrapping to the lowest."""
    if available:
        after = [p for p in available if p > previous]
        return min(after) if after else min(available)
    if count < 1:
        raise ValueError(f"partition_count must be >= 1, not {count!r}")
    return previous + 1 if 0 <= previous < count - 1 else 0


def _is_candidate(partition: int, count: int, available: Sequence[int]) -> bool:
    if available:
        return partition in available
    return 0 <= partition < count


class _Sticky:
    """KIP-480: keyless records stick to one random partition per topic until its batch
    is done, then move to another random one; keyed records by murmur2."""

    __slots__ = ("_current", "_rng")
    name: ClassVar[str] = "sticky"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # topic -> (partition, the `available` object it was checked against, count).
        # A tuple, replaced on change, so the hot path only reads.
        self._current: dict[str, tuple[int, Sequence[int], int]] = {}

    def __repr__(self) -> str:
        return f"<partitioner {self.name}>"

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int:
        if key is not None:
            return (murmur2(key) & _POSITIVE) % partition_count
        current = self._current.get(topic)
        if current is not None and current[1] is available and current[2] == partition_count:
            return current[0]
        return self._refresh(topic, partition_count, available, current)

    def _refresh(
        self,
        topic: str,
        count: int,
        available: Sequence[int],
        current: tuple[int, Sequence[int], int] | None,
    ) -> int:
        # First record of the topic, or the metadata changed: keep the partition while it
        # is still a candidate (librdkafka also leaves a partition that lost its leader).
        if current is None:
            chosen = self._first(count, available)
        elif _is_candidate(current[0], count, available):
            chosen = current[0]
        else:
            chosen = self._move(count, available, current[0])
        self._current[topic] = (chosen, available, count)
        return chosen

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        current = self._current.get(topic)
        if current is not None and current[0] != previous:
            # Already moved on (as Java's StickyPartitionCache: only the batch of the
            # current sticky partition triggers a switch).
            return
        chosen = self._move(partition_count, available, previous)
        self._current[topic] = (chosen, available, partition_count)

    def _first(self, count: int, available: Sequence[int]) -> int:
        return _pick(self._rng, count, available, -1)

    def _move(self, count: int, available: Sequence[int], previous: int) -> int:
        return _pick(self._rng, count, available, previous)


class _StickyRoundRobin(_Sticky):
    """ekaf's sticky_round_robin: keyless records stick to a partition for a batch, then
    the next partition in id order (the first one chosen at random, so producers started
    together do not all begin on partition 0); keyed records by murmur2."""

    __slots__ = ()
    name: ClassVar[str] = "sticky_round_robin"

    def _move(self, count: int, available: Sequence[int], previous: int) -> int:
        return _next_in_order(count, available, previous)


class _Murmur2(_Sticky):
    """librdkafka's name for the Java-compatible hash; keyless records as "sticky"."""

    __slots__ = ()
    name: ClassVar[str] = "murmur2"


class _StrictRoundRobin:
    """ekaf's strict_round_robin: each keyless record to the next candidate in turn (per
    topic, starting at a random one so producers started together spread out); keyed
    records by murmur2."""

    __slots__ = ("_rng", "_turns")
    name: ClassVar[str] = "strict_round_robin"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # topic -> (endless iterator over the candidates in turn, the `available` object
        # it was built from, count). next() on an itertools.cycle is the cheapest "next
        # in turn" there is: no counter to store back per record.
        self._turns: dict[str, tuple[Iterator[int], Sequence[int], int]] = {}

    def __repr__(self) -> str:
        return f"<partitioner {self.name}>"

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int:
        if key is not None:
            return (murmur2(key) & _POSITIVE) % partition_count
        turns = self._turns.get(topic)
        if turns is not None and turns[1] is available and turns[2] == partition_count:
            return next(turns[0])
        return self._restart(topic, partition_count, available, turns)

    def _restart(
        self,
        topic: str,
        count: int,
        available: Sequence[int],
        turns: tuple[Iterator[int], Sequence[int], int] | None,
    ) -> int:
        candidates = _candidates(count, available)
        if turns is None:
            start = self._rng.randrange(len(candidates))
        else:
            # The metadata changed: carry on from the partition the old turn would have
            # used next, or the first candidate above it.
            upcoming = next(turns[0])
            start = next((i for i, p in enumerate(candidates) if p >= upcoming), 0)
        order = itertools.cycle(candidates[start:] + candidates[:start])
        self._turns[topic] = (order, available, count)
        return next(order)

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        return None


class _Random:
    """Every record, keyed or not, to a uniformly random candidate."""

    __slots__ = ("_bits",)
    name: ClassVar[str] = "random"

    def __init__(self, rng: random.Random) -> None:
        # getrandbits(32) % n, as Java's toPositive(nextInt()) % n: about twice as fast as
        # randrange or int(random() * n) here; the modulo bias is below n / 2**32.
        self._bits = rng.getrandbits

    def __repr__(self) -> str:
        return f"<partitioner {self.name}>"

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int:
        n = len(available)
        if n:
            return available[self._bits(32) % n]
        return self._bits(32) % partition_count

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        return None


class _Custom:
    """A user function ``fn(topic, key, partition_count) -> int``, its answer checked.

    It sees every partition, not only ``available``: a record for a partition without a
    leader waits in its buffer like any other.
    """

    __slots__ = ("_fn", "name")

    def __init__(self, fn: PartitionerFunction) -> None:
        self._fn = fn
        self.name: str = getattr(fn, "__qualname__", None) or repr(fn)

    def __repr__(self) -> str:
        return f"<partitioner {self.name}>"

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int:
        chosen = self._fn(topic, key, partition_count)
        if type(chosen) is int and 0 <= chosen < partition_count:
            return chosen
        return self._check(chosen, topic, partition_count)

    def _check(self, chosen: object, topic: str, partition_count: int) -> int:
        # Integers of other types (numpy's, IntEnum) are fine; bool is a mistake.
        if not isinstance(chosen, bool) and isinstance(chosen, SupportsIndex):
            as_int = operator.index(chosen)
            if 0 <= as_int < partition_count:
                return as_int
        raise ValueError(
            f"partitioner {self.name} returned {chosen!r} for topic {topic!r}, which has"
            f" {partition_count} partition(s); it must return an int in"
            f" 0..{partition_count - 1}"
        )

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        return None


_BY_NAME: dict[str, Callable[[random.Random], Partitioner]] = {
    "sticky": _Sticky,
    "murmur2": _Murmur2,
    "random": _Random,
    "sticky_round_robin": _StickyRoundRobin,
    "strict_round_robin": _StrictRoundRobin,
}

PARTITIONER_NAMES: tuple[str, ...] = tuple(_BY_NAME)
"""The strategy names :func:`make_partitioner` accepts ("sticky" is the default)."""


def make_partitioner(spec: PartitionerSpec, *, rng: random.Random | None = None) -> Partitioner:
    """The partitioner for a ``partitioner`` setting: a name or a function.

    - ``"sticky"`` (default): keyed by murmur2; keyless sticky per batch (KIP-480).
    - ``"murmur2"``: the same (librdkafka's name for the Java-compatible hash).
    - ``"random"``: every record, keyed or not, to a random available partition.
    - ``"sticky_round_robin"``: keyed by murmur2; keyless sticky per batch, then the next
      partition in order.
    - ``"strict_round_robin"``: keyed by murmur2; keyless each to the next partition.
    - a function ``(topic, key, partition_count) -> int``: its answer is checked; a bad
      one raises ``ValueError`` naming the function.

    Each call makes a fresh partitioner with its own state (one per producer, or per
    topic override). ``rng`` defaults to a new ``random.Random()`` seeded by the OS.
    """
    if isinstance(spec, str):
        factory = _BY_NAME.get(spec)
        if factory is None:
            raise ValueError(
                f"unknown partitioner {spec!r}; use one of {', '.join(PARTITIONER_NAMES)},"
                " or a function (topic, key, partition_count) -> partition"
            )
        return factory(rng if rng is not None else random.Random())
    if callable(spec):
        return _Custom(spec)
    raise TypeError(
        f"partitioner must be a name ({', '.join(PARTITIONER_NAMES)}) or a function"
        f" (topic, key, partition_count) -> partition, not {type(spec).__name__}"
    )
