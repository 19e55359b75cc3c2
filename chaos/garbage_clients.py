"""Break the servers on purpose: connections of garbage to the gateway or the broker.

    python chaos/garbage_clients.py [--target gateway|broker] [--connections 10000]
                                    [--seed N] [--max-log-lines 20]

The target runs in a process of its own (``pykaf gateway`` on an embedded broker, or
``python -m pykaf.broker``) whose stderr is a pipe that is not read until the end: a
server that writes a log line per bad client fills it and blocks, as one whose log
consumer is slow would. Clients connect 50 at a time and send random bytes, size bombs,
plausible headers with broken bodies (the broker) or HTTP fragments and binary (the
gateway), read a little, and close. Then a good request must be answered within 10 s
(``GET /healthz``; a produce to the broker).

Printed: the time the connections took, whether the server answered the good request,
its log lines (the most common first; the gateway's access log, a JSON line per request
it could parse, is not counted). Exit status 1 if the server did not answer, or
wrote more than ``--max-log-lines`` lines: any client could then write the server's
log (and block it through it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 50  # connections at a time

HTTP_PIECES = [
    b"POST /async/t HTTP/1.1\r\n",
    b"GET /healthz HTTP/1.1\r\n",
    b"HEAD /v3/clusters HTTP/1.1\r\n",
    b"host: x\r\n",
    b"content-length: 5\r\n",
    b"content-length: -1\r\n",
    b"content-length: 99999999999\r\n",
    b"transfer-encoding: chunked\r\n",
    b"expect: 100-continue\r\n",
    b"connection: close\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"zz\r\n",
    b"\x00\xff" * 10,
    b"POST /batch/async/t?key=%zz HTTP/1.1\r\n",
    b'{"value":{"type":"JSON","data":1}}',
    b"GET / HTTP/1.0\r\n",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kafka_garbage(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.2:
        return os.urandom(rng.randint(1, 200))
    if kind < 0.4:  # a size that lies
        size = rng.choice([2**31 - 1, -1, 0, 100_000_000, 8])
        return struct.pack(">i", size) + os.urandom(rng.randint(0, 40))
    # A plausible header (API key, version, correlation id, client id) and a broken body.
    header = struct.pack(">hhi", rng.randint(-2, 80), rng.randint(-1, 20), rng.randint(0, 999))
    body = header + struct.pack(">h", rng.choice([-1, 3, 30000])) + b"abc"
    body += os.urandom(rng.randint(0, 300)) + bytes([rng.randint(0, 255)]) * rng.randint(0, 64)
    size = len(body) if rng.random() < 0.8 else rng.randint(0, 2 * len(body))
    return struct.pack(">i", size) + body


def http_garbage(rng: random.Random) -> bytes:
    if rng.random() < 0.8:
        return rng.choice(HTTP_PIECES)
    return os.urandom(rng.randint(1, 64))


async def one_client(port: int, rng: random.Random, target: str) -> None:
    make = http_garbage if target == "gateway" else kafka_garbage
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, TimeoutError):
        return
    try:
        for _ in range(rng.randint(1, 8)):
            writer.write(make(rng))
        await asyncio.wait_for(reader.read(65536), rng.random() * 0.1)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def clients(port: int, count: int, rng: random.Random, target: str) -> None:
    for _ in range(max(1, count // BATCH)):
        await asyncio.gather(*(one_client(port, rng, target) for _ in range(BATCH)))


def wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the target did not listen on {port} within 60 s")


def good_request(target: str, port: int) -> str:
    """One request a healthy server answers within 10 s: what it answered, or why not."""
    try:
        if target == "gateway":
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=10) as answer:
                return f"GET /healthz answered {answer.status}"
        sys.path.insert(0, str(ROOT))
        from pykaf import Producer  # noqa: PLC0415

        with Producer(f"127.0.0.1:{port}", max_block=10) as producer:
            metadata = producer.send("after-garbage", b"ok").result(20)
            return f"produce answered (offset {metadata.offset})"
    except Exception as exc:  # the finding: printed, exit status 1
        return f"NO ANSWER: {type(exc).__name__}: {exc}"


def start_target(
    target: str, port: int
) -> tuple[subprocess.Popen[str], list[subprocess.Popen[str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    helpers: list[subprocess.Popen[str]] = []
    if target == "broker":
        command = [sys.executable, "-m", "pykaf.broker", "--port", str(port), "--brokers", "1"]
    else:
        kafka = free_port()
        broker = subprocess.Popen(
            [sys.executable, "-m", "pykaf.broker", "--port", str(kafka), "--brokers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        helpers.append(broker)
        wait_listening(kafka, broker)
        command = [sys.executable, "-m", "pykaf", "gateway", "--bootstrap", f"127.0.0.1:{kafka}"]
        command += ["--port", str(port)]
    # stderr: a pipe read only at the end (see the module doc).
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wait_listening(port, process)
    return process, helpers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("gateway", "broker"), default="gateway")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-log-lines", type=int, default=20)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    # Our own clients write to connections the server closed: asyncio says so, not ours.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    port = free_port()
    process, helpers = start_target(args.target, port)
    try:
        started = time.monotonic()
        asyncio.run(clients(port, args.connections, rng, args.target))
        took = time.monotonic() - started
        answered = good_request(args.target, port)
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        for helper in helpers:
            helper.terminate()
            helper.wait(60)
    # The gateway's access log (a JSON line per request it parsed) is its job: not counted.
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    print(
        f"seed {seed}, {args.target}: {args.connections:,} connections of garbage in"
        f" {took:.1f} s; then {answered}; {len(lines)} log line(s)"
    )
    for line, count in Counter(line[:150] for line in lines).most_common(5):
        print(f"  {count:>6} {line}")
    return 1 if answered.startswith("NO") or len(lines) > args.max_log_lines else 0


if __name__ == "__main__":
    sys.exit(main())
