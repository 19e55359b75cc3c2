"""``pykaf demo``: the main job, end to end on the embedded broker.

Starts the embedded broker in its own process (so it does not share our GIL), writes a
million 100-byte messages over several partitions with ``pykaf.Producer`` (fire-and-forget,
idempotent, acks=all) with a live progress bar and the throughput, reads the end offset
of every partition back from the broker, then consumes everything from offset 0 with
``pykaf.Consumer`` (stopping at the end of the log) and checks it read exactly what was
written: every value is unique (it carries its sequence number), and each partition must
hand back its values in the order written, none missing, repeated or altered (see
``_read_check``). Any difference is listed and the exit status is 1.

With ``bootstrap`` (``pykaf demo --bootstrap HOST:PORT``) the same job runs against an
existing cluster instead: on a topic of its own (a fresh name unless ``--topic``; an
existing topic is refused, since the check needs the topic to hold exactly what the demo
wrote), deleted at the end unless ``--keep-topic``.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from pykaf import (
    Admin,
    Consumer,
    ConsumerRecord,
    NewTopic,
    OffsetSpec,
    Producer,
    PykafError,
    TopicPartition,
)
from pykaf.cli._connect import UsageError
from pykaf.cli._progress import Progress
from pykaf.cli._read_check import MAX_MESSAGES, ReadCheck, value_format
from pykaf.errors import TopicAlreadyExistsError

__all__ = ["DemoOptions", "fresh_topic_name", "run_demo"]

_SAMPLE = 1_000  # one record in this many reports its delivery to the progress bar


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    messages: int = 1_000_000
    partitions: int = 6
    brokers: int = 3
    value_size: int = 100
    batch_bytes: int = 1 << 20  # librdkafka's default batch.size; pykaf's default is 256 KiB
    topic: str = "pykaf-demo"
    # An existing cluster to run against (None: start the embedded broker), the client
    # settings to reach it with (security), and whether its topic outlives the run.
    bootstrap: str | None = None
    client: Mapping[str, Any] = field(default_factory=dict)
    replication_factor: int = 1
    keep_topic: bool = False

    def __post_init__(self) -> None:
        for name in (
            "messages",
            "partitions",
            "brokers",
            "value_size",
            "batch_bytes",
            "replication_factor",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.topic:
            raise ValueError("--topic must not be empty")
        if self.messages >= MAX_MESSAGES:
            raise ValueError(f"--messages must be below {MAX_MESSAGES:,}")
        value_format(self.value_size)  # long enough for the sequence number?


@contextlib.contextmanager
def _broker_process(brokers: int, out: TextIO) -> Iterator[str]:
    """Start ``python -m pykaf.broker --port 0`` and yield its bootstrap (its first line)."""
    cmd = [sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", str(brokers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise PykafError(f"the embedded broker did not start (exit code {proc.poll()})")
        print(f"embedded broker: {brokers} broker(s) at {line} (pid {proc.pid})", file=out)
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _create_topic(bootstrap: str, opts: DemoOptions) -> None:
    with Admin(bootstrap, **_client_settings(opts)) as admin:
        created = admin.create_topics(
            [
                NewTopic(
                    name=opts.topic,
                    partitions=opts.partitions,
                    replication_factor=opts.replication_factor,
                )
            ]
        )
        try:
            created[opts.topic]
        except TopicAlreadyExistsError:
            raise UsageError(
                f"topic {opts.topic!r} exists already; the demo checks that its topic holds"
                " exactly what it wrote: give another --topic (or delete that one:"
                f" pykaf topics delete {opts.topic})"
            ) from None


def _delete_topic(bootstrap: str, opts: DemoOptions, out: TextIO) -> None:
    with Admin(bootstrap, **_client_settings(opts)) as admin:
        deleted = admin.delete_topics([opts.topic])
    if deleted.errors:
        error = deleted.errors[opts.topic]
        print(f"could not delete topic {opts.topic!r}: {error}", file=out)
    else:
        print(f"deleted topic {opts.topic!r} (--keep-topic keeps it)", file=out)


def _client_settings(opts: DemoOptions) -> dict[str, Any]:
    return {"client_id": "pykaf-demo", **opts.client}


def _produce(bootstrap: str, opts: DemoOptions, out: TextIO) -> tuple[float, int]:
    """Write ``opts.messages`` records; (seconds until all acknowledged, failures)."""
    failures: list[BaseException] = []
    progress = Progress(opts.messages, out=out, label="produce")

    # Progress counts acknowledgements: one record in every SAMPLE asks for its report
    # (per-record callbacks would cost more than the demo measures).
    def acknowledged(_metadata: object, error: BaseException | None) -> None:
        if error is None:
            progress.advance(_SAMPLE)

    def failed(_record: object, error: BaseException) -> None:
        failures.append(error)

    value = value_format(opts.value_size)
    with Producer(
        bootstrap, on_error=failed, batch_size=opts.batch_bytes, **_client_settings(opts)
    ) as producer:
        produce = producer.produce
        with progress:
            started = time.perf_counter()
            for i in range(opts.messages):
                if i % _SAMPLE == _SAMPLE - 1:
                    produce(opts.topic, value % i, on_delivery=acknowledged)
                else:
                    produce(opts.topic, value % i)
            producer.flush()
            elapsed = time.perf_counter() - started
            progress.advance(opts.messages - progress.done)
    return elapsed, len(failures)


def _consume(
    bootstrap: str, opts: DemoOptions, check: ReadCheck, out: TextIO
) -> tuple[float, float, ConsumerRecord | None]:
    """Read every partition from offset 0 to its end, feeding ``check``: (seconds reading,
    seconds of those spent checking, the first record read)."""
    first: ConsumerRecord | None = None
    checking = 0.0
    add = check.add
    progress = Progress(opts.messages, out=out, label="consume")
    with Consumer(bootstrap, stop_at_end=True, **_client_settings(opts)) as consumer:
        consumer.assign([TopicPartition(opts.topic, p) for p in range(opts.partitions)])
        consumer.seek_to_beginning()
        with progress:
            started = time.perf_counter()
            while batch := consumer.poll(timeout=5.0, max_records=50_000):
                if first is None:
                    first = batch[0]
                checked = time.perf_counter()
                add(batch)
                checking += time.perf_counter() - checked
                progress.advance(len(batch))
            elapsed = time.perf_counter() - started
    return elapsed, checking, first


def _read_back(bootstrap: str, opts: DemoOptions) -> tuple[dict[int, int], dict[int, int]]:
    """Each partition's leader and end offset, as the brokers report them."""
    with Admin(bootstrap, **_client_settings(opts)) as admin:
        (description,) = admin.describe_topics([opts.topic]).values()
        leaders = {p.partition: p.leader for p in description.partitions}
        ends = admin.list_offsets(
            {TopicPartition(opts.topic, p): OffsetSpec.LATEST for p in leaders}
        )
    ends.raise_for_errors()
    return leaders, {tp.partition: listed.offset for tp, listed in sorted(ends.items())}


