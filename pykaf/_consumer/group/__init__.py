"""Consumer groups: membership, assignors, the consumer protocol, join, commit, the driver."""

__all__: list[str] = []
