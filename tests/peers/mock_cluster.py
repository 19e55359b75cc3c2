"""librdkafka's mock cluster as a test peer, hosted in a child process.

The C mock cluster ships inside the confluent-kafka wheel. ``_mock_cluster_child.py`` loads it
with ctypes in a separate process and takes commands as JSON lines; :class:`MockCluster` is
the blocking parent side. Known quirks: no CreateTopics (use :meth:`MockCluster.create_topic`),
about 5 MiB kept per partition.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

__all__ = [
    "MockCluster",
    "MockClusterError",
    "MockRequest",
    "find_librdkafka",
    "mock_cluster",
    "mock_cluster_factory",
    "mock_cluster_session",
]

_CHILD_SCRIPT = Path(__file__).with_name("_mock_cluster_child.py")
_STDERR_TAIL = 4000  # bytes of the child's stderr quoted when it fails


class MockClusterError(RuntimeError):
    """The mock cluster refused a command, timed out, or its process died."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MockRequest:
    """One request the mock cluster received while request tracking was on."""

    broker_id: int
    api_key: int
    timestamp_us: int  # librdkafka's monotonic clock, microseconds


def find_librdkafka() -> str:
    """Path of the librdkafka shared library bundled in the confluent-kafka wheel."""
    import confluent_kafka

    site = Path(confluent_kafka.__file__).resolve().parent.parent
    matches = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka-*.so*")))
    if not matches:
        raise MockClusterError(f"no librdkafka-*.so in {site / 'confluent_kafka.libs'}")
    return matches[0]


