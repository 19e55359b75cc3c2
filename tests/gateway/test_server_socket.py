"""The socket ``serve`` binds itself (so that port 0 works and the URL is known)."""

from __future__ import annotations

import asyncio
import socket

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
