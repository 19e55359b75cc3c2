"""Shared fixtures: only registration here; the fixtures live in ``tests/peers/``."""

# With no tests/__init__.py, pytest puts tests/ itself on sys.path, so the peers package is
# top-level ``peers``; if tests/ ever becomes a package, the relative form takes over.
if __package__:
    from .peers.mock_cluster import mock_cluster, mock_cluster_factory, mock_cluster_session
    from .peers.tansu import tansu
    from .peers.tls import tls_files
else:
    from peers.mock_cluster import mock_cluster, mock_cluster_factory, mock_cluster_session
    from peers.tansu import tansu
    from peers.tls import tls_files

__all__ = ["mock_cluster", "mock_cluster_factory", "mock_cluster_session", "tansu", "tls_files"]

# The embedded broker's fixtures (kafka_cluster, kafka_cluster_sync), as users enable them.
pytest_plugins = ["pykaf.broker.pytest_plugin"]
