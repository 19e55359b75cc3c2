"""A standalone broker (``python -m pykaf.broker``) in a subprocess, stopped by its pid.

Crash tests SIGKILL it (no shutdown code runs, exactly like a crash of the process) and
start it again on the same data directory and, for long-running clients, the same ports.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Standalone", "free_port_range", "start_broker"]

_START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Standalone:
    proc: subprocess.Popen[str]
    bootstrap: str
    control: str

    def kill(self) -> None:
        """SIGKILL by pid: the broker gets no chance to flush or save anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_pipes()

    def stop(self) -> int:
        """SIGTERM by pid and wait for the exit status (SIGKILL if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._close_pipes()
        return self.proc.returncode

    def stderr(self) -> str:
        """Everything the broker logged (call after kill() or stop())."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if not self.proc.stderr.closed else ""

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_broker(
    data_dir: Path, *, brokers: int = 3, port: int = 0, args: tuple[str, ...] = ()
) -> Standalone:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykaf.broker",
            *("--port", str(port), "--brokers", str(brokers)),
            *("--data-dir", str(data_dir), "--control-port", "0"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT)
        assert ready, f"the broker printed no addresses within {_START_TIMEOUT} s"
        bootstrap = proc.stdout.readline().strip()
        control = proc.stdout.readline().strip()
        assert control.startswith("control="), (
            bootstrap,
            control,
            proc.stderr and proc.stderr.read(),
        )
    except BaseException:
        proc.kill()
        proc.wait(timeout=5)
        raise
    return Standalone(proc=proc, bootstrap=bootstrap, control=control.removeprefix("control="))


def free_port_range(count: int, *, attempts: int = 50) -> int:
    """A first port P such that P..P+count-1 are free right now (bounded attempts)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count - 1 > 65535:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports in {attempts} attempts")
