"""The journal behind the gateway, in-process: Kafka down, the gateway keeps answering
202 for the topics it knows and every record arrives afterwards; a topic it never saw
cannot be placed and is refused with 503 and Retry-After (never a silent loss)."""

from __future__ import annotations

import asyncio

import httpx
from _gateway_support import read_all, wait_for

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway


async def test_kafka_down_the_journal_takes_known_topics_and_replays(
    app: Gateway, http: httpx.AsyncClient, kafka: BlockingCluster
) -> None:
    await wait_for(lambda: "events" in app.backend._warm_topics, "the topic warm-up")
    kafka.faults.broker_down(1)
    for i in range(50):
        answer = await http.post(f"/async/events?partition={i % 3}", content=b"r%d" % i)
        assert answer.status_code == 202, answer.text
    safe = await http.post("/safe/batch/async/events?partition=0", content=b"s1\ns2\n")
    assert safe.status_code == 202, safe.text
    kafka.create_topic("born-in-outage", 1)  # the gateway cannot have seen it
    cold = await http.post("/async/born-in-outage", content=b"x")
    assert cold.status_code == 503, cold.text
    assert cold.headers["retry-after"] == "1"
    assert "born-in-outage" in cold.json()["message"]
    kafka.faults.broker_up(1)
    values = sorted(r.value for _, r in await asyncio.to_thread(read_all, kafka, "events", 52))
    assert values == sorted([b"r%d" % i for i in range(50)] + [b"s1", b"s2"])
