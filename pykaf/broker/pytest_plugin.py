"""pytest fixtures handing a running embedded cluster to tests.

Enable with ``pytest_plugins = ["pykaf.broker.pytest_plugin"]`` in the root conftest.py
(pytest refuses ``pytest_plugins`` in nested ones; import the fixtures there instead).

- ``kafka_cluster``: an asyncio ``Cluster`` of 3 brokers in the test's event loop (needs
  pytest-asyncio). Blocking clients must not be called from that loop: use
  ``kafka_cluster_sync`` for them.
- ``kafka_cluster_sync``: a ``BlockingCluster`` of 3 brokers running in its own thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from pykaf.broker._cluster import BlockingCluster, Cluster

__all__ = ["kafka_cluster", "kafka_cluster_sync"]


@pytest.fixture
def kafka_cluster_sync() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=3) as cluster:
        yield cluster


@pytest_asyncio.fixture
async def kafka_cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=3) as cluster:
        yield cluster
