"""Record batch throughput: pykaf (C and pure Python) against kio and aiokafka, one run.

    python benchmarks/records.py [--records 200000] [--batch 1000] [--repeat 3] [--cpu N]

Each library encodes the same records (no key, a 100-byte value, an explicit timestamp,
no headers) into v2 batches of ``--batch`` records, then decodes its own batches back to
record objects, verifying the CRC as its consumer would (pykaf ``decode_batches``,
kio ``read_batch``, aiokafka ``DefaultRecordBatch.validate_crc`` then iteration).
Every cell is the best of ``--repeat`` runs; ratios are against pykaf (C) for the same
codec. Inputs are plain ``(key, value, headers, timestamp)`` tuples for everybody: the
time a library needs to turn them into its own objects (kio's Record dataclasses,
aiokafka's append() calls) counts, because its users pay it too.

The process is pinned to one core when the OS allows (``--cpu``, default the last one).
Timings are wall-clock on whatever else the machine is doing: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch
from kio.records.schema import Record as KioRecord
from kio.records.writers import write_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from pykaf.protocol import _record_codec, _records
from pykaf.protocol._compression import Compression

try:
    import aiokafka
    from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
except ImportError:  # an optional test dependency: its rows are skipped
    aiokafka = None

Record = tuple[bytes | None, bytes, None, int]
Batch = list[Record]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_MS = 1_700_000_000_000
GOALS = {"encode": 3_000_000, "decode": 2_000_000}


def make_batches(n: int, per_batch: int, size: int) -> list[Batch]:
    """JSON-ish values of ``size`` bytes: compressible like real payloads, not constant."""
    rng = random.Random(1234)
    users = [f"user-{rng.randrange(10**6):06d}" for _ in range(500)]
    records: list[Record] = []
    for i in range(n):
        head = f'{{"id":{i},"user":"{rng.choice(users)}","event":"click","n":"'.encode()
        tail = rng.randbytes(size).hex().encode()
        value = (head + tail)[: size - 2] + b'"}'
        records.append((None, value, None, BASE_MS + i // 10))
    return [records[i : i + per_batch] for i in range(0, n, per_batch)]


# -- the contenders: encode(batches, codec) -> list of batch bytes; decode -> record count --


@contextmanager
def pykaf_codec(codec: Any) -> Iterator[None]:
    saved = _records._codec
    _records._codec = codec
    try:
        yield
    finally:
        _records._codec = saved


def pykaf_encode(batches: list[Batch], codec: str) -> list[bytes]:
    encode = _records.encode_batch
    comp = Compression.parse(codec)
    out = []
    offset = 0
    for batch in batches:
        out.append(encode(batch, compression=comp, base_offset=offset, now_ms=BASE_MS))
        offset += len(batch)
    return out


def pykaf_decode(buffers: list[bytes]) -> int:
    n = 0
    decode = _records.decode_batches
    for buf in buffers:
        for batch in decode(buf):
            n += len(batch.records)
    return n


def kio_encode(batches: list[Batch], codec: str) -> list[bytes]:
    utc = datetime.UTC
    out = []
    offset = 0
    for batch in batches:
        records = tuple(
            KioRecord(
                attributes=i8(0),
                timestamp=TZAwareMicros.parse(datetime.datetime.fromtimestamp(ts / 1000, utc)),
                offset=i64(offset + i),
                key=key,
                value=value,
                headers=(),
            )
            for i, (key, value, _headers, ts) in enumerate(batch)
        )
        new = NewRecordBatch(
            producer_id=i64(-1),
            producer_epoch=i16(-1),
            base_sequence=i32(-1),
            records=records,
            attributes=i16(0),
        )
        buffer = io.BytesIO()
        write_batch(buffer, new)
        out.append(buffer.getvalue())
        offset += len(batch)
    return out


def kio_decode(buffers: list[bytes]) -> int:
    n = 0
    for buf in buffers:
        batch, _size = read_batch(buf, 0)
        n += len(batch.records)
    return n


_AIOKAFKA_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def aiokafka_encode(batches: list[Batch], codec: str) -> list[bytes]:
    ctype = _AIOKAFKA_CODECS[codec]
    out = []
    for batch in batches:
        builder = DefaultRecordBatchBuilder(2, ctype, 0, -1, -1, -1, 1 << 30)
        append = builder.append
        for i, (key, value, headers, ts) in enumerate(batch):
            append(i, ts, key, value, headers or [])
        out.append(bytes(builder.build()))
    return out


def aiokafka_decode(buffers: list[bytes]) -> int:
    n = 0
    for buf in buffers:
        batch = DefaultRecordBatch(buf)
        if not batch.validate_crc():
            raise AssertionError("aiokafka: CRC mismatch")
        for record in batch:
            n += record.value is not None
    return n


# -- measuring ------------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        result = None  # free the previous run's output before timing the next one
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def pin_to_one_core(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    available = sorted(os.sched_getaffinity(0))
    target = available[-1] if cpu is None else cpu
    try:
        os.sched_setaffinity(0, {target})
    except OSError as exc:
        return f"not pinned ({exc})"
    return f"pinned to cpu {target} of {len(available)}"


def aiokafka_flavour() -> str:
    if aiokafka is None:
        return "aiokafka not installed"
    module = DefaultRecordBatchBuilder.__module__
    kind = "its Cython extension" if "_crecords" in module else "pure Python"
    return f"aiokafka {aiokafka.__version__} uses {kind} ({module})"


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.1f}k"


def fmt_ratio(rate: float | None, ref: float | None) -> str:
    if rate is None or not ref:
        return "-"
    return f"{rate / ref:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument(
        "--slow-records",
        type=int,
        default=50_000,
        help="records for the pure-Python contenders (kio, pykaf pure): rates stay comparable",
    )
    args = parser.parse_args(argv)

    pinned = pin_to_one_core(args.cpu)
    c_built = _records.using_c_accelerator()
    c_codec = _records._codec
    print(f"Python {platform.python_version()} on {platform.machine()}, {pinned}")
    print(f"pykaf C accelerator: {'built' if c_built else 'NOT BUILT'}; {aiokafka_flavour()}")
    print("The machine may be shared with other work: read ratios, not absolute numbers.")
    print(
        f"{args.records:,} records of {args.value_size} B (no key, no headers), batches of "
        f"{args.batch:,}; best of {args.repeat}; CRC verified on decode\n"
    )

    batches = make_batches(args.records, args.batch, args.value_size)
    slow_batches = batches[: max(1, args.slow_records // args.batch)]

    contenders: list[tuple[str, Any, Callable[..., Any], Callable[..., Any], bool, set[str]]] = [
        ("pykaf (C)", c_codec if c_built else None, pykaf_encode, pykaf_decode, False, set(CODECS)),
        ("pykaf (pure Python)", _record_codec, pykaf_encode, pykaf_decode, True, set(CODECS)),
        ("aiokafka", None, aiokafka_encode, aiokafka_decode, False, set(CODECS)),
        ("kio", None, kio_encode, kio_decode, True, {"none"}),
    ]
    header = f"{'library':<22}{'codec':<8}{'encode/s':>10}{'vs C':>8}{'decode/s':>10}{'vs C':>8}"
    print(header)
    print("-" * len(header))
    reference: dict[str, tuple[float | None, float | None]] = {}
    for codec in CODECS:
        for name, pyk_codec, encode, decode, slow, codecs in contenders:
            if codec not in codecs:
                continue
            if name == "pykaf (C)" and pyk_codec is None:
                print(f"{name:<22}{codec:<8}{'not built':>10}")
                reference[codec] = (None, None)
                continue
            data = slow_batches if slow else batches
            n = sum(len(b) for b in data)
            if name == "aiokafka" and aiokafka is None:
                print(f"{name:<22}{codec:<8}  skipped: not installed")
                continue
            with pykaf_codec(pyk_codec) if pyk_codec is not None else _nothing():
                enc_t, buffers = best_of(args.repeat, partial(encode, data, codec))
                dec_t, count = best_of(args.repeat, partial(decode, buffers))
            if count != n:
                raise AssertionError(f"{name}/{codec}: decoded {count} records, expected {n}")
            enc, dec = n / enc_t, n / dec_t
            if name == "pykaf (C)":
                reference[codec] = (enc, dec)
            ref_enc, ref_dec = reference.get(codec, (None, None))
            print(
                f"{name:<22}{codec:<8}{fmt_rate(enc):>10}{fmt_ratio(enc, ref_enc):>8}"
                f"{fmt_rate(dec):>10}{fmt_ratio(dec, ref_dec):>8}"
            )
        print()

    ok = True
    c_enc, c_dec = reference.get("none", (None, None))
    for what, rate in (("encode", c_enc), ("decode", c_dec)):
        goal = GOALS[what]
        passed = rate is not None and rate >= goal
        ok &= passed
        print(
            f"goal: pykaf (C) {what} >= {goal / 1e6:.1f}M records/s uncompressed: "
            f"{fmt_rate(rate)}  {'PASS' if passed else 'MISS'}"
        )
    return 0 if ok else 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
