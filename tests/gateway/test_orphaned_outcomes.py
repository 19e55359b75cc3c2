"""Records whose answer went out before their outcome (/sync's 504: not acknowledged in
time) still end visibly: a failure that comes later is counted and logged as a record
failed after its answer (``failed_after_accept``, in /healthz and /metrics), never left as
an asyncio exception no one retrieves."""

from __future__ import annotations

import gc
import logging

import httpx
import pytest
from _gateway_support import FAST, wait_for

from pykaf.broker import BlockingCluster
from pykaf.gateway import GatewaySettings, create_app


async def test_a_record_answered_504_that_fails_later_is_counted(
    kafka: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    settings = GatewaySettings(
        bootstrap=kafka.bootstrap,
        ack_timeout=0.2,
        producer_options={**FAST, "delivery_timeout": 1.5, "request_timeout": 0.5},
    )
    app = create_app(settings)
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            warm = await http.post("/sync/events?partition=0", content=b"warm")
            assert warm.status_code == 200, warm.text
            kafka.faults.broker_down(1)
            with caplog.at_level(logging.WARNING):
                late = await http.post("/sync/events?partition=0", content=b"late")
                assert late.status_code == 504, late.text
                # Its delivery_timeout passes with the broker down: the record fails.
                await wait_for(lambda: app.backend.failed_after_accept == 1, "the failure")
                gc.collect()  # an unretrieved exception would be logged here
            assert "failed after their answer" in caplog.text
            assert "never retrieved" not in caplog.text
            kafka.faults.broker_up(1)
    finally:
        await app.close(5)
