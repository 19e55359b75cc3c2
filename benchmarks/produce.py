"""Producer throughput and latency: pykaf against confluent-kafka, aiokafka and kafka-python.

    python benchmarks/produce.py [--messages 500000] [--slow-messages 200000] [--runs 3]
                                 [--size 100] [--partitions 6] [--linger-ms 5]
                                 [--latency 2000] [--only a,b,...] [--configs acks1,idem]
                                 [--profile CLIENT [--profile-mode M]] [--sasl-ssl]

One broker: librdkafka's mock cluster (one broker) in its own process, one topic of
``--partitions`` partitions. Every client runs in its own subprocess (its own GIL, its own
peak RSS), one run after the other, the clients interleaved run by run; each cell is the
median of ``--runs`` runs. Two configurations: ``acks=1`` (idempotence off) and
``acks=all`` with idempotence. Values are ``--size`` bytes, no key, linger ``--linger-ms``;
everything else is each client's default.

Throughput clients (msgs/s from the first timed record to the last acknowledgement; a
warm-up record first, so connecting and metadata are not timed):
  pykaf-produce  ``Producer.produce`` fire-and-forget, failures to ``on_error``
  pykaf-produce-events  the same with a subscriber (``on_event=``) that counts every
                 telemetry event (issue 15: what listening costs)
  pykaf-send     ``Producer.send`` futures, every result checked
  pykaf-async    ``await AsyncProducer.produce`` fire-and-forget with ``on_error``
  pykaf-batch    ``Producer.produce_batch`` of 10,000 values per call
  confluent      ``produce`` with ``delivery.report.only.error`` (a callback for failures)
  confluent-stats  the same with ``statistics.interval.ms`` 1000 and a ``stats_cb``
  aiokafka       ``await send`` (a future per record, not awaited), then ``flush``
  kafka-python   ``send`` then ``flush`` (``api_version=(2, 3, 0)``: it cannot read the
                 mock's newer ApiVersions answer)
After each run the parent reads the topic's end offsets: "complete" says every record
(and no more) was written. The asyncio rows (pykaf-async, aiokafka) also run a task that
sleeps 1 ms at a time on the same loop: how late it wakes (max and p99) is how long the
producing coroutine held the loop from everything else on it (its own I/O included).

Latency (linger 0 for every client: one record at a time, linger would only add its own
delay; 100 warm-up records, then ``--latency`` records, each sent after the previous one
was acknowledged):
  pykaf-send          ``send(...).result()``: the future resolves with the offset
  pykaf-produce-flush ``produce(...)`` + ``flush()``: like confluent-kafka, which reports
                      only errors; the producer's flush waits for the acknowledgement
  pykaf-async-send    ``await AsyncProducer.send(...)``
  pykaf-async-produce-flush  ``await produce(...)`` + ``await flush()`` (AsyncProducer)
  floor-raw-socket    not a client, a reference: the same Produce request (pykaf's
                      encoder) written on a blocking socket from the caller's thread, the
                      answer read there: what Python itself costs per round trip
  floor-loop-thread   the same request handed to an asyncio loop in another thread
                      (``call_soon_threadsafe``), the caller woken by a lock the loop
                      releases from ``data_received``: the least any blocking facade over
                      an event-loop thread can cost, with no producer work at all
  confluent           ``produce(...)`` + ``flush()``
  aiokafka            ``send_and_wait``
  kafka-python        ``send(...).get()``

Goals (issue 5), per configuration: pykaf-produce >= 0.75x confluent-kafka and >= 4x
aiokafka; pykaf-batch >= 1.0x confluent-kafka; one-at-a-time p50 <= 2x confluent's, judged
on both like-for-like rows (pykaf-produce-flush, blocking; pykaf-async-produce-flush).
Issue 15: pykaf-produce-events >= 0.90x pykaf-produce (a subscriber costs <= 10%), and,
with ``--baseline DIR`` (another checkout's tree, e.g. ``git worktree add /tmp/base main``),
pykaf-produce >= 0.97x the baseline's in the same run (nobody subscribed: within noise).
The table's CPU column (µs per record, whole process) is steadier on a busy machine.
``--sasl-ssl`` adds the SASL_SSL rows (issue 13) in the same run: pykaf and confluent-kafka
over SASL_SSL (SCRAM-SHA-512, TLS) and over plaintext on the embedded broker, which speaks
TLS and SASL where the mock cluster does not (``secure_produce.py``; goal: the SASL_SSL
ratio within 10% of the plaintext one). Exit status 1 if one is missed. ``--profile
CLIENT`` runs only that client, once per configuration, under cProfile (every thread of the
subprocess) and prints where its time went, instead of the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CLIENTS = (
    "pykaf-produce",
    "pykaf-produce-events",
    "pykaf-send",
    "pykaf-async",
    "pykaf-batch",
    "confluent",
    "confluent-stats",
    "aiokafka",
    "kafka-python",
)
LATENCY_CLIENTS = (
    "pykaf-send",
    "pykaf-produce-flush",
    "pykaf-async-send",
    "pykaf-async-produce-flush",
    "floor-raw-socket",
    "floor-loop-thread",
    "confluent",
    "aiokafka",
    "kafka-python",
)
SLOW = frozenset({"aiokafka", "kafka-python"})  # get --slow-messages
# ``--baseline DIR``: pykaf-produce again, with the pykaf of another checkout (say main's),
# interleaved with this tree's rows in the same run: the cost of a change, measured.
BASELINE = "pykaf-produce-baseline"
CONFIGS = {"acks1": ("acks=1", 1, False), "idem": ("acks=all+idempotence", "all", True)}
BATCH = 10_000  # values per produce_batch call
WARMUP_LATENCY = 100
IMPORTS = {
    "pykaf": "pykaf._producer._producer",
    "confluent": "confluent_kafka",
    "aiokafka": "aiokafka",
    "kafka-python": "kafka",
}


# -- the clients, each run in its own subprocess ------------------------------------------


class Job:
    """What a child is asked to do (from its command line)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.client: str = args.child
        self.latency: bool = args.mode == "latency"
        self.bootstrap: str = args.bootstrap
        self.topic: str = args.topic
        self.count: int = args.messages
        self.value = b"v" * args.size
        self.acks: int | str = 1 if args.acks == "1" else "all"
        self.idempotence: bool = args.idempotence == "1"
        # One record at a time: linger would only add its own delay.
        self.linger_ms: float = 0.0 if self.latency else args.linger_ms


