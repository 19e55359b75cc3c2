"""An embedded Kafka-compatible broker for tests and local development.

``async with Cluster(brokers=3) as cluster:`` (asyncio), ``with BlockingCluster() as
cluster:`` (a thread), or standalone: ``python -m pykaf.broker --port 9092 --brokers 3``.
It speaks the real wire protocol (any Kafka client works against ``cluster.bootstrap``),
imports ``pykaf.protocol`` only, and keeps logs in memory or, with ``data_dir``, on disk.
"""

from pykaf.broker import apis  # noqa: F401  -- registers every API handler
from pykaf.broker._cluster import BlockingCluster, BlockingFaults, BrokerAddress, Cluster
from pykaf.broker._faults import Faults, HeldResponses
from pykaf.broker._group_model import GroupSettings
from pykaf.broker._groups import configure_groups
from pykaf.broker._oauth import OAuthValidator, UnsecuredJwtValidator, unsecured_token
from pykaf.broker._registry import CloseConnection, RequestContext, handles
from pykaf.broker._segments import LogCorruptionError
from pykaf.broker._server import BrokerServer, CallNext, Interceptor
from pykaf.broker._state import ClusterState

__all__ = [
    "BlockingCluster",
    "BlockingFaults",
    "BrokerAddress",
    "BrokerServer",
    "CallNext",
    "CloseConnection",
    "Cluster",
    "Faults",
    "GroupSettings",
    "HeldResponses",
    "ClusterState",
    "Interceptor",
    "OAuthValidator",
    "UnsecuredJwtValidator",
    "LogCorruptionError",
    "RequestContext",
    "configure_groups",
    "handles",
    "unsecured_token",
]
