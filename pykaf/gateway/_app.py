"""The gateway as one ASGI application: lifespan, routing, the checks every request
passes (authentication, limits), and errors in Confluent's JSON shape."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pykaf.gateway._access_log import Exchange, GatewayTelemetry
from pykaf.gateway._asgi import (
    ClientGone,
    HttpError,
    JsonResponse,
    Receive,
    Request,
    Scope,
    Send,
    error_body,
)
from pykaf.gateway._backend import Backend
from pykaf.gateway._limits import Limits
from pykaf.gateway._outcomes import unavailable
from pykaf.gateway._route_table import ROUTES
from pykaf.gateway._routes import Context, Route, Router
from pykaf.gateway._security import Security
from pykaf.gateway._settings import GatewaySettings

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("pykaf.gateway")


class Gateway:
    """An ASGI application (``await app(scope, receive, send)``). Kafka clients open at
    startup (ASGI lifespan) or, where the host framework does not pass lifespan on to a
    mounted app, at the first request; ``await app.close()`` flushes and closes."""

    def __init__(self, settings: GatewaySettings, routes: Sequence[Route] | None = None) -> None:
        self.settings = settings
        self.backend = Backend(settings)
        self.security = Security(settings.security)
        self.limits = Limits(settings.limits)
        self.telemetry = GatewayTelemetry()
        self.backend.client_listeners.append(self.telemetry.watch_client)
        self.context = Context(settings, self.backend, self.security, self.limits, self.telemetry)
        self.router = Router(list(ROUTES if routes is None else routes))
        self._start_failure: str | None = None  # the last start at a request that failed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # The access log and the request metrics see what crosses, however it ends.
            exchange, token = self.telemetry.begin(send)
            try:
                await self._answer(scope, receive, send, exchange)
            finally:
                try:
                    self.telemetry.end(exchange, token, scope)
                finally:
                    # The request sends through the exchange (its bound ``send``) and the
                    # exchange holds the request: a cycle, which left both, the scope, the
                    # body and the server's objects of the request to the cyclic collector.
                    # Broken here, they go when the request ends. Measured: the collector
                    # cost /async ~8 us a request (test_request_garbage.py).
                    exchange.request = None
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket and anything else: not ours; the server answers for us.

    async def start(self) -> None:
        await self.backend.start()

    async def close(self, timeout: float | None = None) -> int:
        """Flush and close the Kafka clients within ``timeout`` seconds (None: the
        settings' ``close_timeout``); returns the records still unreported."""
        left = await self.backend.close(self.settings.close_timeout if timeout is None else timeout)
        if left:
            log.warning(
                "the gateway stopped with %d record(s) unreported%s",
                left,
                " (kept in the journal for the next start)" if self.settings.journal_dir else "",
            )
        return left

    async def _start_for_request(self) -> None:
        # A host framework that does not pass lifespan on: the clients start at a request.
        # If they cannot (the journal locked by a live producer, damaged, on a failing
        # disk), every request says why with 503 (the gateway's trouble, retried later),
        # and the log says it once per cause, not once per request.
        try:
            await self.start()
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"
            if cause != self._start_failure:
                self._start_failure = cause
                log.warning("the gateway cannot start its Kafka clients: %s", cause)
            why = f"the gateway cannot start its Kafka clients ({cause})"
            raise unavailable(why, self.settings.retry_after) from None
        self._start_failure = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.close()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        limits = self.settings.limits
        # A handler that answers itself (streaming) sends through the exchange, which
        # looks at what passes; a whole answer goes straight to the server (below).
        request = exchange.request = Request(
            scope,
            receive,
            exchange.send,
            max_body=limits.max_body_bytes,
            read_timeout=limits.body_read_timeout,
        )
        request.started = exchange.started
        admission = None
        try:
            found = self.router.match(request.method, request.path)
            if isinstance(found, list):
                if found:
                    raise HttpError(
                        405,
                        f"{request.method} is not allowed on {request.path}",
                        headers={"allow": ", ".join(sorted(set(found)))},
                    )
                raise HttpError(404, f"no route {request.path}", error_code=404)
            route, params = found
            exchange.route = route.name
            if not route.public:  # health checks and documents: never refused
                request.principal = await self.security.authenticate(request)
                admission = self.limits.admit(request)
            if not self.backend.started:
                await self._start_for_request()
            response = await route.handler(self.context, request, params)
        except HttpError as exc:
            self.limits.observe(exc)
            response = JsonResponse(
                exc.status, error_body(exc.error_code, exc.message, exc.extra), exc.headers
            )
        except ClientGone:
            return
        except Exception as exc:  # a bug of ours: the client gets 500, the log the trace
            log.exception("the gateway failed on %s %s", request.method, request.path)
            response = JsonResponse(500, error_body(500, f"internal error: {type(exc).__name__}"))
        finally:
            if admission is not None:  # a concurrency slot (``limits.max_concurrent``)
                admission.release()
        if response is not None:
            exchange.answered(response.status, len(response.body))
            await response.send_to(send)


def create_app(settings: GatewaySettings) -> Gateway:
    """The gateway as an ASGI application, to serve with any ASGI server or mount in
    any ASGI framework (``pykaf gateway`` serves it with uvicorn)."""
    return Gateway(settings)