class Result:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.failed = 0
        self.latencies: list[float] = []
        self.loop_lags: list[float] = []  # asyncio rows: a 1 ms sleeper's lateness


class LoopLag:
    """A task on the running loop that sleeps 1 ms at a time and notes how late it wakes:
    how long other code held the loop (``Result.loop_lags``)."""

    def __init__(self, lags: list[float]) -> None:
        self.lags = lags
        self.task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(0.001)
            self.lags.append(loop.time() - began - 0.001)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def pykaf_options(job: Job) -> dict[str, Any]:
    options: dict[str, Any] = {
        "acks": job.acks,
        "enable_idempotence": job.idempotence,
        "linger": job.linger_ms / 1000,
    }
    if job.client.endswith("-events"):
        heard = [0]

        def count(_event: object) -> None:
            heard[0] += 1

        options["on_event"] = count
    return options


def run_pykaf_sync(job: Job) -> Result:
    from pykaf._producer._producer import Producer  # noqa: PLC0415

    result = Result()

    def on_error(_record: Any, _error: BaseException) -> None:
        result.failed += 1

    topic, value, count = job.topic, job.value, job.count
    with Producer(job.bootstrap, on_error=on_error, **pykaf_options(job)) as producer:
        if job.latency:
            send, produce, flush = producer.send, producer.produce, producer.flush
            clock = time.perf_counter
            timed = result.latencies
            for i in range(WARMUP_LATENCY + count):
                start = clock()
                if job.client == "pykaf-send":
                    send(topic, value).result()
                else:
                    produce(topic, value)
                    if flush(30):
                        result.failed += 1
                if i >= WARMUP_LATENCY:
                    timed.append(clock() - start)
            return result
        producer.send(topic, value).result(30)  # warm-up: connections, metadata, id
        start = time.perf_counter()
        if job.client in ("pykaf-produce", "pykaf-produce-events"):
            produce = producer.produce
            for _ in range(count):
                produce(topic, value)
        elif job.client == "pykaf-send":
            send = producer.send
            futures = [send(topic, value) for _ in range(count)]
        else:  # pykaf-batch
            chunk = [value] * BATCH
            produce_batch = producer.produce_batch
            for _ in range(count // BATCH):
                produce_batch(topic, chunk)
            if count % BATCH:
                produce_batch(topic, chunk[: count % BATCH])
        result.failed += producer.flush(120)
        if job.client == "pykaf-send":
            for future in futures:
                if future.exception() is not None:
                    result.failed += 1
        result.seconds = time.perf_counter() - start
    return result


def run_pykaf_async(job: Job) -> Result:
    from pykaf._producer._async_producer import AsyncProducer  # noqa: PLC0415

    result = Result()

    def on_error(_record: Any, _error: BaseException) -> None:
        result.failed += 1

    async def main() -> None:
        topic, value = job.topic, job.value
        async with AsyncProducer(job.bootstrap, on_error=on_error, **pykaf_options(job)) as p:
            if job.latency:
                clock = time.perf_counter
                flushing = job.client == "pykaf-async-produce-flush"
                for i in range(WARMUP_LATENCY + job.count):
                    start = clock()
                    if flushing:
                        await p.produce(topic, value)
                        result.failed += await p.flush(30)
                    else:
                        await p.send(topic, value)
                    if i >= WARMUP_LATENCY:
                        result.latencies.append(clock() - start)
                return
            await p.send(topic, value)
            lag = LoopLag(result.loop_lags)
            start = time.perf_counter()
            produce = p.produce
            for _ in range(job.count):
                await produce(topic, value)
            result.failed += await p.flush(120)
            result.seconds = time.perf_counter() - start
            await lag.stop()

    asyncio.run(main())
    return result


def run_confluent(job: Job) -> Result:
    from confluent_kafka import Producer  # noqa: PLC0415

    result = Result()

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            result.failed += 1

    config: dict[str, Any] = {
        "bootstrap.servers": job.bootstrap,
        "acks": str(job.acks),
        "enable.idempotence": job.idempotence,
        "linger.ms": job.linger_ms,
        "log_level": 3,
        # Reports for failures only: the like-for-like of pykaf's on_error.
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
    }
    if job.client == "confluent-stats":
        # librdkafka's statistics document, the peer of pykaf's event stream.
        config["statistics.interval.ms"] = 1000
        config["stats_cb"] = lambda _document: None
    producer = Producer(config)
    topic, value = job.topic, job.value
    produce, poll, flush = producer.produce, producer.poll, producer.flush
    if job.latency:
        clock = time.perf_counter
        for i in range(WARMUP_LATENCY + job.count):
            start = clock()
            produce(topic, value)
            if flush(30):
                result.failed += 1
            if i >= WARMUP_LATENCY:
                result.latencies.append(clock() - start)
        return result
    produce(topic, value)
    if flush(30):
        raise RuntimeError("confluent-kafka: the warm-up record was not delivered")
    start = time.perf_counter()
    for _ in range(job.count):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # its queue is full: serve it, then try again
                poll(0.001)
    result.failed += flush(120)
    result.seconds = time.perf_counter() - start
    return result


def run_aiokafka(job: Job) -> Result:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415

    result = Result()

    async def main() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=job.bootstrap,
            acks=job.acks,
            enable_idempotence=job.idempotence,
            linger_ms=job.linger_ms,
        )
        await producer.start()
        topic, value = job.topic, job.value
        try:
            if job.latency:
                clock = time.perf_counter
                for i in range(WARMUP_LATENCY + job.count):
                    start = clock()
                    await producer.send_and_wait(topic, value)
                    if i >= WARMUP_LATENCY:
                        result.latencies.append(clock() - start)
                return
            await producer.send_and_wait(topic, value)
            lag = LoopLag(result.loop_lags)
            start = time.perf_counter()
            send = producer.send
            last = None
            for _ in range(job.count):
                last = await send(topic, value)  # waits only while its buffer is full
            await producer.flush()
            if last is not None:
                await last
            result.seconds = time.perf_counter() - start
            await lag.stop()
        finally:
            await producer.stop()

    asyncio.run(main())
    return result


