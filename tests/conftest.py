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


def pytest_configure(config: object) -> None:
    """Ctrl-C as a terminal sends it, in every process the tests start: a run started in
    the background by a shell without job control (``cmd &`` in a script) inherits SIGINT
    ignored, and so would every child, where the tests that press Ctrl-C (the producer's,
    the consumer's and the CLI's exits) then see nothing happen. Here, before the workers
    and the children start: an exec'd child gets SIGINT's default back (only an ignored
    signal is inherited), and Python makes it KeyboardInterrupt again."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