def _run(bootstrap: str, opts: DemoOptions, out: TextIO) -> int:
    _create_topic(bootstrap, opts)
    return _run_created(bootstrap, opts, out)


def _run_created(bootstrap: str, opts: DemoOptions, out: TextIO) -> int:
    elapsed, failures = _produce(bootstrap, opts, out)
    rate = opts.messages / elapsed if elapsed > 0 else float("inf")
    megabytes = opts.messages * opts.value_size / elapsed / 1e6 if elapsed > 0 else 0.0
    print(
        f"produced {opts.messages:,} messages of {opts.value_size} B in {elapsed:.2f} s: "
        f"{rate:,.0f} msg/s, {megabytes:.1f} MB/s ({failures} failed)",
        file=out,
    )
    leaders, offsets = _read_back(bootstrap, opts)
    print(f"end offsets read back from the broker, topic {opts.topic!r}:", file=out)
    for partition, offset in offsets.items():
        print(
            f"  partition {partition:>3}  leader {leaders[partition]}  end offset {offset:>10,}",
            file=out,
        )
    total = sum(offsets.values())
    ok = total == opts.messages and failures == 0
    verdict = "OK" if ok else "MISMATCH"
    print(f"  total {total:,} of {opts.messages:,} produced: {verdict}", file=out)

    check = ReadCheck(opts.messages, opts.value_size, opts.partitions)
    elapsed, checking, first = _consume(bootstrap, opts, check, out)
    read = sum(check.counts.values())
    reading = elapsed - checking
    rate = read / reading if reading > 0 else float("inf")
    print(
        f"consumed {read:,} messages from offset 0 in {reading:.2f} s: {rate:,.0f} msg/s"
        f" (and {checking:.2f} s checking them)",
        file=out,
    )
    if first is not None:
        print(
            f"  first record read: partition {first.partition} offset {first.offset}"
            f" timestamp {first.timestamp} value {(first.value or b'')[:16]!r}...",
            file=out,
        )
    problems = check.problems(offsets)
    counts = check.counts
    read_counts = ", ".join(f"{p}:{counts[p]:,}" for p in sorted(offsets))
    if problems:
        print(f"  read back DIFFERS from what was written ({read_counts}):", file=out)
        for problem in problems:
            print(f"    {problem}", file=out)
    else:
        print(
            f"  read back exactly what was written, in order per partition ({read_counts})",
            file=out,
        )
    return 0 if ok and not problems else 1


def _run_on_cluster(bootstrap: str, opts: DemoOptions, out: TextIO) -> int:
    print(f"existing cluster at {bootstrap}, topic {opts.topic!r}", file=out)
    _create_topic(bootstrap, opts)
    try:
        return _run_created(bootstrap, opts, out)
    finally:
        if not opts.keep_topic:
            _delete_topic(bootstrap, opts, out)


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; the exit status is 0 when every message is accounted for."""
    if opts.bootstrap is not None:
        return _run_on_cluster(opts.bootstrap, opts, out)
    with _broker_process(opts.brokers, out) as bootstrap:
        return _run(bootstrap, opts, out)


def fresh_topic_name() -> str:
    """A topic name no earlier run used, for a demo on a shared cluster."""
    return f"pykaf-demo-{secrets.token_hex(4)}"
