"""The blocking facade: ``Client``, over ``AsyncClient`` on a private event loop."""

__all__: list[str] = []
