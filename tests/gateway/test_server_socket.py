"""The socket ``serve`` binds itself (so that port 0 works and the URL is known)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from pykaf.broker import BlockingCluster
from pykaf.gateway._server import _bind


async def test_accepted_connections_get_tcp_nodelay() -> None:
    # Regression: a socket from socket.create_server has protocol 0, and asyncio sets
    # TCP_NODELAY only on TCP sockets that say IPPROTO_TCP: every answer (head and body
    # written apart) then waited for the client's delayed ACK, 40 ms a request.
    listener = _bind("127.0.0.1", 0, 16)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


_FREEZE_PROBE = """
import gc, os, signal, sys
from pykaf.gateway import GatewaySettings, serve

START = gc.get_freeze_count()  # the interpreter's own (0 on 3.11, 375 on 3.12.1)

def listening(url):
    print(gc.get_freeze_count() - START, *gc.get_threshold(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

gc.set_threshold(700, 11, 12)
serve(GatewaySettings(bootstrap=sys.argv[1]), port=0, on_listening=listening,
      freeze_gc=sys.argv[2] == "on", gc_threshold=50_000 if sys.argv[2] == "on" else None)
"""


@pytest.mark.parametrize("freeze", ["on", "off"])
def test_the_server_freezes_its_start_up_heap_and_raises_the_young_threshold(
    kafka: BlockingCluster, freeze: str
) -> None:
    # Every full collection scanned the started gateway's heap (the protocol's schema
    # classes, the clients): p99 of /async 44-48 ms, 13-14 ms with it frozen.
    done = subprocess.run(
        [sys.executable, "-c", _FREEZE_PROBE, kafka.bootstrap, freeze],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    frozen, *threshold = map(int, done.stdout.split())
    if freeze == "on":
        assert frozen > 10_000  # the heap a started gateway holds
        # One young collection per 50,000 container allocations, not per 700 (a batch
        # of 1,000 lines makes 1,000 record tuples); the older generations' own.
        assert threshold == [50_000, 11, 12]
    else:
        assert frozen == 0
        assert threshold == [700, 11, 12]  # the process's own, untouched
