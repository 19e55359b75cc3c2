"""pykaf: a Python client for Apache Kafka that never loses a message.

- ``Producer`` / ``AsyncProducer``: batching, partitioning, compression, idempotence,
  retries, delivery callbacks and futures; every record ends in exactly one report.
- ``Consumer`` / ``AsyncConsumer``: assign or subscribe (consumer groups), seek, offsets
  by time, streams that block or stop at the log end, batch reads, commits.
- ``AsyncClient`` / ``Client``: any Kafka request, any version, to any broker (raw kio
  entities in, decoded kio entities out), with the cluster view behind it.
- ``Admin`` / ``AsyncAdmin``: topics, configs, consumer groups, offsets, records, the
  cluster; per-item outcomes (``pykaf.admin`` names their values).
- ``pykaf.protocol``: the sans-I/O wire layer (messages, framing, record batches).
- ``pykaf.broker``: an embedded Kafka-compatible broker for tests and development.
- ``pykaf.errors``: every exception, rooted at ``PykafError``.

The classes load on first use (``pykaf._lazy``): ``import pykaf`` costs the errors and
little else, and ``pykaf.Producer`` imports the producer (and the client it stands on),
not the consumer or the admin client.
"""

from typing import TYPE_CHECKING

from pykaf._errors import (
    BrokerConnectionError,
    BrokerError,
    BufferFullError,
    ClientClosedError,
    ClientForkedError,
    CommitFailedError,
    ConsumerClosedError,
    ConsumerStateError,
    DeliveryError,
    DeliveryTimeoutError,
    InvalidRegexError,
    KafkaTimeoutError,
    LocalProtocolError,
    NoBrokersError,
    NoOffsetError,
    NotAssignedError,
    ProducerClosedError,
    ProducerForkedError,
    ProtocolError,
    PykafError,
    RebalancingCommitError,
    RecordTooLargeError,
    RemoteProtocolError,
    WrongEventLoopError,
)
from pykaf._lazy import lazy_exports
from pykaf._version import __version__

if TYPE_CHECKING:
    from pykaf._admin._admin import Admin
    from pykaf._admin._async_admin import AsyncAdmin
    from pykaf._admin._outcomes import Outcomes
    from pykaf._admin._specs import ConfigChange, ConfigResource, NewTopic, OffsetSpec
    from pykaf._client._async_client import AsyncClient
    from pykaf._client._client import Client
    from pykaf._client._metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
    from pykaf._client._settings import ClientSettings
    from pykaf._client._targets import Coordinator, CoordinatorType, Leader, Purpose, Target
    from pykaf._client._versions import BrokerApiVersions
    from pykaf._consumer._async_consumer import AsyncConsumer
    from pykaf._consumer._consumer import Consumer
    from pykaf._consumer._records import ConsumerRecord, OffsetAndMetadata, TopicPartition
    from pykaf._consumer._settings import ConsumerSettings
    from pykaf._producer._async_producer import AsyncProducer
    from pykaf._producer._custody_events import CustodyEvent
    from pykaf._producer._delivery import ProducerRecord, RecordMetadata
    from pykaf._producer._producer import Producer
    from pykaf._producer._receipt import Receipt
    from pykaf._producer._replay_identity import ReplayStats
    from pykaf._producer._settings import ProducerSettings
else:
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "pykaf._admin._admin": "Admin",
            "pykaf._admin._async_admin": "AsyncAdmin",
            "pykaf._admin._outcomes": "Outcomes",
            "pykaf._admin._specs": "ConfigChange ConfigResource NewTopic OffsetSpec",
            "pykaf._client._async_client": "AsyncClient",
            "pykaf._client._client": "Client",
            "pykaf._client._metadata": "BrokerInfo ClusterMetadata PartitionInfo TopicInfo",
            "pykaf._client._settings": "ClientSettings",
            "pykaf._client._targets": "Coordinator CoordinatorType Leader Purpose Target",
            "pykaf._client._versions": "BrokerApiVersions",
            "pykaf._consumer._async_consumer": "AsyncConsumer",
            "pykaf._consumer._consumer": "Consumer",
            "pykaf._consumer._records": "ConsumerRecord OffsetAndMetadata TopicPartition",
            "pykaf._consumer._settings": "ConsumerSettings",
            "pykaf._producer._async_producer": "AsyncProducer",
            "pykaf._producer._custody_events": "CustodyEvent",
            "pykaf._producer._delivery": "ProducerRecord RecordMetadata",
            "pykaf._producer._producer": "Producer",
            "pykaf._producer._receipt": "Receipt",
            "pykaf._producer._replay_identity": "ReplayStats",
            "pykaf._producer._settings": "ProducerSettings",
        },
        submodules="admin broker errors events journal protocol telemetry",
    )

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncClient",
    "AsyncConsumer",
    "AsyncProducer",
    "BrokerApiVersions",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerInfo",
    "BufferFullError",
    "Client",
    "ClientClosedError",
    "ClientForkedError",
    "ClientSettings",
    "ClusterMetadata",
    "CommitFailedError",
    "Consumer",
    "ConfigChange",
    "ConfigResource",
    "ConsumerClosedError",
    "ConsumerRecord",
    "ConsumerSettings",
    "ConsumerStateError",
    "Coordinator",
    "CoordinatorType",
    "CustodyEvent",
    "DeliveryError",
    "DeliveryTimeoutError",
    "InvalidRegexError",
    "KafkaTimeoutError",
    "Leader",
    "LocalProtocolError",
    "NewTopic",
    "NoBrokersError",
    "NoOffsetError",
    "NotAssignedError",
    "OffsetAndMetadata",
    "OffsetSpec",
    "Outcomes",
    "PartitionInfo",
    "Producer",
    "ProducerClosedError",
    "ProducerForkedError",
    "ProducerRecord",
    "ProducerSettings",
    "ProtocolError",
    "Purpose",
    "PykafError",
    "RebalancingCommitError",
    "Receipt",
    "RecordMetadata",
    "RecordTooLargeError",
    "RemoteProtocolError",
    "ReplayStats",
    "Target",
    "TopicInfo",
    "TopicPartition",
    "WrongEventLoopError",
    "__version__",
]
