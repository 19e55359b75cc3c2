"""What a broker holds for connections that send slowly, partially or not at all:
the idle timeout, the deadline of a started frame and the cap on partial-request bytes
(Kafka's connections.max.idle.ms and queued.max.request.bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _standalone import start_broker

from pykaf.broker import Cluster
from pykaf.broker._read_budget import ReadBudget

_CONDITION_TIMEOUT = 10.0


def api_versions_frame(correlation_id: int, padding: int = 0) -> bytes:
    """ApiVersions v0 (header v1, client id "t"); Kafka ignores bytes after a body."""
    body = struct.pack(">hhih", 18, 0, correlation_id, 1) + b"t" + bytes(padding)
    return struct.pack(">i", len(body)) + body


async def read_correlation_id(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(_CONDITION_TIMEOUT):
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        payload = await reader.readexactly(size)
    (correlation_id,) = struct.unpack_from(">i", payload)
    return int(correlation_id)


async def closed_by_broker(reader: asyncio.StreamReader) -> bool:
    """True once the broker ends the stream (bounded wait)."""
    async with asyncio.timeout(_CONDITION_TIMEOUT):
        while True:
            try:
                if not await reader.read(65536):
                    return True
            except ConnectionError:
                return True


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(_CONDITION_TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


async def wait_for_waiters(budget: ReadBudget, count: int) -> None:
    await wait_until(lambda: budget.waiting == count)


async def connect(cluster: Cluster) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = cluster.brokers[0]
    return await asyncio.open_connection(address.host, address.port)


async def test_an_idle_connection_is_closed() -> None:
    async with Cluster(1, connections_max_idle=0.2) as cluster:
        reader, writer = await connect(cluster)
        writer.write(api_versions_frame(1))
        assert await read_correlation_id(reader) == 1
        assert await closed_by_broker(reader)
        await wait_until(lambda: cluster.servers[0].connection_count == 0)
        writer.close()


async def test_a_frame_trickling_past_its_deadline_is_closed() -> None:
    # The sender is never idle (a byte every few ms), but its frame does not complete.
    async with Cluster(1, connections_max_idle=60.0, request_receive_timeout=0.3) as cluster:
        reader, writer = await connect(cluster)
        frame = api_versions_frame(1, padding=100_000)
        writer.write(frame[:10])
        closed = asyncio.ensure_future(closed_by_broker(reader))
        for byte in frame[10:2000]:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.005)
        assert await closed
        assert cluster.servers[0].read_budget.reserved == 0
        writer.close()


async def test_the_partial_request_cap_pauses_only_who_needs_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.broker")
    async with Cluster(1, queued_max_request_bytes=64 * 1024) as cluster:
        budget = cluster.servers[0].read_budget
        # A: a 200 KiB request of which 1 KiB arrived. The pool is not strict (as
        # Kafka's): A's reservation is granted though larger than the cap.
        big = api_versions_frame(1, padding=200 * 1024)
        reader_a, writer_a = await connect(cluster)
        writer_a.write(big[:1024])
        await wait_until(lambda: budget.reserved == len(big))
        # B: a 10 KiB request that straddles reads must wait for space.
        small = api_versions_frame(2, padding=10 * 1024)
        reader_b, writer_b = await connect(cluster)
        writer_b.write(small[:100])
        await wait_until(lambda: budget.waiting == 1)
        writer_b.write(small[100:])
        # C: whole small requests are served while the pool is spent.
        reader_c, writer_c = await connect(cluster)
        for correlation_id in range(10, 15):
            writer_c.write(api_versions_frame(correlation_id))
            assert await read_correlation_id(reader_c) == correlation_id
        assert budget.waiting == 1
        assert budget.reserved == len(big)
        # A completes its request: its bytes are released and B resumes.
        writer_a.write(big[1024:])
        assert await read_correlation_id(reader_a) == 1
        assert await read_correlation_id(reader_b) == 2
        for writer in (writer_a, writer_b, writer_c):
            writer.close()
        await wait_until(lambda: cluster.servers[0].connection_count == 0)
        assert budget.reserved == 0
        assert budget.waiting == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "queued_max_request_bytes" in warnings[0].getMessage()


async def test_reservations_are_released_when_connections_close() -> None:
    async with Cluster(1) as cluster:
        budget = cluster.servers[0].read_budget
        writers = []
        for _ in range(5):
            _, writer = await connect(cluster)
            # (past the first frame, which the pre-authentication limit caps at 512 KiB)
            writer.write(
                api_versions_frame(0) + api_versions_frame(1, padding=1024 * 1024)[:50_000]
            )
            writers.append(writer)
        await wait_until(lambda: budget.reserved == 5 * (1024 * 1024 + 4 + 11))
        for writer in writers:
            writer.close()
        await wait_until(lambda: cluster.servers[0].connection_count == 0)
        assert budget.reserved == 0


@pytest.mark.parametrize(
    "setting",
    [
        {"queued_max_request_bytes": 0},
        {"connections_max_idle": 0},
        {"request_receive_timeout": -1.0},
        {"connections_max_idle": "10"},
    ],
)
def test_bad_read_limits_are_refused(setting: dict[str, object]) -> None:
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name):
        Cluster(1, **setting)  # type: ignore[arg-type]


def _rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_many_partial_giant_frames_stay_near_the_cap(tmp_path: Path) -> None:
    # 20 connections each declare a 100 MiB request and try to send 30 MiB of it: without
    # a cap the broker held all of it (600+ MiB). The bound here is deliberately generous.
    broker = start_broker(tmp_path, brokers=1)
    try:
        host, port = broker.bootstrap.split(",")[0].rsplit(":", 1)
        before = _rss_mib(broker.proc.pid)
        chunk = bytes(1024 * 1024)
        sockets = []
        try:
            for _ in range(20):
                sock = socket.create_connection((host, int(port)), timeout=5.0)
                sockets.append(sock)
                sock.sendall(api_versions_frame(0) + struct.pack(">i", 100 * 1024 * 1024))
                sock.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    for _ in range(30):
                        sock.sendall(chunk)
            held = _rss_mib(broker.proc.pid) - before
        finally:
            for sock in sockets:
                sock.close()
        assert held < 350, f"the broker grew by {held} MiB holding partial requests"
        # Memory comes back once they are gone (nothing waits for the cyclic GC).
        deadline = time.monotonic() + _CONDITION_TIMEOUT
        while (kept := _rss_mib(broker.proc.pid) - before) >= 40:
            assert time.monotonic() < deadline, f"{kept} MiB still held after the close"
            time.sleep(0.05)
    finally:
        broker.stop()


async def test_one_warning_per_episode_however_many_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = ReadBudget(100, owner="broker 1")
    assert budget.try_reserve(100)
    # Four connections queue up; space frees one holder at a time, and each woken waiter
    # spends it again: all one episode, one warning.
    waiters = []
    for _ in range(4):
        assert not budget.try_reserve(100)
        waiters.append(asyncio.ensure_future(budget.wait_for_space()))
    await wait_until(lambda: budget.waiting == 4)
    for queued in range(3, -1, -1):
        budget.release(100)
        await asyncio.sleep(0)
        assert budget.try_reserve(100)
        for _ in range(queued):  # the others were woken too; they queue again
            assert not budget.try_reserve(100)
            waiters.append(asyncio.ensure_future(budget.wait_for_space()))
        await wait_for_waiters(budget, queued)
    budget.release(100)
    assert budget.reserved == 0
    await asyncio.wait(waiters, timeout=_CONDITION_TIMEOUT)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def _partial_frame_buffers() -> int:
    return sum(
        1
        for obj in gc.get_objects()
        if type(obj).__name__ == "_FrameBuffer" and getattr(obj, "buffered", 0) > 0
    )


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_a_connection_closed_mid_frame_frees_its_buffer_at_once(how: str) -> None:
    # The framing error kept on the connection (or the socket error kept by the stream
    # reader), with its traceback, made a reference cycle: the partial frame stayed in
    # memory until the cyclic GC happened to run.
    async with Cluster(1) as cluster:
        gc.collect()
        gc.disable()
        try:
            _, writer = await connect(cluster)
            writer.write(api_versions_frame(1, padding=300_000)[:200_000])
            await wait_until(lambda: cluster.servers[0].read_budget.reserved > 0)
            assert _partial_frame_buffers() == 1
            if how == "reset":  # RST instead of FIN: the broker's read fails
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            await wait_until(lambda: cluster.servers[0].connection_count == 0)
            assert _partial_frame_buffers() == 0
        finally:
            gc.enable()
