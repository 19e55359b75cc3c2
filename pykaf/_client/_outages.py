"""Broker outages in the log: one WARNING when an episode begins, one INFO when it ends.

A broker that cannot be reached is retried with backoff, many times a second at first:
a line per attempt would bury the one that matters, and none at all (as before) hid even
a whole-cluster outage. So, per address, an episode: its first failure logs at WARNING
with the cause and what to check, later failures are only counted, and the first
connection that succeeds logs at INFO how long it lasted and how many attempts failed.
The cluster as a whole has episodes too: when no broker (bootstrap addresses included)
can be reached, which is what a producer or consumer waiting for metadata is stuck on.

Time is passed in (the loop's clock), so the wording and counting are tested exactly.
``on_cluster`` listeners hear the cluster's episodes begin (True) and end (False): a
journaled producer counts its downtime with them.
Shared by everything built on one ``AsyncClient``: producer, consumer and raw client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from pykaf._client._address import Address
from pykaf._client._broker_errors import describe_broker, unreachable_cause
from pykaf._client._episodes import Episodes

__all__ = ["OutageLog", "log"]

log = logging.getLogger("pykaf.client")


_CLUSTER: Final = "cluster"  # the key of "no broker at all can be reached"


class OutageLog:
    def __init__(self) -> None:
        self._brokers: Episodes[Address] = Episodes()
        self._cluster: Episodes[str] = Episodes()
        self.on_cluster: list[Callable[[bool], object]] = []

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
        cause, check = unreachable_cause(error)
        broker = describe_broker(address, node_id)
        detail = str(error).removeprefix(f"{broker}: ").removeprefix(f"broker at {address}: ")
        log.warning(
            "%s is unreachable (%s): %s. Check %s. Retrying with backoff; repeated"
            " failures are counted and reported when it answers again.",
            broker,
            cause,
            detail,
            check,
        )

    def broker_reached(self, address: Address, node_id: int | None, now: float) -> None:
        """A connection to ``address`` opened: ends its episode and the cluster's."""
        episode = self._brokers.ended(address)
        if episode is not None:
            log.info(
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
