"""Where one blocking ``produce()`` + ``flush()`` spends its time, step by step.

Not a comparison (``produce.py`` is): this wraps a few of pykaf's internal functions to
stamp, per record, when each step happened after ``produce()`` was called, and prints the
median of every stamp over ``--records`` one-at-a-time records against librdkafka's mock
cluster (one broker, in its own process). The wrappers add about a microsecond each.

    python benchmarks/latency_timeline.py [--records 3000] [--acks 1|all]

Steps: the caller appends and wakes the loop thread (``call_soon_threadsafe``), registers
its flush and sleeps; the loop thread wakes, pumps, encodes and writes the request; the
answer's bytes arrive; the loop handles them and releases the flush; the caller wakes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

_stamps: dict[str, float] = {}
_clock = time.perf_counter


def _mark(name: str) -> None:
    _stamps.setdefault(name, _clock())


def _wrap(owner: Any, attribute: str, before: str | None, after: str | None = None) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            _mark(before)
        result = original(*args, **kwargs)
        if after:
            _mark(after)
        return result

    setattr(owner, attribute, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--acks", choices=("1", "all"), default="1")
    args = parser.parse_args()

    from peers.mock_cluster import MockCluster  # noqa: PLC0415

    import pykaf  # noqa: PLC0415
    from pykaf._client import _connection  # noqa: PLC0415
    from pykaf._producer import _engine, _producer, _sender  # noqa: PLC0415

    _wrap(_engine.ProducerEngine, "pump", "3 loop: pump starts")
    _wrap(_sender.BrokerSender, "_send", "4 loop: encoding starts", "5 loop: request written")
    _wrap(_connection.BrokerConnection, "data_received", "6 loop: answer bytes in")
    releaser = _producer._releaser

    def stamped_releaser(lock: Any) -> Callable[[], None]:
        release = releaser(lock)

        def stamped() -> None:
            _mark("7 loop: flush released")
            release()

        return stamped

    _producer._releaser = stamped_releaser
    options: dict[str, Any] = (
        {"acks": 1, "enable_idempotence": False} if args.acks == "1" else {"acks": "all"}
    )
    with MockCluster(1) as mock:
        mock.create_topic("timeline", 6, 1)
        producer = pykaf.Producer(mock.bootstrap, linger=0, **options)
        wake = producer._accumulator.wake

        def stamped_wake() -> None:
            _mark("1 caller: wakes the loop")
            wake()
            _mark("2 caller: wake returned")

        producer._accumulator.wake = stamped_wake
        for _ in range(200):
            producer.produce("timeline", b"v" * 100)
            producer.flush()
        rows: list[dict[str, float]] = []
        for _ in range(args.records):
            _stamps.clear()
            start = _clock()
            producer.produce("timeline", b"v" * 100)
            producer.flush()
            _stamps["8 caller: flush returned"] = _clock()
            rows.append({name: at - start for name, at in _stamps.items()})
        producer.close()
    print(f"acks={args.acks}, {args.records} records one at a time; median us after produce():")
    for name in sorted({name for row in rows for name in row}):
        values = [row[name] for row in rows if name in row]
        print(f"  {name:28s} {statistics.median(values) * 1e6:7.1f}")


if __name__ == "__main__":
    main()
