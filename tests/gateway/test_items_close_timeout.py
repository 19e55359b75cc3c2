"""``close_timeout``: how long a stop gives the producers to flush. With Kafka down and
records waiting, the ASGI lifespan's shutdown and ``pykaf gateway``'s SIGTERM return
within it (not the 30 s default), and say how many records were left unreported."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from _gateway_support import FAST
from _processes import BrokerProcess, GatewayProcess, create_topic, free_port, patient_config

from pykaf.broker import BlockingCluster
from pykaf.gateway import ConfigError, Gateway, GatewaySettings, create_app, load_config

# Far below the 30 s default, and long enough for a loaded machine to start and stop.
_BOUND = 20.0


async def _lifespan(app: Gateway, event: str) -> dict[str, Any]:
    """One lifespan message through the app (as a server sends it); the app's answer."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answers: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    await inbox.put({"type": f"lifespan.{event}"})
    if event == "startup":  # the app waits for the next message after its answer
        task = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
        while not answers:
            await asyncio.sleep(0.01)
        task.cancel()
    else:
        await app({"type": "lifespan"}, inbox.get, send)
    return answers[-1]


async def test_lifespan_shutdown_with_kafka_down_returns_within_close_timeout(
    kafka: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pykaf.gateway")
    app = create_app(
        GatewaySettings(bootstrap=kafka.bootstrap, producer_options=FAST, close_timeout=1.0)
    )
    assert (await _lifespan(app, "startup"))["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        first = await http.post("/async/events?custody=memory", content=b"known")
        assert first.status_code == 202, first.text
        kafka.faults.broker_down(1)
        for n in range(5):  # the topic is known: held in memory while Kafka is away
            taken = await http.post("/async/events?custody=memory", content=b"%d" % n)
            assert taken.status_code == 202, taken.text
    try:
        done = await asyncio.wait_for(_lifespan(app, "shutdown"), _BOUND)
    finally:
        kafka.faults.broker_up(1)
    assert done["type"] == "lifespan.shutdown.complete"
    said = [r.getMessage() for r in caplog.records if "stopped with" in r.getMessage()]
    assert len(said) == 1, said
    assert "record(s) unreported" in said[0]


def test_close_timeout_in_the_config_file_and_its_checks(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('bootstrap = "k:9092"\nclose_timeout = 2.5\n')
    settings, _ = load_config(path)
    assert settings.close_timeout == 2.5
    assert load_config(path, {"close_timeout": 0})[0].close_timeout == 0
    assert GatewaySettings(bootstrap="k:1").close_timeout == 30.0
    for bad in ("-1", "nan", "inf", '"soon"'):
        path.write_text(f'bootstrap = "k:9092"\nclose_timeout = {bad}\n')
        with pytest.raises(ConfigError, match="close_timeout must be"):
            load_config(path)


def test_sigterm_with_kafka_gone_exits_within_close_timeout(tmp_path: Path) -> None:
    broker = BrokerProcess.start(tmp_path / "data", free_port(), tmp_path / "broker.log")
    try:
        create_topic(broker.bootstrap, "events", 1)
        args = ["-b", broker.bootstrap, "--port", "0", "--config", patient_config(tmp_path)]
        gateway = GatewayProcess.start(
            [*args, "--close-timeout", "1", "--async-custody", "memory"],
            tmp_path / "gateway.log",
        )
    except BaseException:
        broker.kill()
        raise
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            assert http.post("/async/events", content=b"known").status_code == 202
            broker.kill()  # its port is now a bootstrap nobody listens on
            for n in range(5):
                taken = http.post("/async/events", content=b"%d" % n)
                assert taken.status_code == 202, taken.text
        assert gateway.terminate(timeout=_BOUND) == 0
    finally:
        gateway.kill()
    assert "record(s) unreported" in gateway.log.read_text()
