"""Real processes for the gateway's break-it tests: the embedded broker (``pykaf
broker``) and the gateway (``pykaf gateway``), each started by the test, tracked by its
pid and stopped by it (SIGKILL for a crash, SIGTERM for a stop), and a consumer that
counts what arrived: lost, duplicated and reordered records per partition.

Record values are ``b"<tag>:<partition>:<seq>"``: a writer numbers the records it sends
to each partition, so order and completeness can be checked from the values alone.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pykaf import Admin, Consumer, NewTopic, TopicPartition

__all__ = [
    "PYKAF",
    "Arrivals",
    "BrokerProcess",
    "GatewayProcess",
    "count_arrivals",
    "create_topic",
    "free_port",
    "patient_config",
]

PYKAF = (sys.executable, "-m", "pykaf")
_START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _first_line(proc: subprocess.Popen[bytes], what: str, log: Path) -> str:
    """The process's first stdout line, within ``_START_TIMEOUT`` (or its log)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"{what} printed nothing in {_START_TIMEOUT} s:\n{log.read_text()}")
    return line


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    log: Path
    _log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by pid: no shutdown code runs, exactly as in a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM by pid; the exit status (SIGKILL, and a failure, if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 60.0) -> int:
        """The exit status of a process on its way out (SIGKILL, and a failure, if it
        is not gone within ``timeout``)."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running after {timeout} s:\n{self.log.read_text()}"
            ) from None
        self._close()
        return status

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log_file.close()


def _start(args: Sequence[str], log: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    # stderr to a file: a pipe nobody reads fills up and blocks the process's logging.
    log_file = log.open("ab")
    # Unbuffered: select() on the pipe must not miss a line already read into a buffer.
    proc = subprocess.Popen([*PYKAF, *args], stdout=subprocess.PIPE, stderr=log_file, bufsize=0)
    return proc, log_file


@dataclass
class BrokerProcess(_Process):
    bootstrap: str = ""
    control: str = ""  # the fault-injection endpoint (pykaf.broker.control)
    port: int = 0
    data_dir: Path = Path()

    @classmethod
    def start(cls, data_dir: Path, port: int, log: Path) -> BrokerProcess:
        """``pykaf broker`` on ``port`` keeping its logs in ``data_dir`` (restartable on
        both after a SIGKILL)."""
        args = ["broker", "--port", str(port), "--data-dir", str(data_dir), "--no-auto-create"]
        proc, log_file = _start([*args, "--control-port", "0"], log)
        broker = cls(proc, log, log_file, port=port, data_dir=data_dir)
        broker.bootstrap = _first_line(proc, "pykaf broker", log)
        broker.control = _first_line(proc, "pykaf broker", log).removeprefix("control=")
        return broker

    def restart(self) -> BrokerProcess:
        return BrokerProcess.start(self.data_dir, self.port, self.log)


@dataclass
class GatewayProcess(_Process):
    url: str = ""

    @classmethod
    def start(cls, args: Sequence[str], log: Path) -> GatewayProcess:
        """``pykaf gateway ARGS`` (add ``--port 0``); waits for the URL line."""
        proc, log_file = _start(["gateway", *args], log)
        gateway = cls(proc, log, log_file)
        gateway.url = _first_line(proc, "pykaf gateway", log)
        assert gateway.url.startswith("http"), gateway.url
        return gateway

    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def accepting(self) -> bool:
        """Whether a TCP connection to the gateway succeeds now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port()), timeout=1.0):
                return True
        except OSError:
            return False


def patient_config(directory: Path) -> str:
    """A config file giving the gateway's producers max_block = 5 s. By default they wait
    0.05 s for everything, a topic's first metadata included: on a loaded machine a fresh
    producer's first record then fails (504). The process tests are not about that wait."""
    config = directory / "gateway.toml"
    config.write_text("[producer]\nmax_block = 5.0\n")
    return str(config)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    with Admin(bootstrap) as admin:
        admin.create_topics([NewTopic(name=topic, partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + 15
        while topic not in admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic!r} not created"
            time.sleep(0.05)


@dataclass
class Arrivals:
    """What a consumer found, per partition, against what was expected."""

    records: int = 0
    lost: dict[int, int] = field(default_factory=dict)
    duplicated: dict[int, int] = field(default_factory=dict)
    reordered: dict[int, int] = field(default_factory=dict)
    unexpected: int = 0

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def total_duplicated(self) -> int:
        return sum(self.duplicated.values())

    @property
    def total_reordered(self) -> int:
        return sum(self.reordered.values())


def read_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    until: int | Iterable[bytes],
    timeout: float,
) -> Any:
    """Every record of ``topic`` from the start: reads until ``until`` records arrived
    (or, given values, until each of them was read) or ``timeout`` passed, then one more
    short look (nothing beyond them). Values, where records nobody waits for may arrive
    too (a request a kill cut short): a count would end the reading before the last
    records waited for."""
    count = until if isinstance(until, int) else None
    wanted: set[bytes] = set() if isinstance(until, int) else set(until)
    records: list[Any] = []
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while (wanted if count is None else len(records) < count) and (time.monotonic() < deadline):
            batch = consumer.poll(0.5)
            records.extend(batch)
            wanted.difference_update(record.value for record in batch)
        records.extend(consumer.poll(0.5))
    return records


def count_arrivals(
    records: Iterable[Any], expected: Mapping[int, Sequence[bytes]], *, tag: bytes
) -> Arrivals:
    """Compare the records whose value starts with ``tag`` with ``expected`` (partition
    -> the values written there, in order). Reordered: a record whose sequence number
    is below one already seen on its partition (duplicates aside)."""
    arrivals = Arrivals()
    seen: dict[int, Counter[bytes]] = {p: Counter() for p in expected}
    highest: dict[int, int] = {}
    for record in records:
        value = record.value or b""
        if not value.startswith(tag + b":"):
            continue
        arrivals.records += 1
        partition = record.partition
        if partition not in seen:
            arrivals.unexpected += 1
            continue
        seen[partition][value] += 1
        if seen[partition][value] > 1:
            continue
        sequence = int(value.rsplit(b":", 1)[1])
        if sequence < highest.get(partition, -1):
            arrivals.reordered[partition] = arrivals.reordered.get(partition, 0) + 1
        highest[partition] = max(highest.get(partition, -1), sequence)
    for partition, values in expected.items():
        wanted = Counter(values)
        got = seen[partition]
        missing = sum(1 for value in wanted if value not in got)
        extra = sum(count - 1 for count in got.values() if count > 1)
        strangers = sum(count for value, count in got.items() if value not in wanted)
        if missing:
            arrivals.lost[partition] = missing
        if extra:
            arrivals.duplicated[partition] = extra
        arrivals.unexpected += strangers
    return arrivals
