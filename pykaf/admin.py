"""The admin API's values: what its calls take and what they return.

``pykaf.Admin`` / ``pykaf.AsyncAdmin`` are the clients; this module names every value
they exchange, for type annotations and ``isinstance`` checks::

    from pykaf.admin import ConfigResource, NewTopic, OffsetSpec, TopicDescription
"""

from pykaf._admin._cluster import ClusterDescription, LogDirDescription, LogDirPartition
from pykaf._admin._configs import ConfigEntry
from pykaf._admin._groups import GroupDescription, GroupListing, GroupOffset, MemberDescription
from pykaf._admin._offsets import ListedOffset
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import (
    ConfigChange,
    ConfigResource,
    ConfigResourceType,
    NewTopic,
    OffsetSpec,
)
from pykaf._admin._topics import (
    PartitionDescription,
    TopicCreated,
    TopicDescription,
    TopicListing,
)

__all__ = [
    "ClusterDescription",
    "ConfigChange",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceType",
    "GroupDescription",
    "GroupListing",
    "GroupOffset",
    "ListedOffset",
    "LogDirDescription",
    "LogDirPartition",
    "MemberDescription",
    "NewTopic",
    "OffsetSpec",
    "Outcomes",
    "PartitionDescription",
    "TopicCreated",
    "TopicDescription",
    "TopicListing",
]
