"""A producer's exception as the HTTP answer it deserves (status, Confluent error code)."""

from __future__ import annotations

from typing import TypeVar

from pykaf.errors import (
    BufferFullError,
    DeliveryError,
    DeliveryTimeoutError,
    JournalDiskError,
    JournalFullError,
    KafkaTimeoutError,
    MessageTooLargeError,
    ProducerClosedError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from pykaf.gateway._asgi import HttpError

__all__ = ["http_error_for", "unavailable", "without_frames"]

_E = TypeVar("_E", bound=BaseException)


def without_frames(error: _E) -> _E:
    """``error`` without its traceback and context, to be kept after its handler: their
    frames hold what holds the error (a stream, a list of outcomes), a reference cycle per
    failed record for the collector to find; the gateway's requests leave none."""
    error.__traceback__ = None
    error.__context__ = None
    return error


def unavailable(why: str, retry_after: int) -> HttpError:
    """503 with Retry-After: the gateway's own trouble, which clients retry (elsewhere,
    behind a load balancer); 50301 is Confluent's "unavailable, retry" refinement."""
    return HttpError(
        503,
        f"{why}; retry after {retry_after} s",
        error_code=50301,
        headers={"retry-after": str(retry_after)},
    )


def http_error_for(exc: BaseException, *, retry_after: int) -> HttpError:
    """What a client is told when its record could not be taken or delivered; with
    ``"maybe_persisted": true`` when the producer says Kafka may hold it all the same (a
    client that retries then knows it may write the record twice)."""
    error = _http_error_for(exc, retry_after=retry_after)
    if isinstance(exc, DeliveryError) and exc.maybe_persisted:
        error.extra["maybe_persisted"] = True
    return error


def _http_error_for(exc: BaseException, *, retry_after: int) -> HttpError:
    if isinstance(exc, HttpError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, DeliveryError) and not isinstance(exc, DeliveryTimeoutError):
        # The broker's own error, when there is one, decides the status.
        exc = exc.cause if exc.cause is not None else exc
    if isinstance(exc, BufferFullError | JournalFullError):
        return HttpError(
            429, f"{text}; retry after {retry_after} s", headers={"retry-after": str(retry_after)}
        )
    if isinstance(exc, JournalDiskError):
        # Failed fsync, EIO, read-only: the gateway's trouble, not the client's.
        return unavailable(f"the gateway's journal failed on its disk: {text}", retry_after)
    if isinstance(exc, UnknownTopicOrPartitionError):
        return HttpError(404, text, error_code=40403)
    if isinstance(exc, RecordTooLargeError | MessageTooLargeError):
        return HttpError(413, text)
    if isinstance(exc, TopicAuthorizationFailedError):
        return HttpError(403, text, error_code=40301)
    if isinstance(exc, DeliveryTimeoutError | KafkaTimeoutError | TimeoutError):
        return HttpError(504, text)
    if isinstance(exc, ProducerClosedError):
        return HttpError(503, "the gateway is shutting down")
    if isinstance(exc, TypeError | ValueError):
        return HttpError(400, text)
    return HttpError(500, f"{type(exc).__name__}: {text}")