def run_kafka_python(job: Job) -> Result:
    from kafka import KafkaProducer  # noqa: PLC0415

    result = Result()
    producer = KafkaProducer(
        bootstrap_servers=job.bootstrap,
        acks=job.acks,
        enable_idempotence=job.idempotence,
        linger_ms=job.linger_ms,
        api_version=(2, 3, 0),  # 3.0.12 cannot decode the mock's ApiVersions v3+ answer
    )
    topic, value = job.topic, job.value
    try:
        if job.latency:
            clock = time.perf_counter
            for i in range(WARMUP_LATENCY + job.count):
                start = clock()
                producer.send(topic, value).get(30)
                if i >= WARMUP_LATENCY:
                    result.latencies.append(clock() - start)
            return result
        producer.send(topic, value).get(30)
        start = time.perf_counter()
        send = producer.send
        last = None
        for _ in range(job.count):
            last = send(topic, value)
        producer.flush(120)
        if last is not None:
            last.get(30)
        result.seconds = time.perf_counter() - start
    finally:
        producer.close(10)
    return result


def run_floor(job: Job) -> Result:
    """The reference rows (see the module doc): no producer, just the round trip."""
    import socket  # noqa: PLC0415

    from pykaf._client._address import parse_bootstrap  # noqa: PLC0415
    from pykaf.protocol._produce_request import encode_produce_request  # noqa: PLC0415
    from pykaf.protocol._records import encode_batch  # noqa: PLC0415

    acks = 1 if job.acks == 1 else -1
    address = parse_bootstrap(job.bootstrap)[0]
    # The frame is built per call, as a producer would (encode the batch, then the
    # request); the answer is read as raw frames (nothing decodes it).
    ids = iter(range(2**31))

    def request() -> bytes:
        batch = encode_batch([(None, job.value, (), None)], now_ms=int(time.time() * 1000))
        cid = next(ids)
        return encode_produce_request(
            9,
            correlation_id=cid,
            client_id="floor",
            acks=acks,
            timeout_ms=30_000,
            topics=[(job.topic, [(0, batch)])],
        )

    result = Result()
    clock = time.perf_counter
    if job.client == "floor-raw-socket":
        sock = socket.create_connection((address.host, address.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def once() -> None:
            sock.sendall(request())
            _read_frame(sock)

        for i in range(WARMUP_LATENCY + job.count):
            start = clock()
            once()
            if i >= WARMUP_LATENCY:
                result.latencies.append(clock() - start)
        sock.close()
        return result

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    waiting: list[Any] = []

    class Answers(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            size = int.from_bytes(self.buffer[:4], "big") + 4 if len(self.buffer) >= 4 else 0
            if size and len(self.buffer) >= size:
                self.buffer = self.buffer[size:]
                waiting.pop().release()

    connect = loop.create_connection(Answers, address.host, address.port)
    transport, _ = asyncio.run_coroutine_threadsafe(connect, loop).result(10)
    for i in range(WARMUP_LATENCY + job.count):
        start = clock()
        done = threading.Lock()
        done.acquire()
        waiting.append(done)
        loop.call_soon_threadsafe(transport.write, request())
        done.acquire(timeout=30)
        if i >= WARMUP_LATENCY:
            result.latencies.append(clock() - start)
    loop.call_soon_threadsafe(loop.stop)
    return result


def _read_frame(sock: Any) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


RUNNERS: dict[str, Callable[[Job], Result]] = {
    "pykaf-produce": run_pykaf_sync,
    "pykaf-produce-events": run_pykaf_sync,
    "pykaf-send": run_pykaf_sync,
    "pykaf-batch": run_pykaf_sync,
    "pykaf-produce-flush": run_pykaf_sync,
    "pykaf-async": run_pykaf_async,
    "pykaf-async-send": run_pykaf_async,
    "pykaf-async-produce-flush": run_pykaf_async,
    "floor-raw-socket": run_floor,
    "floor-loop-thread": run_floor,
    "confluent": run_confluent,
    "confluent-stats": run_confluent,
    "aiokafka": run_aiokafka,
    "kafka-python": run_kafka_python,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM first: Linux carries ``ru_maxrss`` across exec,
    so a child would report its parent's peak when that is higher."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ThreadProfiles:
    """cProfile in the main thread and in every thread started while it is on (the
    blocking producer does its sending on a thread of its own)."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.others: list[cProfile.Profile] = []

    def _start_in_thread(self, *_args: Any) -> None:
        profile = cProfile.Profile()
        self.others.append(profile)
        sys.setprofile(None)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start_in_thread)
        self.main.enable()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]

    def report(self, out: io.TextIOBase | Any, top: int = 30) -> None:
        parts = [("main thread", self.main)] + [
            (f"thread {i + 1}", p) for i, p in enumerate(self.others)
        ]
        for name, profile in parts:
            stats = pstats.Stats(profile, stream=out)
            print(f"\n== {name}: {stats.total_tt:.2f} s of CPU in Python-visible calls", file=out)
            stats.sort_stats("tottime").print_stats(top)


def child(args: argparse.Namespace) -> int:
    job = Job(args)
    # Importing the library is a cost of the process, not of producing: not timed.
    pykaf_row = job.client.startswith(("pykaf", "floor"))
    importlib.import_module(IMPORTS["pykaf" if pykaf_row else job.client.removesuffix("-stats")])
    profiles = ThreadProfiles() if args.profile else None
    cpu_before = cpu_seconds()
    if profiles is not None:
        with profiles:
            result = RUNNERS[job.client](job)
        profiles.report(sys.stderr)
    else:
        result = RUNNERS[job.client](job)
    latencies = sorted(result.latencies)
    summary: dict[str, Any] = {
        # CPU of the whole run (all threads, producer made and closed included): on a
        # busy machine a steadier measure of what a client costs than its wall time.
        "cpu": cpu_seconds() - cpu_before,
        "seconds": result.seconds,
        "failed": result.failed,
        "rss_kib": peak_rss_kib(),
    }
    lags = sorted(result.loop_lags)
    if lags:
        summary["lag_max"] = lags[-1]
        summary["lag_p99"] = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    if latencies:
        summary["p50"] = latencies[len(latencies) // 2]
        summary["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(json.dumps(summary))
    return 0


# -- the parent: broker, runs, tables ------------------------------------------------------


class EndOffsets:
    """Sum of the topic's end offsets (the mock keeps ~5 MiB per partition, but its end
    offsets still count every record ever appended)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer  # noqa: PLC0415

        self.topic = topic
        self.partitions = partitions
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "produce-bench", "log_level": 3}
        )

    def total(self) -> int:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        return sum(
            self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=30, cached=False
            )[1]
            for p in range(self.partitions)
        )

    def close(self) -> None:
        self.consumer.close()


