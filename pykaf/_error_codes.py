"""Map a Kafka error code to its exception, once, at the boundary."""

from __future__ import annotations

from pykaf._errors import BrokerError, UnknownBrokerError
from pykaf._kafka_errors import ERRORS_BY_CODE

__all__ = ["error_for_code", "raise_for_code"]


def error_for_code(code: int, message: str | None = None) -> BrokerError:
    """The exception for a Kafka error code (code 0 is success, not an error: ValueError)."""
    if code == 0:
        raise ValueError("error code 0 means success, not an error")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return UnknownBrokerError(code, message)
    return cls(message)


def raise_for_code(code: int, message: str | None = None) -> None:
    """Raise the exception for ``code`` unless it is 0 (success)."""
    if code != 0:
        raise error_for_code(code, message)
