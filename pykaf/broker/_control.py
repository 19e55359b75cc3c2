"""The control endpoint of a standalone broker: its faults over JSON-over-HTTP.

``pykaf broker --control-port P`` serves, on 127.0.0.1 only:

- ``GET /status``: the brokers (id, port, up) and what faults are armed;
- ``POST /faults/NAME`` with a JSON object of keyword arguments: calls ``Faults.NAME``
  (``broker_down {"node_id": 2}``, ``push_errors {"api": "Produce", "codes": [6, 6]}``...).
  ``hold_responses`` answers ``{"hold": ID}``; ``POST /faults/release {"hold": ID}`` lets
  those responses go.

Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}`` with a
4xx status. The server is asyncio only (no dependency), one request per connection, with
bounded sizes and time. ``control()`` and ``main()`` are the client side, for scripts:
``python -m pykaf.broker.control --control 127.0.0.1:P broker_down 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import inspect
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, Final

from pykaf._errors import PykafError
from pykaf.broker._cluster import Cluster
from pykaf.broker._faults import Faults

__all__ = ["ControlServer", "control", "main", "status"]

log = logging.getLogger("pykaf.broker")

CONTROL_HOST: Final = "127.0.0.1"
_MAX_HEAD: Final = 16 * 1024
_MAX_BODY: Final = 1024 * 1024
_REQUEST_TIMEOUT: Final = 10.0
# What the endpoint exposes of ``Faults`` (plus "release", which names a hold by id).
FAULTS: Final = (
    "broker_down",
    "broker_up",
    "move_leader",
    "push_errors",
    "set_latency",
    "set_throttle",
    "drop_connection_after",
    "hold_responses",
    "clear",
)
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ControlServer:
    """Serves the faults of ``cluster`` on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(self, cluster: Cluster, *, port: int = 0) -> None:
        self._cluster = cluster
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` once started."""
        if self._server is None:
            raise RuntimeError("the control endpoint is not running")
        return f"{CONTROL_HOST}:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, CONTROL_HOST, self._port, limit=_MAX_HEAD, reuse_address=True
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                status, body = (
                    200,
                    await asyncio.wait_for(self._handle(reader), timeout=_REQUEST_TIMEOUT),
                )
            except _HttpError as exc:
                status, body = exc.status, {"ok": False, "error": str(exc)}
            data = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("control endpoint: dropped a request: %s", exc)
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        head = await reader.readuntil(b"\r\n\r\n")  # LimitOverrunError is a ValueError
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ")
        except ValueError:
            raise _HttpError(400, "malformed request line") from None
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _HttpError(400, "bad Content-Length") from None
        if not 0 <= length <= _MAX_BODY:
            raise _HttpError(400, f"a body of {length} bytes is not accepted")
        raw = await reader.readexactly(length) if length else b""
        if path == "/status":
            if method != "GET":
                raise _HttpError(405, "use GET /status")
            return {"ok": True, "result": self._status()}
        if not path.startswith("/faults/"):
            raise _HttpError(404, f"no such endpoint: {path}")
        if method != "POST":
            raise _HttpError(405, f"use POST {path}")
        try:
            kwargs = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise _HttpError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise _HttpError(400, "the body must be a JSON object of keyword arguments")
        return {"ok": True, "result": await self._call(path.removeprefix("/faults/"), kwargs)}

    def _status(self) -> dict[str, Any]:
        state = self._cluster.state
        return {
            "brokers": [
                {
                    "node_id": b.node_id,
                    "host": b.host,
                    "port": b.port,
                    "up": state.brokers[b.node_id].up,
                }
                for b in self._cluster.brokers
            ],
            "faults": self._cluster.faults.summary(),
        }

    async def _call(self, name: str, kwargs: dict[str, Any]) -> Any:
        faults = self._cluster.faults
        try:
            if name == "release":
                faults.hold(int(kwargs["hold"])).release()
                return None
            if name not in FAULTS:
                raise _HttpError(404, f"no fault {name!r}; known: {', '.join(FAULTS)}, release")
            result = getattr(faults, name)(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except _HttpError:
            raise
        except KeyError as exc:
            raise _HttpError(404, f"no hold {exc}") from None
        except (TypeError, ValueError, PykafError) as exc:
            raise _HttpError(400, f"{name}: {exc}") from None
        if name == "hold_responses":
            return {"hold": result.hold_id}
        return None


# -- the client side -------------------------------------------------------------------------


def _request(address: str, method: str, path: str, body: object, timeout: float) -> Any:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host or CONTROL_HOST, int(port), timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if not answer.get("ok"):
        raise ValueError(answer.get("error", "the control endpoint refused the request"))
    return answer.get("result")


def control(address: str, fault: str, /, *, timeout: float = 10.0, **kwargs: Any) -> Any:
    """Call ``fault`` on the broker whose control endpoint is ``address`` (``host:port``).
    Raises ``ValueError`` with the endpoint's reason if it refuses."""
    return _request(address, "POST", f"/faults/{fault}", kwargs, timeout)


def status(address: str, *, timeout: float = 10.0) -> Any:
    """The brokers and the armed faults of the broker at ``address``."""
    return _request(address, "GET", "/status", None, timeout)


def _value(token: str) -> Any:
    """A command-line value: JSON when it parses ("2", "true", "[6, 6]"), a list for
    "6,6", else the string itself ("Produce")."""
    try:
        return json.loads(token)
    except ValueError:
        pass
    if "," in token:
        return [_value(part) for part in token.split(",") if part]
    return token


def _parameters(fault: str) -> list[str]:
    if fault == "release":
        return ["hold"]
    signature = inspect.signature(getattr(Faults, fault))
    return [p.name for p in signature.parameters.values() if p.name != "self"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pykaf.broker.control --control HOST:PORT COMMAND [ARG...] [KEY=VALUE...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pykaf.broker.control",
        description="Inject faults into a standalone pykaf broker started with --control-port.",
        epilog="commands: status, release HOLD, "
        + ", ".join(FAULTS)
        + ". Example: push_errors Produce 6,6 broker=1",
    )
    parser.add_argument("--control", required=True, help="the control address, host:port")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("command")
    parser.add_argument("args", nargs="*", help="positional values, then KEY=VALUE pairs")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            result = status(args.control, timeout=args.timeout)
        else:
            if args.command not in (*FAULTS, "release"):
                parser.error(f"unknown command {args.command!r}")
            names = _parameters(args.command)
            kwargs: dict[str, Any] = {}
            positional = [t for t in args.args if "=" not in t]
            if len(positional) > len(names):
                parser.error(f"{args.command} takes at most {len(names)} positional values")
            kwargs.update(zip(names, map(_value, positional), strict=False))
            for token in args.args:
                if "=" in token:
                    key, _, value = token.partition("=")
                    kwargs[key] = _value(value)
            result = control(args.control, args.command, timeout=args.timeout, **kwargs)
    except (OSError, ValueError) as exc:
        print(f"pykaf broker control: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
