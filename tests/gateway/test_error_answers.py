"""What an HTTP client is told of a record that failed: Confluent's ``error_code`` and
``message``, and ``maybe_persisted: true`` when the producer says Kafka may hold it all the
same (a request carrying it went unanswered), so that a client deciding whether to send
it again knows it may then be written twice. Absent otherwise."""

from __future__ import annotations

import json

from pykaf.errors import DeliveryError, DeliveryTimeoutError
from pykaf.gateway._outcomes import http_error_for
from pykaf.gateway._v3_records import Reports


def test_a_timeout_that_may_have_been_written_says_so() -> None:
    error = http_error_for(DeliveryTimeoutError("late", maybe_persisted=True), retry_after=1)
    assert (error.status, error.extra) == (504, {"maybe_persisted": True})
    report = json.loads(Reports.failed(error))
    assert report == {"error_code": 504, "message": "late", "maybe_persisted": True}


def test_a_failure_that_was_never_written_says_nothing_of_it() -> None:
    for exc in (DeliveryTimeoutError("never sent"), DeliveryError("refused"), ValueError("bad")):
        error = http_error_for(exc, retry_after=1)
        assert "maybe_persisted" not in error.extra
        assert "maybe_persisted" not in json.loads(Reports.failed(error))
