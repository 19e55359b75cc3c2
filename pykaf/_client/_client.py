"""``Client``: the blocking twin of ``AsyncClient``, on a private loop in a daemon thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from functools import partial
from types import TracebackType
from typing import Any, Final, Self

from pykaf._client._async_client import AsyncClient
from pykaf._client._loop_thread import LoopThread
from pykaf._client._metadata import ClusterMetadata
from pykaf._client._settings import ClientSettings
from pykaf._client._targets import Purpose, Target
from pykaf._client._versions import BrokerApiVersions
from pykaf._errors import ClientForkedError, KafkaTimeoutError
from pykaf.protocol._messages import Payload

__all__ = ["Client"]

# Extra wait on top of an operation's own timeout before the blocking side gives up: the
# async side raises its own typed error first, this only guards against a stuck loop.
_MARGIN: Final = 1.0


class Client:
    """Blocking client: every method is the blocking twin of ``AsyncClient``'s.

    Thread-safe: calls from several threads run concurrently on the private loop. Use as
    a context manager, or call ``close()``; it never takes much more than
    ``close_timeout`` seconds, even with every broker down.
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        settings: ClientSettings | None = None,
        **options: Any,
    ) -> None:
        # Validate in the caller's thread, so bad settings raise before a thread starts.
        aclient = AsyncClient(bootstrap, settings=settings, **options)
        self.settings = aclient.settings
        self.bootstrap = aclient.bootstrap
        self._aclient = aclient
        #: The telemetry bus (``AsyncClient.events``); subscribers run on the loop thread.
        self.events = aclient.events
        self.stats = aclient.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        self._loop = LoopThread()
        self._close_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Client {','.join(map(str, self.bootstrap))} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _bound(self, timeout: float | None) -> float:
        return (self.settings.request_timeout if timeout is None else timeout) + _MARGIN

    def request(
        self,
        request: Payload,
        *,
        to: Target = "any",
        purpose: Purpose = "other",
        timeout: float | None = None,
    ) -> Any:
        """Blocking ``AsyncClient.request``: send a kio request, return its response."""
        make = partial(self._aclient.request, request, to=to, purpose=purpose, timeout=timeout)
        return self._loop.run(make, self._bound(timeout))

    def metadata(
        self, topics: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> ClusterMetadata:
        """Blocking ``AsyncClient.metadata``."""
        if topics is not None and not isinstance(topics, str):
            topics = list(topics)  # iterate in the caller's thread, not the loop's
        make = partial(self._aclient.metadata, topics, timeout=timeout)
        return self._loop.run(make, self._bound(timeout))

    def api_versions(
        self, node: Target | None = None, *, timeout: float | None = None
    ) -> BrokerApiVersions:
        """Blocking ``AsyncClient.api_versions``."""
        make = partial(self._aclient.api_versions, node, timeout=timeout)
        return self._loop.run(make, self._bound(timeout))

    def close(self) -> None:
        """Close the connections (pending calls fail with ``ClientClosedError``), then stop
        the private loop; bounded by ``close_timeout`` plus a small margin."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            # A loop too stuck to close in time is abandoned: close() must return.
            # A copy in a forked child (ClientForkedError) has nothing of its own to close.
            with contextlib.suppress(KafkaTimeoutError, ClientForkedError):
                self._loop.run(self._aclient.close, self.settings.close_timeout + _MARGIN)
        finally:
            self._loop.stop(_MARGIN)
