"""``Admin``: the blocking twin of ``AsyncAdmin``, on a private loop in a daemon thread."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from pykaf._admin._async_admin import AsyncAdmin, Isolation
from pykaf._admin._cluster import ClusterDescription, LogDirDescription
from pykaf._admin._configs import ConfigEntry
from pykaf._admin._groups import GroupDescription, GroupListing, GroupOffset
from pykaf._admin._offsets import ListedOffset
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import ConfigChange, ConfigResource, NewTopic, OffsetSpec
from pykaf._admin._topics import TopicCreated, TopicDescription, TopicListing
from pykaf._client._loop_thread import LoopThread
from pykaf._client._settings import ClientSettings
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._records import TopicPartition
from pykaf._errors import ClientForkedError, KafkaTimeoutError

__all__ = ["Admin"]

_T = TypeVar("_T")

# Extra wait on top of a call's own bound before the blocking side gives up: the async
# side raises its own typed error first, this only guards against a stuck loop. A call
# may send a few requests one after another (find the coordinator, then ask it), hence
# a few request timeouts.
_MARGIN: Final = 1.0
_REQUESTS_PER_CALL: Final = 4


class Admin:
    """Blocking admin client: every method is the blocking twin of ``AsyncAdmin``'s.

    Thread-safe; a context manager, or call ``close()`` (bounded by ``close_timeout``).
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        settings: ClientSettings | None = None,
        **options: Any,
    ) -> None:
        # Validate in the caller's thread, so bad settings raise before a thread starts.
        admin = AsyncAdmin(bootstrap, settings=settings, **options)
        self.settings = admin.settings
        self.events = admin.events  # telemetry (pykaf.events): the client's bus
        self.stats = admin.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        self.bootstrap = admin.bootstrap
        self._admin = admin
        self._loop = LoopThread("pykaf-admin")
        self._close_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Admin {','.join(map(str, self.bootstrap))} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections, then stop the private loop; bounded."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            # A copy in a forked child (ClientForkedError) has nothing of its own to close.
            with contextlib.suppress(KafkaTimeoutError, ClientForkedError):
                self._loop.run(self._admin.close, self.settings.close_timeout + _MARGIN)
        finally:
            self._loop.stop(_MARGIN)

    def _call(self, make: Callable[[], Coroutine[Any, Any, _T]], timeout: float | None) -> _T:
        each = self.settings.request_timeout if timeout is None else timeout
        return self._loop.run(make, each * _REQUESTS_PER_CALL + _MARGIN)

    def create_topics(
        self,
        topics: Iterable[NewTopic | str],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[str, TopicCreated]:
        """Blocking ``AsyncAdmin.create_topics``."""
        return self._call(
            partial(
                self._admin.create_topics, topics, validate_only=validate_only, timeout=timeout
            ),
            timeout,
        )

    def delete_topics(
        self, names: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, uuid.UUID | None]:
        """Blocking ``AsyncAdmin.delete_topics``."""
        return self._call(partial(self._admin.delete_topics, names, timeout=timeout), timeout)

    def list_topics(
        self, *, internal: bool = False, timeout: float | None = None
    ) -> dict[str, TopicListing]:
        """Blocking ``AsyncAdmin.list_topics``."""
        return self._call(
            partial(self._admin.list_topics, internal=internal, timeout=timeout), timeout
        )

    def describe_topics(
        self, names: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, TopicDescription]:
        """Blocking ``AsyncAdmin.describe_topics``."""
        return self._call(partial(self._admin.describe_topics, names, timeout=timeout), timeout)

    def create_partitions(
        self,
        totals: Mapping[str, int],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[str, int]:
        """Blocking ``AsyncAdmin.create_partitions``."""
        return self._call(
            partial(
                self._admin.create_partitions, totals, validate_only=validate_only, timeout=timeout
            ),
            timeout,
        )

    def describe_configs(
        self,
        resources: Iterable[ConfigResource],
        *,
        include_synonyms: bool = False,
        include_documentation: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[ConfigResource, Mapping[str, ConfigEntry]]:
        """Blocking ``AsyncAdmin.describe_configs``."""
        return self._call(
            partial(
                self._admin.describe_configs,
                resources,
                include_synonyms=include_synonyms,
                include_documentation=include_documentation,
                timeout=timeout,
            ),
            timeout,
        )

    def alter_configs(
        self,
        changes: Mapping[ConfigResource, Iterable[ConfigChange]],
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> Outcomes[ConfigResource, None]:
        """Blocking ``AsyncAdmin.alter_configs``."""
        return self._call(
            partial(
                self._admin.alter_configs, changes, validate_only=validate_only, timeout=timeout
            ),
            timeout,
        )

    def list_groups(
        self,
        *,
        states: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> list[GroupListing]:
        """Blocking ``AsyncAdmin.list_groups``."""
        return self._call(
            partial(self._admin.list_groups, states=states, types=types, timeout=timeout), timeout
        )

    def describe_groups(
        self, group_ids: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, GroupDescription]:
        """Blocking ``AsyncAdmin.describe_groups``."""
        return self._call(partial(self._admin.describe_groups, group_ids, timeout=timeout), timeout)

    def delete_groups(
        self, group_ids: Iterable[str], *, timeout: float | None = None
    ) -> Outcomes[str, None]:
        """Blocking ``AsyncAdmin.delete_groups``."""
        return self._call(partial(self._admin.delete_groups, group_ids, timeout=timeout), timeout)

    def list_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, GroupOffset]:
        """Blocking ``AsyncAdmin.list_group_offsets``."""
        return self._call(
            partial(self._admin.list_group_offsets, group_id, partitions, timeout=timeout), timeout
        )

    def alter_group_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int | OffsetSpec | str] | None = None,
        *,
        topics: Iterable[str] | None = None,
        to: OffsetSpec | str | None = None,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, int]:
        """Blocking ``AsyncAdmin.alter_group_offsets``."""
        return self._call(
            partial(
                self._admin.alter_group_offsets,
                group_id,
                offsets,
                topics=topics,
                to=to,
                timeout=timeout,
            ),
            timeout,
        )

    def delete_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition],
        *,
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, None]:
        """Blocking ``AsyncAdmin.delete_group_offsets``."""
        return self._call(
            partial(self._admin.delete_group_offsets, group_id, partitions, timeout=timeout),
            timeout,
        )

    def list_offsets(
        self,
        queries: Mapping[TopicPartition, OffsetSpec | str],
        *,
        isolation: Isolation = "read_uncommitted",
        timeout: float | None = None,
    ) -> Outcomes[TopicPartition, ListedOffset]:
        """Blocking ``AsyncAdmin.list_offsets``."""
        return self._call(
            partial(self._admin.list_offsets, queries, isolation=isolation, timeout=timeout),
            timeout,
        )

    def delete_records(
        self, before: Mapping[TopicPartition, int], *, timeout: float | None = None
    ) -> Outcomes[TopicPartition, int]:
        """Blocking ``AsyncAdmin.delete_records``."""
        return self._call(partial(self._admin.delete_records, before, timeout=timeout), timeout)

    def describe_cluster(self, *, timeout: float | None = None) -> ClusterDescription:
        """Blocking ``AsyncAdmin.describe_cluster``."""
        return self._call(partial(self._admin.describe_cluster, timeout=timeout), timeout)

    def api_versions(self, *, timeout: float | None = None) -> Outcomes[int, BrokerApiVersions]:
        """Blocking ``AsyncAdmin.api_versions``."""
        return self._call(partial(self._admin.api_versions, timeout=timeout), timeout)

    def describe_log_dirs(
        self, brokers: Iterable[int] | None = None, *, timeout: float | None = None
    ) -> Outcomes[int, tuple[LogDirDescription, ...]]:
        """Blocking ``AsyncAdmin.describe_log_dirs``."""
        return self._call(partial(self._admin.describe_log_dirs, brokers, timeout=timeout), timeout)
