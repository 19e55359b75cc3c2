"""pykaf: a Python client for Apache Kafka that never loses a message.

- ``AsyncClient`` / ``Client``: any Kafka request, any version, to any broker (raw kio
  entities in, decoded kio entities out), with the cluster view behind it.
- ``pykaf.protocol``: the sans-I/O wire layer (messages, framing, record batches).
- ``pykaf.broker``: an embedded Kafka-compatible broker for tests and development.
- ``pykaf.errors``: every exception, rooted at ``PykafError``.
"""

from pykaf._aio._client import AsyncClient
from pykaf._aio._settings import ClientSettings
from pykaf._core._metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from pykaf._core._targets import Coordinator, CoordinatorType, Leader, Purpose, Target
from pykaf._core._versions import BrokerApiVersions
from pykaf._errors import (
    BrokerConnectionError,
    BrokerError,
    ClientClosedError,
    KafkaTimeoutError,
    LocalProtocolError,
    NoBrokersError,
    ProtocolError,
    PykafError,
    RemoteProtocolError,
)
from pykaf._sync._client import Client
from pykaf._version import __version__

__all__ = [
    "AsyncClient",
    "BrokerApiVersions",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerInfo",
    "Client",
    "ClientClosedError",
    "ClientSettings",
    "ClusterMetadata",
    "Coordinator",
    "CoordinatorType",
    "KafkaTimeoutError",
    "Leader",
    "LocalProtocolError",
    "NoBrokersError",
    "PartitionInfo",
    "ProtocolError",
    "Purpose",
    "PykafError",
    "RemoteProtocolError",
    "Target",
    "TopicInfo",
    "__version__",
]
