"""pykaf: a Python client for Apache Kafka that never loses a message.

- ``Producer`` / ``AsyncProducer``: batching, partitioning, compression, idempotence,
  retries, delivery callbacks and futures; every record ends in exactly one report.
- ``AsyncClient`` / ``Client``: any Kafka request, any version, to any broker (raw kio
  entities in, decoded kio entities out), with the cluster view behind it.
- ``pykaf.protocol``: the sans-I/O wire layer (messages, framing, record batches).
- ``pykaf.broker``: an embedded Kafka-compatible broker for tests and development.
- ``pykaf.errors``: every exception, rooted at ``PykafError``.
"""

from pykaf._aio._client import AsyncClient
from pykaf._aio._producer import AsyncProducer
from pykaf._aio._settings import ClientSettings
from pykaf._core._delivery import ProducerRecord, RecordMetadata
from pykaf._core._metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from pykaf._core._producer_settings import ProducerSettings
from pykaf._core._targets import Coordinator, CoordinatorType, Leader, Purpose, Target
from pykaf._core._versions import BrokerApiVersions
from pykaf._errors import (
    BrokerConnectionError,
    BrokerError,
    BufferFullError,
    ClientClosedError,
    DeliveryError,
    DeliveryTimeoutError,
    KafkaTimeoutError,
    LocalProtocolError,
    NoBrokersError,
    ProducerClosedError,
    ProtocolError,
    PykafError,
    RecordTooLargeError,
    RemoteProtocolError,
)
from pykaf._sync._client import Client
from pykaf._sync._producer import Producer
from pykaf._version import __version__

__all__ = [
    "AsyncClient",
    "AsyncProducer",
    "BrokerApiVersions",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerInfo",
    "BufferFullError",
    "Client",
    "ClientClosedError",
    "ClientSettings",
    "ClusterMetadata",
    "Coordinator",
    "CoordinatorType",
    "DeliveryError",
    "DeliveryTimeoutError",
    "KafkaTimeoutError",
    "Leader",
    "LocalProtocolError",
    "NoBrokersError",
    "PartitionInfo",
    "Producer",
    "ProducerClosedError",
    "ProducerRecord",
    "ProducerSettings",
    "ProtocolError",
    "Purpose",
    "PykafError",
    "RecordMetadata",
    "RecordTooLargeError",
    "RemoteProtocolError",
    "Target",
    "TopicInfo",
    "__version__",
]
