"""A journal with records pending, made the way a real one is: by SIGKILLing a producer.

``python tests/custody_filler.py DIR BOOTSTRAP TOPIC PARTITIONS COUNT`` is the child: it
opens a ``Producer(custody="journal")`` on DIR, sends one record per partition and waits
for them (metadata known, connections up), prints ``ready``, waits for a line on stdin
(the parent takes every broker down meanwhile), then produces ``COUNT`` values ``r<i>`` to
partition ``i % PARTITIONS``, prints ``produced`` and waits to be killed.

``fill_journal(...)`` is the parent side: it runs that child, calls ``brokers_down`` once
the child is ready, waits (bounded) until the journal shows exactly ``COUNT`` records
pending (the warm-up records' DONE entries are written), then SIGKILLs the child by pid
(after ``before_kill``, when given).
``read_values`` reads a topic back per partition with the public ``Consumer``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["expected_values", "fill_journal", "read_values", "replay_journal"]

_ROOT = Path(__file__).resolve().parent.parent
_WAIT = 60.0  # seconds any single step of the parent may take


def child_env() -> dict[str, str]:
    """This tree's pykaf first, in every child."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), *sys.path]))


def expected_values(count: int, partitions: int) -> dict[int, list[bytes]]:
    """The values the child produced, per partition, in produce order."""
    return {p: [b"r%d" % i for i in range(p, count, partitions)] for p in range(partitions)}


def fill_journal(
    directory: Path,
    bootstrap: str,
    brokers_down: Callable[[], None],
    *,
    topic: str = "t",
    partitions: int = 3,
    count: int = 300,
    before_kill: Callable[[int], None] | None = None,
) -> None:
    """Leave ``count`` records pending in ``directory`` (see the module doc);
    ``before_kill`` is given the child's pid just before the SIGKILL."""
    from pykaf.journal import inspect_journal

    child = subprocess.Popen(
        [sys.executable, __file__, str(directory), bootstrap, topic, str(partitions), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        brokers_down()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "produced"
        deadline = time.monotonic() + _WAIT
        while inspect_journal(directory).pending_records != count:
            assert time.monotonic() < deadline, inspect_journal(directory)
            time.sleep(0.01)
        if before_kill is not None:
            before_kill(child.pid)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=_WAIT)


def replay_journal(
    directory: Path, bootstrap: str, *, partitions: int, count: int, **settings: Any
) -> tuple[list[tuple[Any, BaseException | None]], Any]:
    """Open a producer on the journal ``fill_journal`` left (``count`` records over
    ``partitions`` of "t"), check what it says it recovered, flush it; returns the
    ``on_replayed_delivery`` reports ``(metadata, error)`` and its ``replay_stats()``."""
    from pykaf import Producer

    replayed: list[tuple[Any, BaseException | None]] = []
    with Producer(
        bootstrap,
        custody="journal",
        journal_dir=directory,
        on_replayed_delivery=lambda m, e: replayed.append((m, e)),
        **settings,
    ) as producer:
        assert producer.recovered() == {("t", p): count // partitions for p in range(partitions)}
        assert producer.flush(60) == 0
        return replayed, producer.replay_stats()


def read_values(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """Every value of every partition from offset 0 to its end, in offset order."""
    from pykaf import Consumer, TopicPartition

    seen: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    with Consumer(
        bootstrap, auto_offset_reset="earliest", stop_at_end=True, request_timeout=10.0
    ) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        for record in consumer:
            seen[record.partition].append(record.value or b"")
    return seen


def _child(directory: str, bootstrap: str, topic: str, partitions: int, count: int) -> None:
    from pykaf import Producer

    producer = Producer(
        bootstrap,
        custody="journal",
        journal_dir=directory,
        linger=0.002,
        request_timeout=2.0,
        retry_backoff_max=0.2,
        max_block=60.0,
    )
    for partition in range(partitions):
        producer.send(topic, b"warm", partition=partition).result(30)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        producer.produce(topic, b"r%d" % i, partition=i % partitions)
    print("produced", flush=True)
    sys.stdin.readline()  # until killed (or the parent goes away)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
