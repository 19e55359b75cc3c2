"""The journal behind the gateway, in-process: Kafka down, the gateway keeps answering
202 for the topics it knows and every record arrives afterwards; a topic it never saw
cannot be placed and is refused with 503 and Retry-After (never a silent loss)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from _gateway_support import FAST, read_all, wait_for

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway, GatewaySettings, create_app


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


async def test_a_full_journal_answers_429_with_retry_after_and_loses_nothing(
    kafka: BlockingCluster, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        bootstrap=kafka.bootstrap,
        journal_dir=str(tmp_path / "journal"),
        retry_after=3,
        producer_options={
            **FAST,
            "journal_max_bytes": 64 * 1024,
            "journal_segment_bytes": 16 * 1024,
            "buffer_memory": 64 * 1024,
        },
    )
    app = create_app(settings)
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            await wait_for(lambda: "events" in app.backend._warm_topics, "the topic warm-up")
            kafka.faults.broker_down(1)
            accepted = 0
            refused = None
            for i in range(200):  # 200 KiB offered to a 64 KiB journal
                answer = await http.post(
                    "/async/events?partition=0", content=b"%04d" % i + bytes(1020)
                )
                if answer.status_code != 202:
                    refused = answer
                    break
                accepted += 1
            assert refused is not None, "the journal never filled"
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "3"
            assert "journal" in refused.json()["message"]
            assert accepted > 0
            kafka.faults.broker_up(1)
            records = await asyncio.to_thread(read_all, kafka, "events", accepted)
            assert [r.value[:4] for _, r in records] == [b"%04d" % i for i in range(accepted)]
    finally:
        await app.close(10)


async def test_a_batch_refused_part_way_says_how_many_records_were_taken(
    kafka: BlockingCluster, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        bootstrap=kafka.bootstrap,
        producer_options={**FAST, "buffer_memory": 32 * 1024, "batch_size": 4096},
    )
    app = create_app(settings)
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            await http.post("/sync/events?partition=0", content=b"warm")
            kafka.faults.broker_down(1)
            lines = b"".join(b"%05d" % i + bytes(200) + b"\n" for i in range(1000))
            refused = await http.post("/batch/async/events?partition=0", content=lines)
            assert refused.status_code == 429, refused.text
            taken = refused.json()["accepted"]
            assert 0 < taken < 1000
            assert f"from record {taken}" in refused.json()["message"]
            kafka.faults.broker_up(1)
            records = await asyncio.to_thread(read_all, kafka, "events", 1 + taken)
            assert [r.value[:5] for _, r in records[1:]] == [b"%05d" % i for i in range(taken)]
    finally:
        await app.close(10)


async def test_records_the_journal_keeps_at_close_are_not_counted_as_failed(
    kafka: BlockingCluster, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        bootstrap=kafka.bootstrap, journal_dir=str(tmp_path / "j"), producer_options=FAST
    )
    app = create_app(settings)
    await app.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        await wait_for(lambda: "events" in app.backend._warm_topics, "the topic warm-up")
        kafka.faults.broker_down(1)
        for i in range(10):
            assert (await http.post("/async/events", content=b"k%d" % i)).status_code == 202
    assert await app.close(0.5) == 10  # Kafka away: kept for the next start
    assert app.backend.kept_at_close == 10
    assert app.backend.failed_after_accept == 0
