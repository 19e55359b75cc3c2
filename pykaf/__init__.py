"""pykaf: a Python client for Apache Kafka that never loses a message."""

from pykaf._errors import (
    BrokerError,
    LocalProtocolError,
    ProtocolError,
    PykafError,
    RemoteProtocolError,
)
from pykaf._version import __version__

__all__ = [
    "BrokerError",
    "LocalProtocolError",
    "ProtocolError",
    "PykafError",
    "RemoteProtocolError",
    "__version__",
]
