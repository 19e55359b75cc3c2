"""Pure client state machines: time and randomness are passed in, nothing awaits."""

__all__: list[str] = []
