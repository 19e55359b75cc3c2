"""The HTTP gateway beside the HTTP stack's own limit and beside the producer called directly.

    python benchmarks/gateway.py [--seconds 5] [--connections 64] [--batch 1000]
                                 [--batch-connections 8] [--size 100] [--custody memory]
                                 [--pairs 0]

One run, everything in its own process: librdkafka's mock cluster (one broker, topics of
``--partitions`` partitions), the server (uvicorn, one worker, httptools, the asyncio
loop, no access log), and the load generator, a small Go program
(``benchmarks/gateway_load.go``, built at start; Python clients at 64 connections are
slower than the server they would measure). Rows, one after the other:

  do-nothing            an ASGI app that reads the body and answers 202 at once, on the
                        same server settings: the HTTP stack's own limit (one-record
                        bodies, then ``--batch``-record bodies)
  /async                kafboy's route, one record per request, ``--connections``
  /batch/async          ``--batch`` records (lines) per request, ``--batch-connections``
  v3 records stream     Confluent v3's records route in streaming mode: ``--batch`` JSON
                        records in one chunked request, one answer per record after its
                        acknowledgement (skipped, with a note, when the route answers 404)
  direct produce()      pykaf's ``AsyncProducer.produce`` one record at a time
  direct produce_batch  ``AsyncProducer.produce_batch`` of ``--batch`` records (the same
                        value objects every call: the goal's row)
  direct batch, fresh values
                        the same, with values split from a body anew each call, as an
                        HTTP route must make them (shown beside the goal, not deciding it)

Each row: ``--warmup`` seconds, then ``--seconds`` measured; requests/s and records/s in
that window, p50/p99 of the requests in it, the CPU the server and the load generator
used (% of one core: near 100% for the server and low for the client means the server is
the limit), and whether every accepted record reached the broker (end offsets). Values
are ``--size`` bytes; producer options ``linger`` 5 ms, the rest pykaf's defaults, the same
in the gateway and in the direct rows.

``--pairs N`` then runs the do-nothing and ``/async`` rows in turns, N times, both servers
up, and then direct ``produce_batch`` and ``/batch/async`` in turns, N times: each pair
sees the same machine, which rows minutes apart may not.

Goals (issue 16): ``/async`` >= 0.6x the do-nothing endpoint's requests/s (one-record
bodies); each batched route >= 0.5x direct ``produce_batch``'s records/s; with
``--pairs``, ``/async``'s and ``/batch/async``'s are decided on the median of their pairs'
ratios. Reported, and the exit status is 1 when one is
missed. The machine's load average is printed: other work on the 2 cores moves every
figure, so run it on a quiet machine, and more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

PRODUCER_OPTIONS: dict[str, Any] = {"linger": 0.005}
GOAL_ASYNC = 0.6
GOAL_BATCH = 0.5
FRESH = "direct batch, fresh values"


# -- the child processes: servers and the direct producer ----------------------------------


async def do_nothing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI endpoint can do: read the request, answer 202."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"accepted":1}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(kind: str, port: int, bootstrap: str, journal_dir: str | None, profile: bool) -> None:
    """The gateway as ``pykaf gateway`` serves it (``pykaf.gateway.serve``: uvicorn with
    httptools, TCP_NODELAY, the start-up heap frozen for the collector); the do-nothing
    app on uvicorn with the same parser, settings and freeze, so only the app differs."""
    import gc  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        # uvicorn raises SIGTERM again after its graceful shutdown, through the handler
        # that was there before it: this one lets the process go on to print the profile.
        signal.signal(signal.SIGTERM, lambda *_: None)
        profiler.enable()
    if kind == "gateway":
        from pykaf.gateway import GatewaySettings, serve  # noqa: PLC0415

        settings = GatewaySettings(
            bootstrap=bootstrap, journal_dir=journal_dir, producer_options=PRODUCER_OPTIONS
        )
        serve(settings, port=port, parser="httptools", graceful_timeout=30.0)
    else:
        gc.collect()
        gc.freeze()
        uvicorn.run(
            do_nothing,
            host="127.0.0.1",
            port=port,
            http="httptools",
            loop="asyncio",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
        )
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)


async def direct(bootstrap: str, topic: str, mode: str, args: argparse.Namespace) -> None:
    """Records/s of AsyncProducer called directly, in the same window as the HTTP rows."""
    from pykaf import AsyncProducer  # noqa: PLC0415

    value = os.urandom(args.size).replace(b"\n", b"-")
    batch = [value] * args.batch
    body = (value + b"\n") * args.batch  # "fresh": split anew each call, as a route does
    failed = 0

    def on_error(_record: Any, _error: BaseException) -> None:
        nonlocal failed
        failed += 1

    options = dict(PRODUCER_OPTIONS)
    if args.custody != "memory":
        options.update(custody=args.custody, journal_dir=tempfile.mkdtemp(prefix="gw-bench-"))
    producer = AsyncProducer(bootstrap, on_error=on_error, **options)
    await producer.send(topic, b"warm")
    start = time.perf_counter()
    measure_from = start + args.warmup
    end = measure_from + args.seconds
    counted = produced = 0
    cpu_start = None
    while (now := time.perf_counter()) < end:
        if now >= measure_from and cpu_start is None:
            cpu_start, counted = time.process_time(), produced
        if mode == "single":
            await producer.produce(topic, value)
            produced += 1
        else:
            values = body.split(b"\n")[:-1] if mode == "fresh" else batch
            await producer.produce_batch(topic, values)
            produced += args.batch
    cpu = time.process_time() - (cpu_start or 0.0)
    left = await producer.close(60)
    print(
        json.dumps(
            {
                "records": produced - counted,
                "produced": produced + 1,  # the warm-up record too
                "seconds": args.seconds,
                "cpu_seconds": cpu,
                "failed": failed + left,
            }
        )
    )


# -- the parent: processes, load, rows -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(
    kind: str, bootstrap: str, journal_dir: str | None, *, profile: bool = False
) -> Iterator[tuple[str, int]]:
    """A uvicorn server in its own process: yields its base URL and pid."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    command += ["--bootstrap", bootstrap] + (["--journal-dir", journal_dir] if journal_dir else [])
    command += ["--profile"] if profile else []
    proc = subprocess.Popen(command, env=child_env())
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the {kind} server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {kind} server did not listen within 30 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()  # uvicorn shuts down gracefully: the gateway flushes
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def build_load_generator(work: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("the load generator needs Go (apt install golang-go)")
    binary = work / "gateway_load"
    subprocess.run(
        [go, "build", "-o", str(binary), str(HERE / "gateway_load.go")],
        check=True,
    )
    return binary


def load(
    binary: Path, url: str, body: Path, connections: int, args: argparse.Namespace, **extra: Any
) -> dict[str, Any]:
    command = [str(binary), "-url", url, "-body", str(body), "-connections", str(connections)]
    command += ["-warmup", str(args.warmup), "-seconds", str(args.seconds)]
    command += ["-content-type", extra.get("content_type", "text/plain")]
    if extra.get("chunked"):
        command.append("-chunked")
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    from pykaf import Admin, TopicPartition  # noqa: PLC0415

    with Admin(bootstrap) as admin:
        listed = admin.list_offsets({TopicPartition(topic, p): "latest" for p in range(partitions)})
        return sum(listed[TopicPartition(topic, p)].offset for p in range(partitions))


def wait_for_offsets(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    """The topic's end offsets once they reach ``expected`` (or after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        total = end_offsets(bootstrap, topic, partitions)
        if total >= expected or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, connections: int | str, per_request: int, **got: Any) -> None:
        self.rows.append({"name": name, "connections": connections, "per": per_request, **got})

    def get(self, name: str) -> dict[str, Any] | None:
        return next((row for row in self.rows if row["name"] == name), None)

    def print(self) -> None:
        print(
            f"{'row':<27}{'conns':>6}{'req/s':>10}{'records/s':>12}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'server':>8}{'client':>8}{'us/rec':>8}  complete"
        )
        for row in self.rows:
            requests = row.get("requests")
            rate = "" if requests is None else f"{requests / row['seconds']:,.0f}"
            p50 = f"{row['p50_ms']:.2f}" if "p50_ms" in row else ""
            p99 = f"{row['p99_ms']:.2f}" if "p99_ms" in row else ""
            server = f"{row['server_cpu']:.0%}" if "server_cpu" in row else ""
            client = f"{row['client_cpu']:.0%}" if "client_cpu" in row else ""
            print(
                f"{row['name']:<27}{row['connections']:>6}{rate:>10}"
                f"{row['records'] / row['seconds']:>12,.0f}{p50:>8}{p99:>8}"
                f"{server:>8}{client:>8}{cpu_per_record(row):>8.2f}  {row.get('complete', '')}"
            )


def cpu_per_record(row: dict[str, Any]) -> float:
    """CPU microseconds per record: the server's for HTTP rows, the producer process's
    for direct rows. Steadier than rates on a busy machine (a starved process is slow,
    not costly)."""
    share = row["server_cpu"] if "server_cpu" in row else row["client_cpu"]
    return float(share * row["seconds"] / max(row["records"], 1) * 1e6)


def http_row(
    rows: Rows,
    name: str,
    binary: Path,
    url: str,
    pid: int,
    body: Path,
    per_request: int,
    connections: int,
    args: argparse.Namespace,
    **extra: Any,
) -> dict[str, Any]:
    cpu_before, started = cpu_of(pid), time.monotonic()
    got = load(binary, url, body, connections, args, **extra)
    server_cpu = (cpu_of(pid) - cpu_before) / (time.monotonic() - started)
    ok = sum(n for status, n in got["statuses"].items() if status.startswith("2"))
    bad = {s: n for s, n in got["statuses"].items() if not s.startswith("2")}
    if bad or got["errors"]:
        print(f"  {name}: answers {bad}, {got['errors']} failed ({got.get('first_error')})")
    rows.add(
        name,
        connections,
        per_request,
        requests=ok,
        records=ok * per_request,
        seconds=got["seconds"],
        p50_ms=got["p50_ms"],
        p99_ms=got["p99_ms"],
        server_cpu=server_cpu,
        client_cpu=got["cpu_seconds"] / got["seconds"],
    )
    return got


def direct_row(
    rows: Rows, name: str, mode: str, bootstrap: str, args: argparse.Namespace, suffix: str = ""
) -> None:
    topic = f"direct-{mode}{suffix}"
    args.mock.create_topic(topic, args.partitions, 1)
    command = [sys.executable, __file__, "--direct", mode, "--bootstrap", bootstrap]
    command += ["--topic", topic, *args.passed]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=600, env=child_env()
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    arrived = end_offsets(bootstrap, topic, args.partitions)
    complete = "yes" if arrived == got["produced"] and not got["failed"] else "NO"
    rows.add(
        name,
        "-",
        1 if mode == "single" else args.batch,
        records=got["records"],
        seconds=got["seconds"],
        client_cpu=got["cpu_seconds"] / got["seconds"],
        complete=f"{complete} ({got['failed']} failed)" if got["failed"] else complete,
    )


def v3_cluster(base: str) -> str | None:
    """The cluster id v3 shows, or None when the gateway has no v3 routes."""
    try:
        with urllib.request.urlopen(f"{base}/v3/clusters", timeout=10) as answer:
            return str(json.load(answer)["data"][0]["cluster_id"])
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return None
        raise


def v3_reports(url: str, body: bytes) -> list[dict[str, Any]]:
    """The delivery reports of one v3 records request (concatenated JSON objects)."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    reports, at, decoder = [], 0, json.JSONDecoder()
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        report, at = decoder.raw_decode(text, at)
        reports.append(report)
    return reports


def gateway_rows(rows: Rows, binary: Path, work: Path, args: argparse.Namespace) -> None:
    bootstrap = args.mock.bootstrap
    for topic in ("async", "batch", "stream"):
        args.mock.create_topic(topic, args.partitions, 1)
    journal = str(work / "journal") if args.custody != "memory" else None
    with server("gateway", bootstrap, journal, profile=args.profile) as (base, pid):
        accepted = {}
        http_row(rows, "/async", binary, f"{base}/async/async?custody={args.custody}", pid,
                 args.one_body, 1, args.connections, args)  # fmt: skip
        accepted["async"] = rows.rows[-1]
        http_row(rows, "/batch/async", binary, f"{base}/batch/async/batch?custody={args.custody}",
                 pid, args.lines_body, args.batch, args.batch_connections, args)  # fmt: skip
        accepted["batch"] = rows.rows[-1]
        cluster = v3_cluster(base)
        if cluster is None:
            print("  v3 records stream: skipped, the gateway has no /v3/clusters (404)")
        else:
            # The custody of the other rows (without it the route takes the gateway's
            # sync_custody, memory, whatever --custody says).
            url = f"{base}/v3/clusters/{cluster}/topics/stream/records?custody={args.custody}"
            # Every record of a stream is counted as written: check that they are.
            sample = b"".join(args.v3_body.read_bytes().splitlines(keepends=True)[:3])
            codes = [report.get("error_code") for report in v3_reports(url, sample)]
            if codes != [200, 200, 200]:
                raise SystemExit(f"v3 records: 3 records sent, reports {codes}")
            http_row(rows, "v3 records stream", binary, url, pid, args.v3_body, args.batch,
                     args.batch_connections, args, content_type="application/json",
                     chunked=True)  # fmt: skip
            accepted["stream"] = rows.rows[-1]
    # The server has stopped (and flushed): did every answered record arrive? (The
    # warm-up's and the window's edges are answered too, so at least this many.)
    for topic, row in accepted.items():
        arrived = end_offsets(bootstrap, topic, args.partitions)
        row["complete"] = f"{'yes' if arrived >= row['records'] else 'NO'} ({arrived:,} in Kafka)"


def bodies(work: Path, args: argparse.Namespace) -> None:
    value = b"x" * args.size
    args.one_body = work / "one.txt"
    args.one_body.write_bytes(value)
    args.lines_body = work / "lines.txt"
    args.lines_body.write_bytes(b"".join(value + b"\n" for _ in range(args.batch)))
    record = {"value": {"type": "BINARY", "data": base64.b64encode(value).decode()}}
    args.v3_body = work / "v3.json"
    args.v3_body.write_text("".join(json.dumps(record) + "\n" for _ in range(args.batch)))


def paired(binary: Path, work: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """``--pairs``: the do-nothing endpoint and ``/async`` in turns, then direct
    ``produce_batch`` and ``/batch/async`` in turns, both servers up, each pair's rows a
    few seconds apart: a machine shared with other work slows both rows of a pair alike,
    where rows run once, minutes apart, can see different machines. Returns each pair's
    ratio of requests/s (``/async``) and of records/s (``/batch/async``), by goal; the
    rows go to a table of their own."""
    table = Rows()
    ratios: dict[str, list[float]] = {"/async": [], "/batch/async": []}
    bootstrap = args.mock.bootstrap
    journal = str(work / "journal-pairs") if args.custody != "memory" else None
    args.mock.create_topic("batch-pairs", args.partitions, 1)
    with (
        server("nothing", bootstrap, None) as (nothing_base, nothing_pid),
        server("gateway", bootstrap, journal) as (gateway_base, gateway_pid),
    ):
        for i in range(args.pairs):
            http_row(table, f"do-nothing #{i + 1}", binary, f"{nothing_base}/", nothing_pid,
                     args.one_body, 1, args.connections, args)  # fmt: skip
            http_row(table, f"/async #{i + 1}", binary,
                     f"{gateway_base}/async/async?custody={args.custody}", gateway_pid,
                     args.one_body, 1, args.connections, args)  # fmt: skip
            nothing, gateway = table.rows[-2], table.rows[-1]
            ratios["/async"].append(
                (gateway["requests"] / gateway["seconds"])
                / (nothing["requests"] / nothing["seconds"])
            )
        for i in range(args.pairs):
            direct_row(table, f"direct produce_batch #{i + 1}", "batch", bootstrap, args,
                       suffix=f"-{i}")  # fmt: skip
            http_row(table, f"/batch/async #{i + 1}", binary,
                     f"{gateway_base}/batch/async/batch-pairs?custody={args.custody}",
                     gateway_pid, args.lines_body, args.batch, args.batch_connections,
                     args)  # fmt: skip
            direct, route = table.rows[-2], table.rows[-1]
            ratios["/batch/async"].append(
                (route["records"] / route["seconds"]) / (direct["records"] / direct["seconds"])
            )
    print(f"\n--pairs {args.pairs}: each goal's two rows in turns")
    table.print()
    return ratios


def goals(rows: Rows, pairs: dict[str, list[float]]) -> bool:
    """The goals, on rates (they decide), and the same ratios on CPU per record; with
    ``--pairs``, ``/async``'s and ``/batch/async``'s are decided on their pairs' median
    ratios."""
    met = True
    nothing, gateway = rows.get("do-nothing"), rows.get("/async")
    if nothing and gateway:
        ratio = gateway["requests"] / nothing["requests"]
        by_cpu = cpu_per_record(nothing) / cpu_per_record(gateway)
        met = ratio >= GOAL_ASYNC
        print(
            f"/async / do-nothing requests/s: {ratio:.2f}x (goal >= {GOAL_ASYNC});"
            f" by server CPU per request {by_cpu:.2f}x"
        )
    if pairs:
        median = statistics.median(pairs["/async"])
        met = median >= GOAL_ASYNC
        print(
            f"/async / do-nothing requests/s in {len(pairs['/async'])} pairs: median"
            f" {median:.2f}x (goal >= {GOAL_ASYNC}; pair by pair"
            f" {', '.join(f'{r:.2f}' for r in pairs['/async'])})"
        )
    direct_batch, fresh = rows.get("direct produce_batch"), rows.get(FRESH)
    for name in ("/batch/async", "v3 records stream"):
        row = rows.get(name)
        if row and direct_batch:
            ratio = row["records"] / direct_batch["records"]
            by_cpu = cpu_per_record(direct_batch) / cpu_per_record(row)
            paired_ratios = pairs.get(name) if pairs else None
            if not paired_ratios:
                met = met and ratio >= GOAL_BATCH
            beside = ""
            if fresh:
                beside = f"; {row['records'] / fresh['records']:.2f}x the fresh-values row"
            print(
                f"{name} / direct produce_batch records/s: {ratio:.2f}x (goal >= {GOAL_BATCH});"
                f" by CPU per record {by_cpu:.2f}x{beside}"
            )
            if paired_ratios:
                median = statistics.median(paired_ratios)
                met = met and median >= GOAL_BATCH
                print(
                    f"{name} / direct produce_batch records/s in {len(paired_ratios)} pairs:"
                    f" median {median:.2f}x (goal >= {GOAL_BATCH}; pair by pair"
                    f" {', '.join(f'{r:.2f}' for r in paired_ratios)})"
                )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured, per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="before each row's window")
    parser.add_argument("--connections", type=int, default=64, help="for one-record rows")
    parser.add_argument("--batch", type=int, default=1000, help="records per batched request")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=100, help="bytes per value")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="then this many pairs of each goal's rows in turns (their medians decide)",
    )
    parser.add_argument(
        "--custody",
        choices=("memory", "journal", "journal_sync"),
        default="memory",
        help="the gateway's and the direct producer's",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only the gateway's rows, with its server under cProfile (top 30 printed)",
    )
    # The children's modes.
    parser.add_argument("--serve", choices=("nothing", "gateway"), help=argparse.SUPPRESS)
    parser.add_argument("--direct", choices=("single", "batch", "fresh"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--journal-dir", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.bootstrap, args.journal_dir, args.profile)
        return 0
    if args.direct:
        asyncio.run(direct(args.bootstrap, args.topic, args.direct, args))
        return 0
    args.passed = [f"--{k}={getattr(args, k.replace('-', '_'))}" for k in (
        "seconds", "warmup", "batch", "size", "custody")]  # fmt: skip

    from peers.mock_cluster import MockCluster  # noqa: PLC0415

    rows = Rows()
    work = Path(tempfile.mkdtemp(prefix="pykaf-gateway-bench-"))
    try:
        binary = build_load_generator(work)
        bodies(work, args)
        with MockCluster(1) as mock:
            args.mock = mock
            if args.profile:
                gateway_rows(rows, binary, work, args)
                return 0
            with server("nothing", mock.bootstrap, None) as (base, pid):
                http_row(rows, "do-nothing", binary, f"{base}/", pid, args.one_body, 1,
                         args.connections, args)  # fmt: skip
                http_row(rows, f"do-nothing, {args.batch} lines", binary, f"{base}/", pid,
                         args.lines_body, args.batch, args.batch_connections, args)  # fmt: skip
            gateway_rows(rows, binary, work, args)
            direct_row(rows, "direct produce()", "single", mock.bootstrap, args)
            direct_row(rows, "direct produce_batch", "batch", mock.bootstrap, args)
            direct_row(rows, FRESH, "fresh", mock.bootstrap, args)
            pairs = paired(binary, work, args) if args.pairs > 0 else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_average = os.getloadavg()[0]
    print(
        f"\n{args.size} B values; {args.seconds:g} s measured per row after {args.warmup:g} s;"
        f" custody {args.custody}; load average {load_average:.2f} on {os.cpu_count()} cores"
        " (other work moves every figure: run on a quiet machine, more than once)"
    )
    rows.print()
    return 0 if goals(rows, pairs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
