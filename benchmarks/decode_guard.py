"""What the bounds check (pykaf/protocol/_guard.py) adds to decoding on the hot paths.

The consumer decodes Fetch responses, the broker decodes Produce requests; both go through
``check_bounds`` before kio's reader. This prints, per shape, kio's decode alone, the check
alone, and the check as a share of the whole decode. Best of --repeat runs.

    python benchmarks/decode_guard.py [--repeat 5] [--loops 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from kio.serial import entity_reader

from pykaf.protocol._guard import check_bounds
from pykaf.protocol._messages import build_request, build_response, encode_request, encode_response
from pykaf.protocol._records import encode_batch


def _fetch_response(topics: int, partitions: int, record_bytes: int) -> tuple[type, bytes]:
    records = encode_batch([(None, b"v" * 100, None, 1)] * max(1, record_bytes // 110))
    response = build_response(
        "Fetch",
        16,
        throttle_time=0,
        error_code=0,
        session_id=0,
        responses=[
            {
                "topic_id": f"00000000-0000-4000-8000-{t:012d}",
                "partitions": [
                    {
                        "partition_index": p,
                        "error_code": 0,
                        "high_watermark": 100,
                        "aborted_transactions": [],
                        "records": records,
                    }
                    for p in range(partitions)
                ],
            }
            for t in range(topics)
        ],
        node_endpoints=[],
    )
    frame = encode_response(1, 16, 1, response)[4:]
    return type(response), frame[5:]  # after correlation id and header tags


def _produce_request(partitions: int, record_bytes: int) -> tuple[type, bytes]:
    records = encode_batch([(None, b"v" * 100, None, 1)] * max(1, record_bytes // 110))
    request = build_request(
        "Produce",
        9,
        transactional_id=None,
        acks=-1,
        timeout=5000,
        topic_data=[
            {
                "name": "bench",
                "partition_data": [{"index": p, "records": records} for p in range(partitions)],
            }
        ],
    )
    frame = encode_request(request, correlation_id=1, client_id="bench")[4:]
    return type(request), frame[8 + 2 + 5 + 1 :]  # after the header (client id "bench")


def _best(fn: Callable[[], object], loops: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loops", type=int, default=2000)
    args = parser.parse_args()
    shapes = {
        "Fetch v16, 1 topic x 1 partition, 16 KiB": _fetch_response(1, 1, 16384),
        "Fetch v16, 10 topics x 10 partitions, 1 KiB each": _fetch_response(10, 10, 1024),
        "Fetch v16, 1 topic x 100 partitions, 64 KiB each": _fetch_response(1, 100, 65536),
        "Produce v9, 1 partition, 16 KiB": _produce_request(1, 16384),
        "Produce v9, 50 partitions, 4 KiB each": _produce_request(50, 4096),
    }
    print(f"{'shape':52} {'kio us':>9} {'check us':>9} {'check share':>12}")
    for name, (cls, body) in shapes.items():
        read = entity_reader(cls)
        view = memoryview(body)
        kio = _best(lambda r=read, v=view: r(v, 0), args.loops, args.repeat)
        check = _best(
            lambda c=cls, v=view: check_bounds(c, v, 0, what="bench"), args.loops, args.repeat
        )
        print(f"{name:52} {kio * 1e6:9.1f} {check * 1e6:9.1f} {check / (kio + check):11.0%}")


if __name__ == "__main__":
    main()