def run_child(
    client: str,
    mode: str,
    config: str,
    count: int,
    bootstrap: str,
    topic: str,
    args: argparse.Namespace,
    *,
    profile: bool = False,
) -> dict[str, Any] | None:
    _label, acks, idempotence = CONFIGS[config]
    env = None
    if client == BASELINE:  # pykaf-produce, importing pykaf from --baseline first
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.baseline, *sys.path])}
    command = [
        sys.executable,
        __file__,
        "--child",
        "pykaf-produce" if client == BASELINE else client,
        "--mode",
        mode,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(count),
        "--size",
        str(args.size),
        "--linger-ms",
        str(args.linger_ms),
        "--acks",
        str(acks) if acks == 1 else "all",
        "--idempotence",
        "1" if idempotence else "0",
    ]
    if profile:
        command += ["--profile", client]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=900, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        print(f"  {client} ({config}, {mode}) timed out")
        return None
    if profile:
        print(out.stderr[-60_000:])
    if out.returncode != 0 or not out.stdout.strip():
        print(f"  {client} ({config}, {mode}) failed:\n{out.stderr[-3000:]}")
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_throughput(
    args: argparse.Namespace, bootstrap: str, topic: str, offsets: EndOffsets
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in range(args.runs):
        for config in args.configs:
            for client in args.clients:
                count = args.slow_messages if client in SLOW else args.messages
                before = offsets.total()
                result = run_child(client, "throughput", config, count, bootstrap, topic, args)
                written = offsets.total() - before
                if result is None:
                    continue
                result["count"] = count
                result["complete"] = written == count + 1 and not result["failed"]
                result["written"] = written - 1
                cells.setdefault((config, client), []).append(result)
                rate = count / result["seconds"] if result["seconds"] else 0.0
                print(
                    f"  run {run + 1} {CONFIGS[config][0]:<21} {client:<20}"
                    f" {rate:>11,.0f} msgs/s  {result['rss_kib'] / 1024:6.1f} MiB"
                    f"{'' if result['complete'] else '  INCOMPLETE'}",
                    flush=True,
                )
    return cells


def measure_latency(
    args: argparse.Namespace, bootstrap: str, topic: str
) -> dict[tuple[str, str], dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for config in args.configs:
        for client in args.latency_clients:
            result = run_child(client, "latency", config, args.latency, bootstrap, topic, args)
            if result is not None:
                cells[(config, client)] = result
                print(
                    f"  latency {CONFIGS[config][0]:<21} {client:<20}"
                    f" p50 {result['p50'] * 1000:.3f} ms  p99 {result['p99'] * 1000:.3f} ms",
                    flush=True,
                )
    return cells


def cpu_per_record(results: list[dict[str, Any]]) -> float:
    """Median CPU µs per record of a cell's runs."""
    return statistics.median(r["cpu"] / r["count"] * 1e6 for r in results)


def rate(results: list[dict[str, Any]]) -> float:
    return statistics.median(r["count"] / r["seconds"] for r in results if r["seconds"] > 0)


def print_tables(
    args: argparse.Namespace,
    throughput: dict[tuple[str, str], list[dict[str, Any]]],
    latency: dict[tuple[str, str], dict[str, Any]],
) -> int:
    missed = 0
    print(
        f"\nthroughput: {args.size} B values, {args.partitions} partitions, linger"
        f" {args.linger_ms:g} ms, median of {args.runs}; ratio = msgs/s / confluent-kafka's"
    )
    print(
        f"{'config':<21} {'client':<20} {'records':>9} {'msgs/s':>11} {'MB/s':>7} {'ratio':>6}"
        f" {'RSS MiB':>8} {'CPU µs/msg':>10}  complete"
    )
    for config in args.configs:
        base = throughput.get((config, "confluent"))
        base_rate = rate(base) if base else 0.0
        for client in args.clients:
            results = throughput.get((config, client))
            if not results:
                print(f"{CONFIGS[config][0]:<21} {client:<20} (no result)")
                continue
            msgs = rate(results)
            ratio = msgs / base_rate if base_rate else float("nan")
            rss = statistics.median(r["rss_kib"] for r in results) / 1024
            cpu = cpu_per_record(results)
            complete = all(r["complete"] for r in results)
            print(
                f"{CONFIGS[config][0]:<21} {client:<20} {results[0]['count']:>9,}"
                f" {msgs:>11,.0f} {msgs * args.size / 1e6:>7.1f} {ratio:>6.2f} {rss:>8.1f}"
                f" {cpu:>10.2f}  {'yes' if complete else 'NO'}"
            )
            missed += not complete
    lagging = [
        (config, client, results)
        for config in args.configs
        for client in args.clients
        if (results := throughput.get((config, client))) and "lag_max" in results[0]
    ]
    if lagging:
        print("\nthe event loop held by an asyncio row's producing coroutine (medians of runs)")
        print(f"{'config':<21} {'client':<20} {'max ms':>8} {'p99 ms':>8}")
        for config, client, results in lagging:
            worst = statistics.median(r["lag_max"] for r in results) * 1000
            p99 = statistics.median(r["lag_p99"] for r in results) * 1000
            print(f"{CONFIGS[config][0]:<21} {client:<20} {worst:>8.1f} {p99:>8.1f}")
    if latency:
        print(
            f"\nlatency: one record at a time, {args.latency:,} records after"
            f" {WARMUP_LATENCY} warm-up, linger 0; ratio = p50 / confluent-kafka's p50"
        )
        print(f"{'config':<21} {'client':<20} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
        for config in args.configs:
            base_cell = latency.get((config, "confluent"))
            for client in args.latency_clients:
                cell = latency.get((config, client))
                if cell is None:
                    continue
                ratio = cell["p50"] / base_cell["p50"] if base_cell else float("nan")
                print(
                    f"{CONFIGS[config][0]:<21} {client:<20} {cell['p50'] * 1000:>8.3f}"
                    f" {cell['p99'] * 1000:>8.3f} {ratio:>6.2f}"
                )
    print("\ngoals")
    for config in args.configs:
        label = CONFIGS[config][0]

        def ratio_of(client: str, other: str) -> float | None:
            a, b = throughput.get((config, client)), throughput.get((config, other))  # noqa: B023
            return rate(a) / rate(b) if a and b else None

        checks: list[tuple[str, float | None, float, str]] = [
            (
                "pykaf fire-and-forget vs confluent-kafka",
                ratio_of("pykaf-produce", "confluent"),
                0.75,
                ">=",
            ),
            ("pykaf fire-and-forget vs aiokafka", ratio_of("pykaf-produce", "aiokafka"), 4.0, ">="),
            (
                "pykaf batch call vs confluent-kafka",
                ratio_of("pykaf-batch", "confluent"),
                1.0,
                ">=",
            ),
            (
                "pykaf (this tree) vs --baseline, nobody subscribed",
                ratio_of("pykaf-produce", BASELINE),
                0.97,
                ">=",
            ),
            (
                "pykaf with an event subscriber vs without",
                ratio_of("pykaf-produce-events", "pykaf-produce"),
                0.90,
                ">=",
            ),
        ]
        theirs = latency.get((config, "confluent"))
        for row, what in (
            ("pykaf-produce-flush", "blocking"),
            ("pykaf-async-produce-flush", "async"),
        ):
            mine = latency.get((config, row))
            p50 = mine["p50"] / theirs["p50"] if mine and theirs else None
            checks.append((f"pykaf one-at-a-time p50 ({what}) vs confluent-kafka", p50, 2.0, "<="))
        heard = throughput.get((config, "pykaf-produce-events"))
        unheard = throughput.get((config, "pykaf-produce"))
        baseline = throughput.get((config, BASELINE))
        if baseline and unheard:
            print(
                f"  info {label}: CPU per record of this tree vs --baseline"
                f" {cpu_per_record(unheard) / cpu_per_record(baseline):.3f}x"
            )
        if heard and unheard:
            print(
                f"  info {label}: CPU per record with an event subscriber vs without"
                f" {cpu_per_record(heard) / cpu_per_record(unheard):.3f}x"
            )
        for name, value, goal, sense in checks:
            if value is None:
                print(f"  ---- {label}: {name}: not measured")
                continue
            ok = value >= goal if sense == ">=" else value <= goal
            missed += not ok
            verdict = "PASS" if ok else "MISS"
            print(f"  {verdict} {label}: {name} {value:.2f}x (goal {sense} {goal:g}x)")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument(
        "--slow-messages", type=int, default=200_000, help="records for aiokafka and kafka-python"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--linger-ms", type=float, default=5.0)
    parser.add_argument("--latency", type=int, default=2000, help="records (0: skip)")
    parser.add_argument("--only", default=",".join(dict.fromkeys(CLIENTS + LATENCY_CLIENTS)))
    parser.add_argument("--configs", default="acks1,idem")
    parser.add_argument(
        "--profile", default=None, metavar="CLIENT", help="cProfile CLIENT, not the tables"
    )
    parser.add_argument(
        "--profile-mode",
        choices=("throughput", "latency"),
        default=None,
        help="what to profile (default: throughput when the client has it)",
    )
    parser.add_argument(
        "--sasl-ssl", action="store_true", help="add the SASL_SSL rows (secure_produce.py)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="add a pykaf-produce row importing pykaf from DIR (another checkout)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="throughput", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--topic", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--acks", default="1", help=argparse.SUPPRESS)
    parser.add_argument("--idempotence", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    wanted = [c for c in args.only.split(",") if c]
    for name in wanted:
        if name not in RUNNERS:
            parser.error(f"unknown client {name!r}; known: {', '.join(RUNNERS)}")
    args.clients = [c for c in CLIENTS if c in wanted]
    if args.baseline:
        if not (Path(args.baseline) / "pykaf" / "__init__.py").exists():
            parser.error(f"--baseline {args.baseline}: no pykaf package there")
        args.clients.insert(0, BASELINE)
    args.latency_clients = [c for c in LATENCY_CLIENTS if c in wanted] if args.latency else []
    args.configs = [c for c in args.configs.split(",") if c]
    for config in args.configs:
        if config not in CONFIGS:
            parser.error(f"unknown config {config!r}; known: {', '.join(CONFIGS)}")

    import confluent_kafka  # noqa: PLC0415
    from peers.mock_cluster import MockCluster  # noqa: PLC0415

    from pykaf.protocol import using_c_accelerator  # noqa: PLC0415

    print(
        f"python {sys.version.split()[0]}, pykaf C records: {using_c_accelerator()},"
        f" confluent-kafka {confluent_kafka.version()[0]} (librdkafka"
        f" {confluent_kafka.libversion()[0]}), {os.cpu_count()} cpus"
    )
    with MockCluster(1) as mock:
        topic = "produce-bench"
        mock.create_topic(topic, args.partitions, 1)
        print(f"librdkafka mock cluster (1 broker, pid {mock.pid}) at {mock.bootstrap}")
        if args.profile:
            mode = args.profile_mode or ("throughput" if args.profile in CLIENTS else "latency")
            for config in args.configs:
                count = args.latency if mode == "latency" else args.messages
                print(f"\n#### cProfile: {args.profile} ({CONFIGS[config][0]}, {mode})")
                run_child(
                    args.profile, mode, config, count, mock.bootstrap, topic, args, profile=True
                )
            return 0
        offsets = EndOffsets(mock.bootstrap, topic, args.partitions)
        try:
            throughput = measure_throughput(args, mock.bootstrap, topic, offsets)
            latency = measure_latency(args, mock.bootstrap, topic)
        finally:
            offsets.close()
    missed = print_tables(args, throughput, latency)
    if args.sasl_ssl:
        from secure_produce import secure_rows  # noqa: PLC0415

        print("\n### SASL_SSL beside plaintext (embedded broker)")
        missed = not secure_rows(args.messages, args.size, args.runs) or missed
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
