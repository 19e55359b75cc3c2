"""The asyncio client core: connections, the cluster view, ``AsyncClient``."""

__all__: list[str] = []
