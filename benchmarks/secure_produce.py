"""Produce throughput over SASL_SSL beside plaintext, pykaf and confluent-kafka, one run.

Issue 13's goal: pykaf's ratio to confluent-kafka over SASL_SSL stays within 10% of the
same ratio over plaintext (TLS and authentication must not cost pykaf more than
librdkafka). One embedded broker runs in a subprocess (`pykaf broker`) with a SASL_SSL
listener (SCRAM-SHA-512, certificates from `pykaf certs`) and a plaintext listener beside
it; each client produces the same records to each listener in a subprocess of its own,
clients and listeners in turn, and the median of ``--runs`` is compared.

    python benchmarks/secure_produce.py [--messages 100000] [--size 100] [--runs 3]

Prints msgs/s per client and listener, the pykaf/confluent ratio per listener, and the
SASL_SSL ratio against the plaintext one (goal >= 0.9); exit status 1 if it is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USER, PASSWORD, MECHANISM = "bench", "bench-secret", "SCRAM-SHA-512"

CHILD = r"""
import json, sys, time
client, bootstrap, security, cafile, count, size, topic = sys.argv[1:8]
count, size = int(count), int(size)
value = b"x" * size
secure = security == "SASL_SSL"
if client == "pykaf":
    import pykaf
    options = {"linger": 0.005, "batch_size": 262144, "acks": "all"}
    if secure:
        options.update(security_protocol="SASL_SSL", ssl_cafile=cafile,
                       sasl_mechanism="SCRAM-SHA-512", sasl_username="bench",
                       sasl_password="bench-secret")
    with pykaf.Producer(bootstrap, **options) as producer:
        producer.send(topic, b"warm").result(30)
        started = time.perf_counter()
        for _ in range(count):
            producer.produce(topic, value)
        left = producer.flush(120)
        took = time.perf_counter() - started
else:
    import confluent_kafka
    config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
              "queue.buffering.max.messages": 1000000}
    if secure:
        config.update({"security.protocol": "SASL_SSL", "ssl.ca.location": cafile,
                       "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bench",
                       "sasl.password": "bench-secret"})
    producer = confluent_kafka.Producer(config)
    producer.produce(topic, b"warm")
    producer.flush(30)
    started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.001)
    left = producer.flush(120)
    took = time.perf_counter() - started
print(json.dumps({"rate": count / took, "left": left}))
"""


def start_broker(certs: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pykaf", "broker", "--port", "0", "--brokers", "1",
            "--partitions", "6", "--security-protocol", "SASL_SSL",
            "--ssl-certfile", str(certs / "server.pem"), "--ssl-keyfile", str(certs / "server.key"),
            "--sasl-mechanism", MECHANISM, "--user", f"{USER}:{PASSWORD}",
            "--listener", "PLAINTEXT:0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    secure = proc.stdout.readline().strip()
    plain = proc.stdout.readline().strip().removeprefix("PLAINTEXT=")
    if not secure or not plain:
        proc.kill()
        raise SystemExit(f"the broker did not start (exit {proc.poll()})")
    return proc, {"PLAINTEXT": plain, "SASL_SSL": secure}


def run_client(client: str, bootstrap: str, security: str, certs: Path, args: Any) -> float:
    topic = f"bench-{client}-{security}-{time.monotonic_ns()}"
    out = subprocess.run(
        [
            sys.executable, "-c", CHILD, client, bootstrap, security, str(certs / "ca.pem"),
            str(args.messages), str(args.size), topic,
        ],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["left"]:
        raise SystemExit(f"{client} over {security}: {result['left']} record(s) not delivered")
    return float(result["rate"])


def secure_rows(messages: int, size: int, runs: int) -> bool:
    """Measure and print the rows; True when the goal is met (``produce.py --sasl-ssl``
    calls this too, so its plaintext tables and these come from one run)."""
    args = argparse.Namespace(messages=messages, size=size, runs=runs)
    certs = Path(tempfile.mkdtemp(prefix="pykaf-bench-certs-"))
    subprocess.run(
        [sys.executable, "-m", "pykaf", "certs", str(certs)], check=True, capture_output=True
    )
    broker, listeners = start_broker(certs)
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.runs):
            for security, bootstrap in listeners.items():
                for client in ("pykaf", "confluent"):
                    rate = run_client(client, bootstrap, security, certs, args)
                    rates.setdefault((client, security), []).append(rate)
    finally:
        broker.terminate()
        broker.wait(10)
    print(f"{args.messages} x {args.size} B, {args.runs} run(s), medians; acks=all, SCRAM")
    ratio: dict[str, float] = {}
    for security in listeners:
        pykaf_rate = statistics.median(rates["pykaf", security])
        confluent_rate = statistics.median(rates["confluent", security])
        ratio[security] = pykaf_rate / confluent_rate
        print(
            f"{security:<10} pykaf {pykaf_rate:>10,.0f} msgs/s  confluent"
            f" {confluent_rate:>10,.0f} msgs/s  pykaf/confluent {ratio[security]:.2f}x"
        )
    kept = ratio["SASL_SSL"] / ratio["PLAINTEXT"]
    print(f"SASL_SSL ratio / plaintext ratio: {kept:.2f} (goal >= 0.90)")
    return kept >= 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    return 0 if secure_rows(args.messages, args.size, args.runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
