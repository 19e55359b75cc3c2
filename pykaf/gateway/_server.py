"""Serving the gateway with uvicorn: ``serve(settings, ...)`` and ``serve_async``.

The socket is bound here rather than by uvicorn, so that port 0 (a free port) works
and the URL announced (``on_listening``) is the real one. SIGTERM and SIGINT stop it
gracefully: no new connections, requests in flight finish (within
``graceful_timeout``), then the app's lifespan shutdown flushes and closes the
producers (``Gateway.close()``: what is not delivered stays in the journal, when there
is one). The signal is then spent: ``serve`` returns normally rather than re-raising it
the way uvicorn does, so ``pykaf gateway`` exits 0 after a clean stop.

uvicorn is the ``gateway`` extra: it is imported only here, when serving, so the ASGI
app stays importable (and mountable elsewhere) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pykaf.gateway._app import Gateway, create_app
from pykaf.gateway._security import check_binding
from pykaf.gateway._settings import GatewaySettings
from pykaf.gateway._tls_scope import Parser, uvicorn_options

__all__ = ["ServerSettings", "serve", "serve_async"]

_PARSERS: Final = ("auto", "httptools", "h11")
_INSTALL: Final = "pip install 'pykaf[gateway]'"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where and how ``serve`` listens (TLS on the HTTP side is part of the security
    settings, with the credentials it serves)."""

    #: Address to listen on. Beyond loopback the gateway insists on authentication
    #: (or ``allow_anonymous``): see ``SecuritySettings``.
    host: str = "127.0.0.1"
    #: Port to listen on (0: a free one; ``on_listening`` is told which).
    port: int = 8080
    #: Seconds requests in flight get to finish once a stop is asked for (SIGTERM); then
    #: the producers flush within the gateway's ``close_timeout`` (``GatewaySettings``).
    graceful_timeout: float = 30.0
    #: The HTTP parser: httptools when installed ("auto"), else h11.
    parser: Parser = "auto"
    #: Connections the kernel queues before the server accepts them.
    backlog: int = 2048
    #: Once started, move every object alive to the collector's permanent generation
    #: (``gc.freeze()``, as CPython's ``gc`` docs advise for servers): see
    #: ``_freeze_start_up``. Process-wide: turn it off when the program serving the
    #: gateway wants its own collector settings.
    freeze_gc: bool = True
    #: Once started, the collector's young-generation threshold (the first number of
    #: ``gc.set_threshold``; Python's default is 700): see ``_freeze_start_up``. None
    #: keeps the process's own. Process-wide, as ``freeze_gc``.
    gc_threshold: int | None = 50_000

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be an address or host name, not {self.host!r}")
        if not _whole(self.port) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be a whole number 0..65535, not {self.port!r}")
        if not _number(self.graceful_timeout) or self.graceful_timeout < 0:
            raise ValueError(
                f"graceful_timeout must be a number of seconds >= 0, not {self.graceful_timeout!r}"
            )
        if self.parser not in _PARSERS:
            raise ValueError(f"parser must be one of {', '.join(_PARSERS)}, not {self.parser!r}")
        if not _whole(self.backlog) or self.backlog < 1:
            raise ValueError(f"backlog must be a whole number >= 1, not {self.backlog!r}")
        if self.gc_threshold is not None and (
            not _whole(self.gc_threshold) or self.gc_threshold < 1
        ):
            raise ValueError(
                f"gc_threshold must be a whole number >= 1 or None, not {self.gc_threshold!r}"
            )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def serve(
    settings: GatewaySettings | Gateway,
    server: ServerSettings | None = None,
    *,
    on_listening: Callable[[str], None] | None = None,
    **server_options: Any,
) -> None:
    """Serve the gateway until SIGTERM or SIGINT (blocking; run it in the main thread to
    get the signals). ``server`` or ``server_options`` (``host``, ``port``...): see
    ``ServerSettings``. ``on_listening(url)`` is called once it accepts connections."""
    asyncio.run(serve_async(settings, server, on_listening=on_listening, **server_options))


