"""The consumer: fetch state, fetcher, records, offsets, Consumer / AsyncConsumer."""

__all__: list[str] = []
