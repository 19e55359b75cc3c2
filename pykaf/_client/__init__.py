"""Connections, the cluster view, metadata, versions, settings, the loop thread, and the
clients (Client / AsyncClient)."""

__all__: list[str] = []
