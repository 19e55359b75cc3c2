"""Sans-I/O framing: client and server connections fed bytes in every shape."""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykaf._errors import (
    FrameTooLargeError,
    LocalProtocolError,
    NotKafkaError,
    PykafError,
    RemoteProtocolError,
    UnexpectedCorrelationIdError,
)
from pykaf.protocol._framing import (
    KAFKA_SASL_MAX_RECEIVE_SIZE,
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Request,
    Response,
    ServerConnection,
    UnsupportedRequest,
)
from pykaf.protocol._messages import build_request, build_response, encode_response


def _metadata_request(version: int = 12, topics: list[str] | None = None) -> Any:
    return build_request(
        "Metadata",
        version,
        topics=[{"name": t} for t in topics or []],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def _metadata_response(version: int = 12, host: str = "localhost") -> Any:
    return build_response(
        "Metadata",
        version,
        throttle_time=0,
        brokers=[{"node_id": 1, "host": host, "port": 9092, "rack": None}],
        cluster_id="cluster",
        controller_id=1,
        topics=[],
    )


def _heartbeat_response(error_code: int = 0) -> Any:
    return build_response("Heartbeat", 4, throttle_time=0, error_code=error_code)


def _heartbeat_request() -> Any:
    return build_request("Heartbeat", 4, group_id="g", generation_id=1, member_id="m")


def _drain(conn: ClientConnection | ServerConnection) -> list[Any]:
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def _exchange(n: int) -> tuple[ClientConnection, bytes, list[Any]]:
    """A client with n requests in flight, and the bytes of the n answers."""
    client = ClientConnection()
    responses = [_metadata_response(host=f"broker-{i}") for i in range(n)]
    answers = b""
    for i, response in enumerate(responses):
        client.send(_metadata_request(topics=[f"t{i}"]))
        answers += encode_response(3, 12, i, response)
    return client, answers, responses


# -- client: delivery shapes ---------------------------------------------------------


def test_split_at_every_byte() -> None:
    client, answers, responses = _exchange(3)
    events: list[Any] = []
    for i in range(len(answers)):
        client.receive_data(answers[i : i + 1])
        events.extend(_drain(client))
    assert [e.response for e in events] == responses
    assert [e.correlation_id for e in events] == [0, 1, 2]
    assert all(isinstance(e, Response) and e.api_key == 3 for e in events)
    assert client.in_flight == 0


def test_several_responses_in_one_chunk_and_chunk_boundaries_anywhere() -> None:
    client, answers, responses = _exchange(5)
    assert client.in_flight == 5
    cut = len(answers) // 3
    client.receive_data(answers[:cut])
    first = _drain(client)
    client.receive_data(memoryview(answers)[cut:])
    rest = _drain(client)
    assert [e.response for e in first + rest] == responses
    assert client.next_event() is NEED_DATA


def test_out_of_order_correlation_id_kills_the_connection() -> None:
    client = ClientConnection()
    client.send(_heartbeat_request())
    client.send(_heartbeat_request())
    client.receive_data(encode_response(12, 4, 1, _heartbeat_response()))
    with pytest.raises(UnexpectedCorrelationIdError, match=r"correlation id 1, expected 0"):
        client.next_event()
    # Dead from now on: every call raises the same class.
    with pytest.raises(UnexpectedCorrelationIdError):
        client.next_event()
    with pytest.raises(UnexpectedCorrelationIdError):
        client.receive_data(b"more")
    with pytest.raises(UnexpectedCorrelationIdError):
        client.send(_heartbeat_request())


def test_response_with_nothing_outstanding() -> None:
    client = ClientConnection()
    client.receive_data(encode_response(12, 4, 0, _heartbeat_response()))
    with pytest.raises(UnexpectedCorrelationIdError, match="no request is outstanding"):
        client.next_event()


def test_correlation_ids_increase_and_wrap() -> None:
    client = ClientConnection(first_correlation_id=2**31 - 2)
    ids = []
    for _ in range(3):
        client.send(_heartbeat_request())
        ids.append((client.next_correlation_id - 1) % 2**31)
    assert ids == [2**31 - 2, 2**31 - 1, 0]
    assert client.in_flight == 3
    with pytest.raises(LocalProtocolError):
        ClientConnection(first_correlation_id=-1)


def test_acks_zero_produce_expects_no_response() -> None:
    client = ClientConnection()
    fire_and_forget = build_request("Produce", 9, acks=0, timeout=1000, topic_data=[])
    client.send(fire_and_forget)
    assert client.in_flight == 0
    client.send(_heartbeat_request(), expect_response=False)
    assert client.in_flight == 0
    client.send(_heartbeat_request())
    assert client.in_flight == 1
    client.receive_data(encode_response(12, 4, 2, _heartbeat_response(27)))
    (event,) = _drain(client)
    assert event.correlation_id == 2
    assert event.response.error_code == 27


def test_encode_error_leaves_the_connection_usable() -> None:
    client = ClientConnection()
    bad = build_request("Heartbeat", 4, group_id="g", generation_id=2**40, member_id="m")
    with pytest.raises(LocalProtocolError, match="generation_id"):
        client.send(bad)
    assert client.in_flight == 0
    assert client.next_correlation_id == 0
    client.send(_heartbeat_request())
    client.receive_data(encode_response(12, 4, 0, _heartbeat_response()))
    assert len(_drain(client)) == 1


# -- client: bad bytes ---------------------------------------------------------------


@pytest.mark.parametrize("length", [-1, -(2**31), 1001, 2**31 - 1])
def test_bad_length_prefix_raises_before_the_payload_arrives(length: int) -> None:
    client = ClientConnection(max_frame_size=1000)
    client.send(_heartbeat_request())
    client.receive_data(struct.pack(">i", length))  # only the prefix: nothing to allocate
    with pytest.raises(FrameTooLargeError, match="negative" if length < 0 else "exceeds"):
        client.next_event()
    with pytest.raises(FrameTooLargeError):
        client.next_event()


def test_huge_length_allocates_nothing() -> None:
    client = ClientConnection()
    client.send(_heartbeat_request())
    tracemalloc.start()
    try:
        client.receive_data(struct.pack(">i", 2**31 - 1) + b"\x00" * 100)
        with pytest.raises(FrameTooLargeError):
            client.next_event()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_frame_at_the_limit_is_accepted() -> None:
    answer = encode_response(12, 4, 0, _heartbeat_response())
    client = ClientConnection(max_frame_size=len(answer) - 4)
    client.send(_heartbeat_request())
    client.receive_data(answer)
    assert isinstance(client.next_event(), Response)


@pytest.mark.parametrize(
    ("first_bytes", "protocol"),
    [
        (b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76", "TLS"),  # ServerHello
        (b"\x15\x03\x01\x00\x02\x02\x46", "TLS"),  # alert: protocol_version
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP"),
        (b"<html><body>nope</body></html>", "HTTP"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH"),
    ],
)
def test_other_protocols_are_named(first_bytes: bytes, protocol: str) -> None:
    client = ClientConnection(max_frame_size=2**31 - 1)  # even when the size would pass
    client.send(_heartbeat_request())
    client.receive_data(first_bytes)
    with pytest.raises(NotKafkaError, match=f"the peer at this port speaks {protocol}, not Kafka"):
        client.next_event()


@pytest.mark.parametrize("request_line", [b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\n"])
def test_server_names_http_and_tls_clients(request_line: bytes) -> None:
    server = ServerConnection()
    server.receive_data(request_line)
    with pytest.raises(NotKafkaError, match="HTTP"):
        server.next_event()
    server = ServerConnection()
    server.receive_data(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # ClientHello
    with pytest.raises(NotKafkaError, match="TLS"):
        server.next_event()


def test_truncated_and_garbage_payloads() -> None:
    good = encode_response(3, 12, 0, _metadata_response())
    # Correct length prefix, body cut short inside: the schema runs out of bytes.
    truncated = struct.pack(">i", len(good) - 4 - 10) + good[4:-10]
    client = ClientConnection()
    client.send(_metadata_request())
    client.receive_data(truncated)
    with pytest.raises(RemoteProtocolError, match="Metadata v12 response"):
        client.next_event()
    garbage = struct.pack(">i", 40) + struct.pack(">i", 0) + b"\xff" * 36
    client = ClientConnection()
    client.send(_metadata_request())
    client.receive_data(garbage)
    with pytest.raises(RemoteProtocolError, match="Metadata v12 response"):
        client.next_event()
    client = ClientConnection()
    client.send(_metadata_request())
    client.receive_data(struct.pack(">i", 2) + b"\x00\x00")
    with pytest.raises(RemoteProtocolError, match="no header"):
        client.next_event()


def test_end_of_stream() -> None:
    client, answers, _ = _exchange(2)
    client.receive_data(answers[:-3])
    client.receive_data(b"")
    assert isinstance(client.next_event(), Response)
    with pytest.raises(RemoteProtocolError, match="closed the connection in the middle of a frame"):
        client.next_event()
    client, _, _ = _exchange(3)
    client.receive_data(b"")  # EOF before any answer
    assert client.next_event() == ConnectionClosed(unanswered=3)
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"late")


# -- server --------------------------------------------------------------------------


def test_server_requests_and_responses_in_order() -> None:
    client = ClientConnection(client_id="app")
    server = ServerConnection()
    server.receive_data(
        client.send(_metadata_request(topics=["a"])) + client.send(_heartbeat_request())
    )
    first, second = _drain(server)
    assert isinstance(first, Request)
    assert (first.api_key, first.api_version, first.client_id) == (3, 12, "app")
    assert first.request.topics[0].name == "a"
    assert server.in_flight == 2
    with pytest.raises(LocalProtocolError, match="out of order"):
        server.send_response(second, _heartbeat_response())
    client.receive_data(server.send_response(first, _metadata_response()))
    client.receive_data(server.send_response(second, _heartbeat_response()))
    assert [e.api_key for e in _drain(client)] == [3, 12]
    assert server.in_flight == 0
    with pytest.raises(LocalProtocolError, match="out of order"):
        server.send_response(second, _heartbeat_response())


def test_server_acks_zero_produce_needs_no_response() -> None:
    server = ServerConnection()
    server.receive_data(
        ClientConnection().send(build_request("Produce", 9, acks=0, timeout=1, topic_data=[]))
    )
    (event,) = _drain(server)
    assert isinstance(event, Request)
    assert not event.expects_response
    assert server.in_flight == 0


def test_server_unsupported_api_and_version() -> None:
    server = ServerConnection()
    # LeaderAndIsr (key 4, gone with ZooKeeper) and Fetch v3 (below the KIP-896 floor).
    server.receive_data(struct.pack(">ihhih", 12, 4, 0, 5, -1) + b"\x00\x00")
    server.receive_data(struct.pack(">ihhih", 14, 1, 3, 6, 3) + b"app" + b"\x00")
    first, second = _drain(server)
    assert first == UnsupportedRequest(correlation_id=5, api_key=4, api_version=0, client_id=None)
    assert second == UnsupportedRequest(correlation_id=6, api_key=1, api_version=3, client_id="app")
    with pytest.raises(LocalProtocolError, match="only ApiVersions"):
        server.send_response(first, _heartbeat_response())


def test_pre_auth_limit_until_api_versions() -> None:
    big = ClientConnection().send(_metadata_request(topics=["x" * 200]))
    api_versions = ClientConnection().send(
        build_request("ApiVersions", 3, client_software_name="c", client_software_version="1")
    )
    server = ServerConnection(max_pre_auth_frame_size=100)
    server.receive_data(big)
    with pytest.raises(FrameTooLargeError, match="unauthenticated request frame of"):
        server.next_event()
    server = ServerConnection(max_pre_auth_frame_size=100)
    server.receive_data(api_versions + big)
    assert [type(e) for e in _drain(server)] == [Request, Request]


def test_pre_auth_limit_until_authenticated() -> None:
    big = ClientConnection().send(_metadata_request(topics=["x" * 200]))
    api_versions = ClientConnection().send(build_request("ApiVersions", 0))
    server = ServerConnection(
        max_pre_auth_frame_size=KAFKA_SASL_MAX_RECEIVE_SIZE // 4096, pre_auth_until="authenticated"
    )
    assert server.frame_limit == 128
    server.receive_data(api_versions)
    assert len(_drain(server)) == 1
    server.lift_pre_auth_limit()
    assert server.frame_limit == server.max_frame_size
    server.receive_data(big)
    assert len(_drain(server)) == 1


def test_server_bad_frames() -> None:
    server = ServerConnection(max_frame_size=50)
    server.receive_data(struct.pack(">i", 51))
    with pytest.raises(FrameTooLargeError):
        server.next_event()
    server = ServerConnection()
    server.receive_data(struct.pack(">i", 3) + b"\x00\x03\x00")
    with pytest.raises(RemoteProtocolError, match="too short"):
        server.next_event()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"")


# -- fuzz: arbitrary bytes give events or pykaf errors, nothing else ----------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed_all(conn: ClientConnection | ServerConnection, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            _drain(conn)
        conn.receive_data(b"")
        _drain(conn)
    except PykafError:
        pass


def _framed(payloads: list[bytes]) -> list[bytes]:
    return [struct.pack(">i", len(p)) + p for p in payloads]


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_server_raw_bytes(chunks: list[bytes]) -> None:
    _feed_all(ServerConnection(), chunks)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11, 12, 18, 19, 22, 36, 99]),
            st.integers(-1, 20),
            st.binary(max_size=80),
        ),
        max_size=4,
    )
)
def test_fuzz_server_framed_requests(parts: list[tuple[int, int, bytes]]) -> None:
    # Well-framed, plausible headers, random bodies: reaches the per-API decoders.
    payloads = [struct.pack(">hhi", key, ver, i) + body for i, (key, ver, body) in enumerate(parts)]
    _feed_all(ServerConnection(), _framed(payloads))


def _busy_client() -> ClientConnection:
    client = ClientConnection()
    client.send(_metadata_request())
    client.send(_heartbeat_request())
    client.send(
        build_request("ApiVersions", 3, client_software_name="c", client_software_version="1")
    )
    client.send(
        build_request(
            "Fetch",
            12,
            replica_id=-1,
            max_wait=0,
            min_bytes=1,
            max_bytes=1,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[],
            forgotten_topics_data=[],
            rack_id="",
        )
    )
    return client


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_client_raw_bytes(chunks: list[bytes]) -> None:
    _feed_all(_busy_client(), chunks)


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=4))
def test_fuzz_client_framed_responses(bodies: list[bytes]) -> None:
    # Right correlation ids, random bodies: reaches the response decoders.
    payloads = [struct.pack(">i", i) + body for i, body in enumerate(bodies)]
    _feed_all(_busy_client(), _framed(payloads))


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_frames(data: st.DataObject) -> None:
    client, answers, _ = _exchange(2)
    mutated = bytearray(answers)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _feed_all(client, [bytes(mutated[:cut])])
