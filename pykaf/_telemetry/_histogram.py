"""Latency histograms with fixed buckets: constant memory, O(buckets) per observation at
worst, and quantiles estimated the way Prometheus' ``histogram_quantile`` does (linear
within the bucket), so a snapshot, the Prometheus bridge and the OTel bridge agree."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

__all__ = ["LATENCY_BOUNDS", "Histogram", "HistogramCounts"]

#: Upper bounds (seconds) of the latency buckets; one more bucket above the last (+Inf).
#: From 0.5 ms (a round trip on 127.0.0.1) to 30 s (a request timeout).
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """A snapshot of one histogram: ``counts[i]`` observations fell at or below
    ``bounds[i]`` and above the bound before it; ``counts[-1]`` above every bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) estimated from the buckets, None when empty. Values
        above the last bound are reported as the last bound (the bucket has no top)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, not {q!r}")
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        for index, in_bucket in enumerate(self.counts):
            if in_bucket and seen + in_bucket >= rank:
                if index == len(self.bounds):
                    return self.bounds[-1]
                lower = self.bounds[index - 1] if index else 0.0
                upper = self.bounds[index]
                return lower + (upper - lower) * (rank - seen) / in_bucket
            seen += in_bucket
        return self.bounds[-1]

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None


class HistogramCounts:
    """The mutable side of a histogram (the collector's lock guards it)."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def snapshot(self) -> Histogram:
        return Histogram(
            bounds=self.bounds, counts=tuple(self.counts), count=self.count, sum=self.total
        )
