"""Nothing a peer sends may end the process: count bombs and fuzzed frames, decoded the way
the broker and the client decode them, each in a child process with a capped address space
(an abort there fails the test instead of killing pytest).

``PYKAF_DECODE_FUZZ_EXAMPLES`` (default 2) sets the hypothesis examples per case of the
campaign; e.g. 50 for a long run (about ten minutes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pykaf.protocol._apis import all_apis

CAMPAIGN = Path(__file__).with_name("decode_campaign.py")
EXAMPLES = int(os.environ.get("PYKAF_DECODE_FUZZ_EXAMPLES", "2"))

# Runs first in every child: the address space it maps now plus 768 MiB, so that an int32
# count (16 GiB of pointers) fails to allocate as surely as a compact 0xffffffff does.
_CAP = textwrap.dedent(
    """
    import resource
    with open("/proc/self/status") as status:
        kib = next(int(l.split()[1]) for l in status if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (kib * 1024 + (768 << 20), resource.RLIM_INFINITY))
    """
)


def _died(proc: subprocess.CompletedProcess[str]) -> str:
    name = signal.Signals(-proc.returncode).name if proc.returncode < 0 else proc.returncode
    lines = [line for line in proc.stderr.splitlines() if line.startswith("case: ")]
    where = f" during {lines[-1][6:]}" if lines else ""
    return f"the decoding process died ({name}){where}: {proc.stderr[-1500:]}"


def run_isolated(code: str, *imports: str, timeout: float = 60) -> str:
    """Run ``code`` (after ``imports``) in a child under the address-space cap; its stdout."""
    source = "\n".join(imports) + _CAP + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, _died(proc)
    return proc.stdout


# -- the count bombs of issue 10, one by one ---------------------------------------------------

_DECODE_REQUEST = "from pykaf.protocol._messages import decode_request"
_FRAMING = "from pykaf.protocol._framing import ClientConnection, ServerConnection"


def test_the_24_byte_metadata_v12_bomb_is_a_typed_error() -> None:
    # api 3 v12, correlation 1, client id "bomb", no header tags, topics: compact 0xffffffff.
    out = run_isolated(
        """
        import struct
        from pykaf._errors import RemoteProtocolError
        frame = struct.pack(">hhih", 3, 12, 1, 4) + b"bomb\\x00" + b"\\xff\\xff\\xff\\xff\\x0f"
        assert len(frame) + 4 == 24
        try:
            decode_request(frame)
        except RemoteProtocolError as exc:
            print(exc)
        """,
        _DECODE_REQUEST,
    )
    assert "malformed Metadata v12 request: topics: claims 4294967294 entries" in out


def test_an_int32_count_bomb_is_a_typed_error_under_an_address_space_limit() -> None:
    # Metadata v8 (not flexible): topics has an int32 count of 2**31-1 and no bytes behind it.
    out = run_isolated(
        """
        import struct
        from pykaf._errors import RemoteProtocolError
        server = ServerConnection()
        body = struct.pack(">hhih", 3, 8, 1, -1) + struct.pack(">i", 2**31 - 1)
        server.receive_data(struct.pack(">i", len(body)) + body)
        try:
            server.next_event()
        except RemoteProtocolError as exc:
            print(exc)
        """,
        _FRAMING,
    )
    assert "topics: claims 2147483647 entries, but only 0 bytes remain" in out


def test_a_bomb_in_a_fetch_answer_fails_that_request_with_a_typed_error() -> None:
    # A Fetch v12 answer whose first topic's partitions count is a compact 0xffffffff.
    out = run_isolated(
        """
        import struct
        from pykaf._errors import RemoteProtocolError
        from pykaf.protocol._messages import build_request
        client = ClientConnection(client_id="c")
        client.send(build_request("Fetch", 12, replica_id=-1, max_wait=0, min_bytes=1,
                    topics=[], forgotten_topics_data=[], rack_id=""))
        body = (struct.pack(">i", 0) + b"\\x00"  # correlation id 0, no header tags
                + struct.pack(">ihi", 0, 0, 0)  # throttle, error code, session id
                + b"\\x02" + b"\\x02t"  # one topic, named "t"
                + b"\\xff\\xff\\xff\\xff\\x0f")  # its partitions: 4294967294 of them
        client.receive_data(struct.pack(">i", len(body)) + body)
        try:
            client.next_event()
        except RemoteProtocolError as exc:
            print(exc)
        try:
            client.next_event()  # the connection is dead now, with the same error
        except RemoteProtocolError as exc:
            print("again:", exc)
        """,
        _FRAMING,
    )
    assert "malformed Fetch v12 response: responses[0].partitions: claims 4294967294" in out
    assert "again: malformed Fetch v12 response" in out


def test_a_bomb_in_a_group_members_subscription_is_a_typed_error() -> None:
    out = run_isolated(
        """
        import struct
        from pykaf._errors import RemoteProtocolError
        try:
            decode_subscription(struct.pack(">hi", 0, 2**31 - 1))
        except RemoteProtocolError as exc:
            print(exc)
        """,
        "from pykaf._consumer.group._protocol import decode_subscription",
    )
    assert "consumer subscription v0: topics: claims 2147483647 entries" in out


# -- the campaign ------------------------------------------------------------------------------


def _run_campaign(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(CAMPAIGN), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120 + 12 * EXAMPLES,
    )
    assert proc.returncode >= 0, _died(proc)
    report: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert report["failures"] == [], f"{report['failure_count']} failures"
    assert proc.returncode == 0
    return report


@pytest.mark.timeout(240 + 15 * EXAMPLES)
def test_every_api_version_and_direction_survives_bombs_and_fuzzing() -> None:
    cases = _run_campaign("--examples", str(EXAMPLES))["cases"]
    for spec in all_apis():
        for version in spec.versions:
            for direction in ("request", "response"):
                counts = cases[f"{spec.name} v{version} {direction}"]
                assert counts["clean"] == 1  # the one-of-everything frame decoded
                assert counts["bomb"] > 0
                assert counts.get("hypothesis example", 0) >= 1
    assert "Produce v3 produce-outcomes" in cases
    assert "JoinGroup v0 kio-response" in cases  # below pykaf's floor: the check alone
    # The bombs were refused by the count check (not by luck), in every frame that has an
    # array: a compact bomb where counts are varints, an int32 bomb where they are int32.
    for name in ("Metadata v12 request", "Fetch v12 response", "Produce v9 request"):
        assert cases[name]["bomb refused by count (compact)"] > 0
    for name in ("Metadata v8 request", "Fetch v11 response", "Produce v8 request"):
        assert cases[name]["bomb refused by count (int32)"] > 0


# -- end to end: a pykaf client against a server that answers with a bomb ----------------------


def test_a_client_given_a_bomb_answer_gets_a_typed_error_and_lives_on() -> None:
    # A tiny fake broker on 127.0.0.1 answers ApiVersions honestly, then every Metadata
    # with a topics count of 0xffffffff; the client (in a capped child) must raise a
    # PykafError for that call, and then work again against the same server.
    out = run_isolated(
        """
        import asyncio, struct
        from pykaf._client._async_client import AsyncClient
        from pykaf.errors import PykafError
        from pykaf.protocol._framing import NEED_DATA, Request, ServerConnection
        from pykaf.protocol._messages import build_response

        async def serve(reader, writer):
            conn = ServerConnection()
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if not isinstance(event, Request):
                    return
                if event.api_key == 18:
                    answer = build_response(18, event.api_version, error_code=0,
                        api_keys=[{"api_key": 3, "min_version": 0, "max_version": 12},
                                  {"api_key": 18, "min_version": 0, "max_version": 3}],
                        throttle_time=0)
                    writer.write(conn.send_response(event, answer))
                else:  # Metadata v12: throttle, then brokers: 4294967294 of them
                    conn._pending.popleft()
                    body = struct.pack(">i", event.correlation_id) + b"\\x00"
                    body += struct.pack(">i", 0) + b"\\xff\\xff\\xff\\xff\\x0f"
                    writer.write(struct.pack(">i", len(body)) + body)
                await writer.drain()

        async def main():
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with asyncio.timeout(30), AsyncClient(f"127.0.0.1:{port}",
                    request_timeout=5.0, reconnect_backoff=0.01) as client:
                for attempt in range(2):
                    try:
                        await client.metadata(["t"])
                    except PykafError as exc:
                        print(type(exc).__name__, exc)
                print("alive")
            server.close()

        asyncio.run(main())
        """,
    )
    assert "claims 4294967294 entries" in out
    assert out.count("claims 4294967294 entries") == 2  # a new connection, the same answer
    assert out.rstrip().endswith("alive")