async def serve_async(
    settings: GatewaySettings | Gateway,
    server: ServerSettings | None = None,
    *,
    on_listening: Callable[[str], None] | None = None,
    **server_options: Any,
) -> None:
    """``serve`` on the running event loop: returns after a graceful stop."""
    if server is None:
        server = ServerSettings(**server_options)
    elif server_options:
        raise TypeError("give either server=ServerSettings(...) or its options, not both")
    app = settings if isinstance(settings, Gateway) else create_app(settings)
    check_binding(server.host, app.settings.security)
    uvicorn = _import_uvicorn()
    options = _uvicorn_options(app, server.parser)
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        lifespan="on",
        ws="none",
        log_config=None,  # the host program's logging, untouched
        access_log=False,  # the gateway writes its own (pykaf.gateway.access)
        server_header=False,
        backlog=server.backlog,
        timeout_graceful_shutdown=server.graceful_timeout,
        **options,
    )
    listener = _bind(server.host, server.port, server.backlog)
    scheme = "https" if options.get("ssl_certfile") else "http"
    url = f"{scheme}://{_url_host(server.host)}:{listener.getsockname()[1]}"
    # Open the journal (it replays what an earlier run left) before accepting anyone:
    # a locked or unreadable journal fails here, with its own error, not in uvicorn.
    try:
        await app.start()
    except BaseException:
        listener.close()
        raise
    if server.freeze_gc:
        _freeze_start_up()
    if server.gc_threshold is not None:
        # A batch of 1,000 lines makes 1,000 record tuples: with Python's threshold of
        # 700 container allocations, more than one young collection per request, and
        # the older generations' collections that follow walk the records of every
        # batch in flight. Measured (benchmarks/gateway.py, /batch/async, alternating
        # runs): 0.36-0.38 -> 0.33-0.35 us of server user CPU a record.
        gc.set_threshold(server.gc_threshold, *gc.get_threshold()[1:])
    await _server_class(uvicorn)(config, url, on_listening).serve(sockets=[listener])


def _freeze_start_up() -> None:
    # A started gateway holds a large heap that lives as long as the process (the
    # protocol's schema classes, the clients, the settings): every full collection,
    # which the requests' short-lived objects trigger every few hundred requests,
    # scanned all of it. Frozen, it is never scanned again (garbage first, so none is
    # kept). Measured (benchmarks/gateway.py, /async): 106-110 -> 70-75 us of server
    # CPU per request, p99 55 -> 10 ms.
    gc.collect()
    gc.freeze()


def _import_uvicorn() -> Any:
    try:
        return importlib.import_module("uvicorn")
    except ImportError as exc:
        raise ImportError(f"serving the gateway needs uvicorn: {_INSTALL}") from exc


def _server_class(uvicorn: Any) -> Any:
    class _Server(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server, announcing its URL, and keeping the stop signal to itself."""

        def __init__(
            self, config: Any, url: str, on_listening: Callable[[str], None] | None
        ) -> None:
            super().__init__(config)
            self.url = url
            self.on_listening = on_listening

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            except SystemExit as exc:  # uvicorn's way to say startup failed
                raise RuntimeError(f"the gateway could not start (uvicorn: {exc.code})") from None
            if self.started and self.on_listening is not None:
                self.on_listening(self.url)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # As uvicorn, minus raising the signal again after the graceful stop: that
            # would end the process by the signal (status -15) after a clean shutdown.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return _Server


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets that say it
    # (socket.create_server's say 0), and without it each answer, head and body
    # written apart, waits for the client's delayed ACK: 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _url_host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[{host}]" if address.version == 6 else host


def _uvicorn_options(app: Gateway, parser: Parser) -> dict[str, Any]:
    # The protocol (the ASGI TLS extension, the head limits) and TLS, from the security
    # and limit settings; the app's Limits counts what the server refuses.
    return uvicorn_options(app.settings.security, app.limits, parser=parser)
