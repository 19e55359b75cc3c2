"""The producer: accumulator, partitioners, batches, idempotence, delivery, engine, senders."""

__all__: list[str] = []
