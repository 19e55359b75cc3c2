"""Broker outages in the log: one WARNING when an episode begins, one INFO when it ends.

A broker that cannot be reached is retried with backoff, many times a second at first:
a line per attempt would bury the one that matters, and none at all (as before) hid even
a whole-cluster outage. So, per address, an episode: its first failure logs at WARNING
with the cause and what to check, later failures are only counted, and the first
connection that succeeds logs at INFO how long it lasted and how many attempts failed.
The cluster as a whole has episodes too: when no broker (bootstrap addresses included)
can be reached, which is what a producer or consumer waiting for metadata is stuck on.

A broker that keeps dropping its connections (it closes each one on a request it cannot
take, say) begins an episode a second: past ``FLAP_WARNINGS`` episodes within
``FLAP_WINDOW`` seconds it is flapping, said once at WARNING with the count, and then its
drops are only counted and told again at most once a window (its recoveries at DEBUG),
until it stays up for a window. Before, a WARNING and an INFO came every second for as
long as it went on (a consumer group on librdkafka's mock cluster, whose JoinGroup v6 it
advertises and cannot parse).

Time is passed in (the loop's clock), so the wording and counting are tested exactly.
``on_cluster`` listeners hear the cluster's episodes begin (True) and end (False): a
journaled producer counts its downtime with them.
Shared by everything built on one ``AsyncClient``: producer, consumer and raw client.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from pykaf._client._address import Address
from pykaf._client._broker_errors import describe_broker, unreachable_cause
from pykaf._client._episodes import Episodes

__all__ = ["OutageLog", "log"]

log = logging.getLogger("pykaf.client")


_CLUSTER: Final = "cluster"  # the key of "no broker at all can be reached"
#: Episodes of one broker warned about one by one within ``FLAP_WINDOW`` seconds; past
#: that it is flapping (see the module doc).
FLAP_WARNINGS: Final = 3
FLAP_WINDOW: Final = 60.0


class OutageLog:
    def __init__(self) -> None:
        self._brokers: Episodes[Address] = Episodes()
        self._cluster: Episodes[str] = Episodes()
        self.on_cluster: list[Callable[[bool], object]] = []
        # Flapping (module doc): each broker's episode starts within the last window, when
        # its drops may be told next, and how many were not told since the last time.
        self._starts: dict[Address, deque[float]] = {}
        self._told_at: dict[Address, float] = {}
        self._untold: dict[Address, int] = {}

    def _tell(self, down: bool) -> None:
        for listener in self.on_cluster:
            try:
                listener(down)
            except Exception:
                log.exception("a cluster outage listener raised")

    def down(self, address: Address) -> bool:
        """Is an episode of ``address`` going on?"""
        return address in self._brokers

    @property
    def cluster_down(self) -> bool:
        return _CLUSTER in self._cluster

    def broker_failed(
        self, address: Address, node_id: int | None, error: BaseException, now: float
    ) -> None:
        """An attempt to reach ``address`` failed, or a connection to it broke with
        requests unanswered: WARNING if this begins an episode, else counted."""
        if self._brokers.failed(address, now).failures > 1:
            return
        flapping = self._flapping(address, now)
        if flapping is None:
            return  # counted, told with the next summary
        cause, check = unreachable_cause(error)
        broker = describe_broker(address, node_id)
        detail = str(error).removeprefix(f"{broker}: ").removeprefix(f"broker at {address}: ")
        log.warning(
            "%s is unreachable (%s): %s. Check %s. Retrying with backoff; repeated"
            " failures are counted and reported when it answers again.%s",
            broker,
            cause,
            detail,
            check,
            flapping,
        )

    def _flapping(self, address: Address, now: float) -> str | None:
        """A new episode of ``address``: what its WARNING adds ("" when it is not
        flapping), or None when it is flapping and was told about within the window."""
        starts = self._recent_starts(address, now)
        starts.append(now)
        if len(starts) <= FLAP_WARNINGS:
            return ""
        if now < self._told_at.get(address, -FLAP_WINDOW) + FLAP_WINDOW:
            self._untold[address] = self._untold.get(address, 0) + 1
            return None
        self._told_at[address] = now
        untold = self._untold.pop(address, 0)
        since = f" ({untold} not told since the last time)" if untold else ""
        return (
            f" It has dropped {len(starts)} times in the last {FLAP_WINDOW:g} s{since}: until"
            f" it stays up that long, its drops are counted and told once in {FLAP_WINDOW:g} s."
        )

    def _recent_starts(self, address: Address, now: float) -> deque[float]:
        """``address``'s episode starts within the last ``FLAP_WINDOW`` seconds."""
        starts = self._starts.setdefault(address, deque())
        while starts and starts[0] < now - FLAP_WINDOW:
            starts.popleft()
        return starts

    def broker_reached(self, address: Address, node_id: int | None, now: float) -> None:
        """A connection to ``address`` opened: ends its episode and the cluster's."""
        episode = self._brokers.ended(address)
        if episode is not None:
            # Counted now, not at the episode's start: a long outage that began while it
            # flapped ends at INFO like any other.
            flapping = len(self._recent_starts(address, now)) > FLAP_WARNINGS
            log.log(
                logging.DEBUG if flapping else logging.INFO,
                "%s reachable again after %.1f s, %d failed attempt%s",
                describe_broker(address, node_id),
                now - episode.since,
                episode.failures,
                "" if episode.failures == 1 else "s",
            )
        cluster = self._cluster.ended(_CLUSTER)
        if cluster is not None:
            self._tell(False)
            log.info(
                "the cluster is reachable again (through %s) after %.1f s, %d failed round%s"
                " over every known broker",
                describe_broker(address, node_id),
                now - cluster.since,
                cluster.failures,
                "" if cluster.failures == 1 else "s",
            )

    def cluster_failed(
        self,
        tried: Iterable[Address],
        bootstrap: Iterable[Address],
        errors: Mapping[Address, BaseException],
        now: float,
    ) -> None:
        """A round over every candidate broker (the bootstrap list included) reached
        none: WARNING if this begins an episode, else counted."""
        if self._cluster.failed(_CLUSTER, now).failures > 1:
            return
        self._tell(True)
        tried_now = [
            f"{a} ({unreachable_cause(errors[a])[0]})" if a in errors else f"{a} (in backoff)"
            for a in tried
        ]
        log.warning(
            "no broker can be reached: tried %s. Check the bootstrap list (%s), that the"
            " brokers run, and that their advertised listeners are reachable from here."
            " Requests wait and retry until their timeout (a producer: max_block).",
            ", ".join(tried_now) or "none",
            ", ".join(str(a) for a in bootstrap),
        )