class MockCluster:
    """A librdkafka mock cluster with ``brokers`` brokers (ids 1..brokers) on 127.0.0.1.

    Every method blocks until the child acknowledges, at most ``command_timeout`` seconds.
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        start_timeout: float = 15.0,
        command_timeout: float = 10.0,
        group_initial_rebalance_delay_ms: int | None = 0,
    ) -> None:
        if brokers < 1:
            raise ValueError("a mock cluster needs at least one broker")
        self.brokers = brokers
        self.command_timeout = command_timeout
        self._buffer = bytearray()
        self._closed = False
        library = find_librdkafka()
        # stderr goes to a file, not a pipe: nobody would drain a pipe, and the file's tail
        # explains a crash. It lives as long as the child, hence no `with`.
        self._stderr = tempfile.TemporaryFile(prefix="pykaf-mock-cluster-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, str(_CHILD_SCRIPT), library, str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            close_fds=True,
        )
        self.pid: int = self._proc.pid
        try:
            hello = self._read_reply(time.monotonic() + start_timeout, "start")
            if not hello.get("ok"):
                raise MockClusterError(f"mock cluster failed to start: {hello.get('error')}")
            self.bootstrap: str = hello["bootstrap"]
            self.addresses: dict[int, tuple[str, int]] = _parse_bootstrap(self.bootstrap)
            if group_initial_rebalance_delay_ms is not None:
                self.set_group_initial_rebalance_delay(group_initial_rebalance_delay_ms)
        except BaseException:
            self._kill()
            raise

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to destroy the cluster; kill it by pid if it does not exit in time."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.alive:
                with contextlib.suppress(MockClusterError):
                    self._command("stop", {}, min(timeout, self.command_timeout))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout)
        finally:
            self._kill()

    def _kill(self) -> None:
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()  # SIGKILL to our own child, by pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5.0)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    # -- wire to the child --------------------------------------------------------------

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            return self._stderr.read().decode(errors="replace")
        return ""

    def _died(self, what: str) -> MockClusterError:
        code = self._proc.poll()
        return MockClusterError(
            f"mock cluster child (pid {self.pid}) died during {what} "
            f"(exit status {code}); stderr tail:\n{self._stderr_tail()}"
        )

    def _read_reply(self, deadline: float, what: str) -> dict[str, Any]:
        stdout = self._proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        # Bounded by the deadline; each pass either consumes bytes, sees EOF, or waits.
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MockClusterError(
                    f"mock cluster (pid {self.pid}) did not answer {what} in time"
                )
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(1.0)
                raise self._died(what)
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise MockClusterError(f"garbled reply to {what}: {line[:200]!r}") from exc
        return reply

    def _command(self, cmd: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        if self._closed and cmd != "stop":
            raise MockClusterError(f"mock cluster is closed (command {cmd})")
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise self._died(cmd) from exc
        limit = self.command_timeout if timeout is None else timeout
        reply = self._read_reply(time.monotonic() + limit, cmd)
        if not reply.get("ok"):
            raise MockClusterError(f"{cmd}: {reply.get('error')}")
        return reply.get("result")

    # -- topics and partitions ----------------------------------------------------------

    def create_topic(self, topic: str, partitions: int = 1, replication: int = 1) -> None:
        """Create a topic (the mock has no CreateTopics API). Replication <= broker count."""
        self._command(
            "create_topic",
            {"topic": topic, "partitions": partitions, "replication": replication},
        )

    def set_topic_error(self, topic: str, code: int) -> None:
        """Error code returned for ``topic`` in Metadata (and AddPartitionsToTxn); 0 clears."""
        self._command("set_topic_error", {"topic": topic, "code": code})

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move a partition's leader (-1: leaderless). Creates the topic if missing."""
        self._command(
            "set_leader", {"topic": topic, "partition": partition, "broker_id": broker_id}
        )

    def set_follower(self, topic: str, partition: int, broker_id: int) -> None:
        """Preferred read replica the leader hands out to rack-aware fetchers."""
        self._command(
            "set_follower", {"topic": topic, "partition": partition, "broker_id": broker_id}
        )

    def set_follower_watermarks(self, topic: str, partition: int, low: int, high: int) -> None:
        """Watermarks the follower reports (-1 reverts to the leader's)."""
        self._command(
            "set_follower_watermarks",
            {"topic": topic, "partition": partition, "low": low, "high": high},
        )

    # -- brokers ------------------------------------------------------------------------

    def broker_down(self, broker_id: int) -> None:
        """Close the broker's connections and refuse new ones (-1: all). No leader change."""
        self._command("broker_down", {"broker_id": broker_id})

    def broker_up(self, broker_id: int) -> None:
        """Accept connections again on the same port (-1: all)."""
        self._command("broker_up", {"broker_id": broker_id})

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of a broker (-1: all) by ``rtt_ms`` milliseconds."""
        self._command("set_rtt", {"broker_id": broker_id, "rtt_ms": rtt_ms})

    def set_rack(self, broker_id: int, rack: str) -> None:
        self._command("set_rack", {"broker_id": broker_id, "rack": rack})

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        """Pin the coordinator for a ``"group"`` or ``"transaction"`` key."""
        self._command("set_coordinator", {"key_type": key_type, "key": key, "broker_id": broker_id})

    def set_apiversion(self, api_key: int, min_version: int, max_version: int) -> None:
        """Narrow the advertised version range of an API (-1, -1 disables it)."""
        self._command(
            "set_apiversion",
            {"api_key": api_key, "min_version": min_version, "max_version": max_version},
        )

    def set_group_initial_rebalance_delay(self, delay_ms: int) -> None:
        self._command("set_group_initial_rebalance_delay", {"delay_ms": delay_ms})

    # -- error injection ----------------------------------------------------------------

    def push_request_errors(self, api_key: int, codes: Sequence[int]) -> None:
        """The next ``len(codes)`` requests of ``api_key`` (any broker) fail with these codes.

        Code -195 (librdkafka's ``_TRANSPORT``) makes the broker drop the connection instead.
        """
        self._command("push_request_errors", {"api_key": api_key, "codes": list(codes)})

    def clear_request_errors(self, api_key: int) -> None:
        self._command("clear_request_errors", {"api_key": api_key})

    def push_broker_request_errors(
        self, broker_id: int, api_key: int, errors: Sequence[tuple[int, int]]
    ) -> None:
        """Per-broker stack of ``(error_code, rtt_ms)``; 0 code = answer normally after rtt."""
        self._command(
            "push_broker_request_errors",
            {
                "broker_id": broker_id,
                "api_key": api_key,
                "errors": [[code, rtt] for code, rtt in errors],
            },
        )

    def broker_error_stack_count(self, broker_id: int, api_key: int) -> int:
        """How many injected per-broker errors for ``api_key`` are still pending."""
        count: int = self._command(
            "broker_error_stack_count", {"broker_id": broker_id, "api_key": api_key}
        )
        return count

    # -- request tracking ---------------------------------------------------------------

    def start_request_tracking(self) -> None:
        self._command("start_request_tracking", {})

    def stop_request_tracking(self) -> None:
        self._command("stop_request_tracking", {})

    def get_requests(self) -> list[MockRequest]:
        """Requests received since tracking started (or the last clear), in arrival order."""
        rows: list[list[int]] = self._command("get_requests", {})
        return [MockRequest(broker_id=b, api_key=k, timestamp_us=t) for b, k, t in rows]

    def clear_requests(self) -> None:
        self._command("clear_requests", {})

    def ping(self) -> None:
        self._command("ping", {})


def _parse_bootstrap(bootstrap: str) -> dict[int, tuple[str, int]]:
    # The mock lists its brokers in id order (checked by the peer tests against Metadata).
    addresses: dict[int, tuple[str, int]] = {}
    for broker_id, entry in enumerate(bootstrap.split(","), start=1):
        host, _, port = entry.rpartition(":")
        addresses[broker_id] = (host, int(port))
    return addresses


# -- fixtures (registered in tests/conftest.py) --------------------------------------------


@pytest.fixture
def mock_cluster_factory() -> Iterator[Callable[..., MockCluster]]:
    """Call with ``(brokers=3, **kwargs)`` for as many clusters as a test needs; all closed."""
    started: list[MockCluster] = []

    def start(brokers: int = 3, **kwargs: Any) -> MockCluster:
        cluster = MockCluster(brokers, **kwargs)
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        for cluster in started:
            cluster.close()


@pytest.fixture
def mock_cluster() -> Iterator[MockCluster]:
    """A fresh 3-broker mock cluster for one test."""
    with MockCluster(3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mock_cluster_session() -> Iterator[MockCluster]:
    """One 3-broker mock cluster shared by the whole run: use unique topic names, and
    undo any fault injection (broker_up, clear_request_errors, set_rtt 0) before returning.
    """
    with MockCluster(3) as cluster:
        yield cluster
