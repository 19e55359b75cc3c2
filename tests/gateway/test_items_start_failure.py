"""A gateway whose Kafka clients cannot start at a request (a host framework that does not
pass lifespan on): every request, /healthz included, says why with 503 and Retry-After,
the log says it once per cause, and the gateway starts once the cause is gone."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from _gateway_support import FAST

from pykaf import AsyncProducer
from pykaf.broker import BlockingCluster
from pykaf.gateway import GatewaySettings, create_app


async def test_a_journal_locked_by_a_live_producer_answers_503_until_it_is_free(
    kafka: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the start failed inside the request and the client got 500 ("internal
    # error"), with a traceback logged for every request.
    journal = tmp_path / "journal"
    holder = AsyncProducer(kafka.bootstrap, custody="journal", journal_dir=journal, **FAST)
    app = create_app(
        GatewaySettings(bootstrap=kafka.bootstrap, journal_dir=str(journal), producer_options=FAST)
    )
    transport = httpx.ASGITransport(app=app)  # no lifespan: the clients start at a request
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            caplog.set_level(logging.WARNING, logger="pykaf.gateway")
            for path in ("/async/events", "/async/events", "/healthz"):
                answer = await (
                    http.get(path) if path == "/healthz" else http.post(path, content=b"v")
                )
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["retry-after"]
                assert "lock" in answer.json()["message"].lower()
            said = [r for r in caplog.records if "cannot start" in r.getMessage()]
            assert len(said) == 1  # once for the cause, not once per request
            await holder.close()
            answer = await http.post("/async/events", content=b"v")
            assert answer.status_code == 202, answer.text
    finally:
        await holder.close()
        await app.close(10)
