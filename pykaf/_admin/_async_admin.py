"""``AsyncAdmin``: Kafka's AdminClient in snake case, on the client core's routing.

Each method is a thin front for one module of this folder (``_topics``, ``_configs``,
``_cluster``, ``_groups``, ``_offsets``), which builds the requests, sends them to the
broker that must answer (the controller, a group's coordinator, a partition's leader) at
the highest version both sides speak, and turns the answers into typed frozen values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Self

from pykaf._admin import _cluster, _configs, _groups, _offsets, _topics
from pykaf._admin._cluster import ClusterDescription, LogDirDescription
from pykaf._admin._configs import ConfigEntry
from pykaf._admin._groups import GroupDescription, GroupListing, GroupOffset
from pykaf._admin._offsets import ListedOffset
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import ConfigChange, ConfigResource, NewTopic, OffsetSpec
from pykaf._admin._topics import TopicCreated, TopicDescription, TopicListing
from pykaf._client._async_client import AsyncClient
from pykaf._client._settings import ClientSettings
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._records import TopicPartition

__all__ = ["AsyncAdmin"]

Isolation = Literal["read_uncommitted", "read_committed"]


class AsyncAdmin:
    """Administer a Kafka cluster: topics, configs, consumer groups, offsets, records.

    ``bootstrap`` and the settings are ``AsyncClient``'s (security included). Calls on
    many items return ``Outcomes``: each item's result, or its own typed error when that
    item failed (the others are still answered). ``timeout`` (seconds, default
    ``request_timeout``) bounds each request a call sends; a call that retries items whose
    coordinator or leader moved stops retrying after 3 x ``timeout`` in all.
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        settings: ClientSettings | None = None,
        **options: Any,
    ) -> None:
        self._client = AsyncClient(bootstrap, settings=settings, **options)
        self._client.kind = ("AsyncAdmin", "pykaf.Admin")
        self.settings = self._client.settings
        self.events = self._client.events  # telemetry (pykaf.events): the client's bus
        self.stats = self._client.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        self.bootstrap = self._client.bootstrap

    def __repr__(self) -> str:
        state = "closed" if self._client.closed else "open"
        return f"<AsyncAdmin {','.join(map(str, self.bootstrap))} {state}>"

    @property
    def closed(self) -> bool:
        return self._client.closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections; bounded by ``close_timeout``."""
        await self._client.close()

    # -- topics -------------------------------------------------------------------------

    async def create_topics(
        self,
        topics: Iterable[NewTopic | str],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[str, TopicCreated]:
        """Create topics (a name alone takes the broker's defaults)."""
        return await _topics.create_topics(
            self._client, topics, validate_only=validate_only, timeout=timeout
        )

    async def delete_topics(
        self, names: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, uuid.UUID | None]:
        """Delete topics; each deleted one maps to its topic id (when the broker says)."""
        return await _topics.delete_topics(self._client, names, timeout=timeout)

    async def list_topics(
        self, *, internal: bool = False, timeout: float | None = None
    ) -> dict[str, TopicListing]:
        """Every topic in the cluster (``internal=True`` adds ``__consumer_offsets`` and
        the like)."""
        return await _topics.list_topics(self._client, internal=internal, timeout=timeout)

    async def describe_topics(
        self, names: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, TopicDescription]:
        """Partitions, leaders, replicas, ISR and topic ids."""
        return await _topics.describe_topics(self._client, names, timeout=timeout)

    async def create_partitions(
        self,
        totals: Mapping[str, int],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[str, int]:
        """Grow topics to the given partition counts (totals, not increments)."""
        return await _topics.create_partitions(
            self._client, totals, validate_only=validate_only, timeout=timeout
        )

    # -- configs ------------------------------------------------------------------------

    async def describe_configs(
        self,
        resources: Iterable[ConfigResource],
        *,
        include_synonyms: bool = False,
        include_documentation: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[ConfigResource, Mapping[str, ConfigEntry]]:
        """The configs of topics and brokers, with their sources and defaults."""
        return await _configs.describe_configs(
            self._client,
            resources,
            include_synonyms=include_synonyms,
            include_documentation=include_documentation,
            timeout=timeout,
        )

    async def alter_configs(
        self,
        changes: Mapping[ConfigResource, Iterable[ConfigChange]],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[ConfigResource, None]:
        """Change configs incrementally (set, delete, append, subtract; KIP-339)."""
        return await _configs.alter_configs(
            self._client, changes, validate_only=validate_only, timeout=timeout
        )

    # -- consumer groups ----------------------------------------------------------------

    async def list_groups(
        self,
        *,
        states: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> list[GroupListing]:
        """Every group on every broker, with state and type (filtered when asked)."""
        return await _groups.list_groups(self._client, states=states, types=types, timeout=timeout)

    async def describe_groups(
        self, group_ids: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, GroupDescription]:
        """Members and their assignments, decoded."""
        return await _groups.describe_groups(self._client, group_ids, timeout=timeout)

    async def delete_groups(
        self, group_ids: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, None]:
        """Delete empty groups (a group with members fails with its own error)."""
        return await _groups.delete_groups(self._client, group_ids, timeout=timeout)

    async def list_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, GroupOffset]:
        """The group's committed offsets (all, or ``partitions``), with end offset and
        lag per partition."""
        return await _groups.list_group_offsets(self._client, group_id, partitions, timeout=timeout)

    async def alter_group_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int | OffsetSpec | str] | None = None,
        *,
        topics: Iterable[str] | None = None,
        to: OffsetSpec | str | None = None,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, int]:
        """Move where the group resumes: given ``offsets`` per partition, or every
        partition of ``topics`` ``to`` earliest, latest or a time. Refused while the group
        has members. Each partition maps to the offset committed."""
        return await _groups.alter_group_offsets(
            self._client, group_id, offsets, topics=topics, to=to, timeout=timeout
        )

    async def delete_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition],
        *,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, None]:
        """Forget the group's committed offsets on ``partitions``."""
        return await _groups.delete_group_offsets(
            self._client, group_id, partitions, timeout=timeout
        )

    # -- offsets and records ------------------------------------------------------------

    async def list_offsets(
        self,
        queries: Mapping[TopicPartition, OffsetSpec | str],
        *,
        isolation: Isolation = "read_uncommitted",
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, ListedOffset]:
        """Earliest, latest, by timestamp or max-timestamp offsets, from the leaders."""
        return await _offsets.list_offsets(
            self._client, queries, isolation=isolation, timeout=timeout
        )

    async def delete_records(
        self, before: Mapping[TopicPartition, int], *, timeout: float | None = None
    ) -> Outcomes[TopicPartition, int]:
        """Delete records below the given offsets; each partition maps to its new low
        watermark."""
        return await _offsets.delete_records(self._client, before, timeout=timeout)

    # -- cluster ------------------------------------------------------------------------

    async def describe_cluster(self, *, timeout: float | None = None) -> ClusterDescription:
        """Brokers, controller and cluster id."""
        return await _cluster.describe_cluster(self._client, timeout=timeout)

    async def api_versions(
        self, *, timeout: float | None = None
    ) -> Outcomes[int, BrokerApiVersions]:
        """The API versions of every broker, by node id."""
        return await _cluster.api_versions(self._client, timeout=timeout)

    async def describe_log_dirs(
        self, brokers: Iterable[int] | None = None, *, timeout: float | None = None
    ) -> Outcomes[int, tuple[LogDirDescription, ...]]:
        """Each broker's log directories and the partitions in them (where the broker
        has DescribeLogDirs)."""
        return await _cluster.describe_log_dirs(self._client, brokers, timeout=timeout)
