"""The standalone broker's control endpoint (``--control-port``) and its CLI."""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wire_client import WireClient

from pykaf.broker import Cluster
from pykaf.broker._control import ControlServer, control, main, status
from pykaf.protocol._records import encode_batch

pytestmark = pytest.mark.peer

CONTROL = ("--control-port", "0")
UP_TWO = ("broker_up", "node_id=2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Standalone:
    bootstrap: str
    control: str


@pytest.fixture(scope="module")
def broker() -> Iterator[Standalone]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pykaf.broker", *("--port", "0", "--brokers", "3"), *CONTROL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        assert ready, "the broker printed no addresses within 15 s"
        # Both lines leave in one flushed write.
        bootstrap = proc.stdout.readline().strip()
        control_line = proc.stdout.readline().strip()
        assert control_line.startswith("control=127.0.0.1:")
        yield Standalone(bootstrap=bootstrap, control=control_line.removeprefix("control="))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def produce_code(address: str, topic: str) -> int:
    with WireClient(address) as client:
        client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": topic}],
            allow_auto_topic_creation=True,
        )
        response = client.request(
            "Produce",
            9,
            transactional_id=None,
            acks=-1,
            timeout=5000,
            topic_data=[
                {
                    "name": topic,
                    "partition_data": [
                        {"index": 0, "records": encode_batch([(None, b"v", None, 1)])}
                    ],
                }
            ],
        )
    return int(response.responses[0].partition_responses[0].error_code)


def test_status_lists_the_brokers(broker: Standalone) -> None:
    result = status(broker.control)
    assert [b["node_id"] for b in result["brokers"]] == [1, 2, 3]
    assert all(b["up"] for b in result["brokers"])
    assert ",".join(f"{b['host']}:{b['port']}" for b in result["brokers"]) == broker.bootstrap
    assert result["faults"]["errors"] == {}


def test_pushed_errors_over_http(broker: Standalone) -> None:
    first = broker.bootstrap.split(",")[0]
    control(broker.control, "push_errors", api="Produce", codes=[29], broker=1)
    assert status(broker.control)["faults"]["errors"] == {"Produce@1": [29]}
    # Broker 1 leads partition 0 of the first auto-created topic, or answers NOT_LEADER:
    # either way the pushed code comes first.
    assert produce_code(first, "ctl-errors") == 29
    assert produce_code(first, "ctl-errors") in (0, 6)
    control(broker.control, "clear")


def test_cli_takes_a_broker_down_and_up(
    broker: Standalone, capsys: pytest.CaptureFixture[str]
) -> None:
    port = int(broker.bootstrap.split(",")[1].rsplit(":", 1)[1])
    assert main(["--control", broker.control, "broker_down", "2"]) == 0
    assert json.loads(capsys.readouterr().out) is None
    assert [b["up"] for b in status(broker.control)["brokers"]] == [True, False, True]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    done = subprocess.run(
        [sys.executable, "-m", "pykaf.broker.control", "--control", broker.control, *UP_TWO],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert all(b["up"] for b in status(broker.control)["brokers"])
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_cli_values_and_holds(broker: Standalone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--control", broker.control, "push_errors", "Fetch", "6,0,6"]) == 0
    assert main(["--control", broker.control, "set_latency", "0.5", "api=Metadata"]) == 0
    assert main(["--control", broker.control, "hold_responses", "ApiVersions", "broker=3"]) == 0
    hold = json.loads(capsys.readouterr().out.splitlines()[-1])["hold"]
    faults = status(broker.control)["faults"]
    assert faults["errors"] == {"Fetch@*": [6, 0, 6]}
    assert faults["latency"] == {"Metadata@*": 0.5}
    assert faults["holds"] == {str(hold): {"api": "ApiVersions@3", "held": 0}}
    assert main(["--control", broker.control, "release", str(hold)]) == 0
    assert status(broker.control)["faults"]["holds"] == {}
    assert main(["--control", broker.control, "clear"]) == 0
    assert status(broker.control)["faults"]["errors"] == {}


def test_refusals(broker: Standalone, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="no fault"):
        control(broker.control, "explode")
    with pytest.raises(ValueError, match="unknown Kafka API"):
        control(broker.control, "push_errors", api="Nope", codes=[6])
    with pytest.raises(ValueError, match="unexpected keyword"):
        control(broker.control, "broker_down", broker=2)
    with pytest.raises(ValueError, match="no hold"):
        control(broker.control, "release", hold=999)
    host, port = broker.control.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/faults/clear", body=b"{not json")
        response = conn.getresponse()
        assert response.status == 400
        assert not json.loads(response.read())["ok"]
    finally:
        conn.close()
    assert main(["--control", broker.control, "move_leader", "no-such-topic", "0", "1"]) == 1
    assert "no partition" in capsys.readouterr().err
    assert status(broker.control)["faults"]["errors"] == {}  # still serving


async def test_control_server_in_process() -> None:
    async with Cluster(brokers=1) as cluster:
        server = ControlServer(cluster)
        await server.start()
        try:
            assert server.address.startswith("127.0.0.1:")
            host, port = server.address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /nowhere HTTP/1.1\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 404 ")
        finally:
            await server.stop()
