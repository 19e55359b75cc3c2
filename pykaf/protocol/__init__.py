"""The sans-I/O wire layer: bytes in, events out. No asyncio, sockets or clocks here."""

__all__: list[str] = []
