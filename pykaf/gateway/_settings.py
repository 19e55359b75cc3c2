"""The gateway's settings: one frozen value, checked when the app is created."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from pykaf.gateway._limits import LimitSettings
from pykaf.gateway._security import SecuritySettings

__all__ = ["CUSTODY_LEVELS", "Custody", "GatewaySettings"]

Custody: TypeAlias = Literal["memory", "journal", "journal_sync"]
CUSTODY_LEVELS: Final = ("memory", "journal", "journal_sync")


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """What ``create_app`` needs. Only ``bootstrap`` is required.

    Custody (where an accepted record is kept until Kafka acknowledges it) is chosen per
    request: the ``custody`` query parameter or ``X-Pykaf-Custody`` header, else the
    route's default here; ``/safe/...`` routes always use "journal_sync". The journal
    levels need ``journal_dir``.
    """

    #: The Kafka cluster: "host:port[,host:port...]".
    bootstrap: str
    #: Where the journal lives (custody "journal" and "journal_sync"); None: memory only.
    journal_dir: str | None = None
    #: Default custody of the routes that answer once a record is accepted (``/async``,
    #: ``/batch/async``): None means "journal" with a ``journal_dir``, else "memory".
    async_custody: Custody | None = None
    #: Default custody of the routes that answer after Kafka acknowledges (``/sync``,
    #: ``/batch/sync``, Confluent's v3 records): "memory" unless set.
    sync_custody: Custody = "memory"
    #: Options for the producers and the admin client (``pykaf.ProducerSettings`` and
    #: ``pykaf.ClientSettings`` names: ``security_protocol``, ``acks``, ``linger``...).
    producer_options: Mapping[str, Any] = field(default_factory=dict)
    #: The cluster id v3 shows; None: the cluster's own (from DescribeCluster/Metadata).
    cluster_id: str | None = None
    #: Seconds a 429 (buffer or journal full) tells the client to wait (Retry-After).
    retry_after: int = 1
    #: Seconds an answer waits for a record to be acknowledged before giving up with 504
    #: (the record stays in custody and is still delivered).
    ack_timeout: float = 60.0
    #: Seconds a stop gives the producers to flush what they hold: the ASGI lifespan's
    #: shutdown (``pykaf gateway``'s SIGTERM, after requests in flight finish) and
    #: ``Gateway.close()``. What is left then stays in the journal for the next start
    #: (journal custody), or is logged as unreported (memory). With Kafka down, a stop
    #: takes this long when records wait.
    close_timeout: float = 30.0
    #: Authentication, permissions and the principal header.
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: Body and header sizes, request rates, slow clients.
    limits: LimitSettings = field(default_factory=LimitSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap, str) or not self.bootstrap.strip():
            raise ValueError(f"bootstrap must be 'host:port[,...]', not {self.bootstrap!r}")
        for name in ("async_custody", "sync_custody"):
            level = getattr(self, name)
            if level is not None and level not in CUSTODY_LEVELS:
                raise ValueError(
                    f"{name} must be one of {', '.join(map(repr, CUSTODY_LEVELS))}, not {level!r}"
                )
            if level in ("journal", "journal_sync") and self.journal_dir is None:
                raise ValueError(f"{name}={level!r} needs journal_dir (where the journal lives)")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, not {self.retry_after!r}")
        if not self.ack_timeout > 0:
            raise ValueError(f"ack_timeout must be > 0 seconds, not {self.ack_timeout!r}")
        if not _finite(self.close_timeout) or self.close_timeout < 0:
            raise ValueError(
                f"close_timeout must be a number of seconds >= 0, not {self.close_timeout!r}"
            )

    @property
    def default_async_custody(self) -> Custody:
        if self.async_custody is not None:
            return self.async_custody
        return "journal" if self.journal_dir is not None else "memory"


def _finite(value: object) -> bool:
    # Not bool (True is an int), not NaN or infinity: a stop must end.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
