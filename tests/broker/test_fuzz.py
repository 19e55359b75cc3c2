"""Malformed input over raw sockets: the broker closes the bad connection, logs it, never
fails internally, and keeps serving well-behaved clients -- plus the limits it enforces
(frame size, the first frame's size, max.message.bytes)."""

from __future__ import annotations

import logging
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from _broker_clients import consume_all, produce_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_client import WireClient, raw_frame

from pykaf.broker import BlockingCluster
from pykaf.broker._registry import registered_handlers
from pykaf.protocol._framing import KAFKA_SASL_MAX_RECEIVE_SIZE
from pykaf.protocol._messages import build_request, decode_response, encode_request
from pykaf.protocol._records import encode_batch

UNSUPPORTED_VERSION = 35
MESSAGE_TOO_LARGE = 10
# APIs whose handler may legitimately wait (long-poll Fetch, group joins) or allocate per
# a requested count (CreateTopics/CreatePartitions with billions of partitions): random
# bodies that happen to decode would make the fuzzer wait, not find a bug.
_NOT_FUZZED_WITH_RANDOM_BODIES = frozenset({1, 11, 14, 19, 37})
_FUZZED_KEYS = sorted(
    h.spec.key for h in registered_handlers() if h.spec.key not in _NOT_FUZZED_WITH_RANDOM_BODIES
)


class BrokerLog(logging.Handler):
    """Every record of the ``pykaf.broker`` logger (it is written from the loop thread),
    DEBUG included: each bad connection's close is told there (at WARNING once a minute)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def errors(self) -> list[str]:
        with self._lock_records:
            formatter = logging.Formatter()
            return [formatter.format(r) for r in self.records if r.levelno >= logging.ERROR]

    def messages(self) -> list[str]:
        with self._lock_records:
            return [r.getMessage() for r in self.records]


@pytest.fixture(scope="module")
def broker_log() -> Iterator[BrokerLog]:
    handler = BrokerLog()
    logger = logging.getLogger("pykaf.broker")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture(scope="module")
def target(broker_log: BrokerLog) -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("fuzz-ok", 1)
        yield running
    # No internal error, whatever arrived.
    assert broker_log.errors() == []


def address(cluster: BlockingCluster) -> str:
    return str(cluster.brokers[0])


def send_and_close(cluster: BlockingCluster, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data``, close our side, and read until the broker closes (bounded)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", cluster.brokers[0].port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return bytes(received)  # closed while we were still sending: fine
        while True:
            try:
                chunk = s.recv(1 << 16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return bytes(received)


def healthy(cluster: BlockingCluster) -> None:
    """A well-behaved exchange on a fresh connection: ApiVersions then Metadata."""
    with WireClient(address(cluster)) as client:
        versions = client.request(
            "ApiVersions", 3, client_software_name="fuzz", client_software_version="1"
        )
        assert versions.error_code == 0
        answer = client.request(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=[{"name": "fuzz-ok"}],
            allow_auto_topic_creation=False,
        )
        assert [t.error_code for t in answer.topics] == [0]


def api_versions_frame(version: int = 3, correlation_id: int = 1) -> bytes:
    fields = {"client_software_name": "fuzz", "client_software_version": "1"} if version else {}
    request = build_request("ApiVersions", version, **fields)
    return encode_request(request, correlation_id=correlation_id, client_id="fuzz")


# -- hypothesis ----------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.binary(max_size=400))
def test_random_bytes(target: BlockingCluster, data: bytes) -> None:
    send_and_close(target, data)
    healthy(target)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    api_key=st.one_of(st.sampled_from(_FUZZED_KEYS), st.integers(-(2**15), 2**15 - 1)),
    version=st.one_of(st.integers(0, 20), st.integers(-(2**15), 2**15 - 1)),
    correlation_id=st.integers(-(2**31), 2**31 - 1),
    body=st.binary(max_size=300),
)
def test_framed_requests_with_random_headers_and_bodies(
    target: BlockingCluster, api_key: int, version: int, correlation_id: int, body: bytes
) -> None:
    if api_key in _NOT_FUZZED_WITH_RANDOM_BODIES:
        api_key = 3
    reply = send_and_close(target, raw_frame(api_key, version, correlation_id, body))
    # Whatever it answered (an UNSUPPORTED_VERSION, or a request that happened to be
    # valid), it is framed responses carrying our correlation id.
    while reply:
        (size,) = struct.unpack_from(">i", reply)
        assert 4 <= size <= len(reply) - 4
        assert struct.unpack_from(">i", reply, 4)[0] == correlation_id
        reply = reply[4 + size :]
    healthy(target)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cut=st.integers(1, 200), noise=st.binary(max_size=50))
def test_truncated_requests_then_close(target: BlockingCluster, cut: int, noise: bytes) -> None:
    frame = api_versions_frame()
    cut = min(cut, len(frame) - 1)
    assert send_and_close(target, frame[:cut]) == b""  # incomplete: never answered
    # A complete request followed by a torn one: the first is answered, then the close.
    torn = (noise or b"\x00")[:3]  # not even a whole length prefix
    reply = send_and_close(target, frame + torn)
    (size,) = struct.unpack_from(">i", reply)
    assert len(reply) == 4 + size
    healthy(target)


# -- hand-made cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">i", 2**31 - 1) + b"\x00" * 10,
        struct.pack(">i", -1),
        struct.pack(">i", -(2**31)) + b"x" * 100,
        struct.pack(">i", 0),  # an empty frame has no header
        struct.pack(">ihhi", 6, 18, 0, 7),  # a header cut inside the client id
        struct.pack(">ihhih", 10, 18, 0, 7, 500) + b"ab",  # client id longer than the frame
        raw_frame(999, 0, 1, b""),
        raw_frame(-1, 0, 1, b""),
        raw_frame(57, 0, 1, b""),  # known to Kafka (UpdateFeatures), not answered here
        raw_frame(3, 99, 1, b""),
        raw_frame(3, -1, 1, b""),
        raw_frame(0, 2, 1, b""),  # Produce v2: below the KIP-896 floor
        raw_frame(0, 9, 1, b"\xff" * 40),  # a valid header, a garbage body
        raw_frame(3, 12, 1, b"\x05\x01"),  # a body that ends too early
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
    ],
    ids=[
        "huge",
        "minus-one",
        "most-negative",
        "empty",
        "cut-header",
        "long-client-id",
        "api-999",
        "api-minus-1",
        "unanswered-api",
        "metadata-v99",
        "metadata-v-1",
        "produce-v2",
        "produce-garbage",
        "short-metadata",
        "tls",
    ],
)
def test_bad_frames_close_the_connection_silently(
    target: BlockingCluster, broker_log: BrokerLog, frame: bytes
) -> None:
    before = len(broker_log.messages())
    assert send_and_close(target, frame) == b""
    healthy(target)
    if len(frame) > 4:  # (a bare length may be refused before anything is logged)
        assert len(broker_log.messages()) > before  # the close has its log line


@pytest.mark.parametrize(
    "frame",
    [
        raw_frame(0, 8, 1, struct.pack(">hhii", -1, -1, 5000, -1)),  # Produce v8
        raw_frame(2, 5, 1, struct.pack(">ibi", -1, 0, -1)),  # ListOffsets v5
    ],
    ids=["produce", "list-offsets"],
)
def test_null_arrays_are_refused_without_an_internal_error(
    target: BlockingCluster, broker_log: BrokerLog, frame: bytes
) -> None:
    before = len(broker_log.errors())
    assert send_and_close(target, frame) == b""
    healthy(target)
    assert broker_log.errors()[before:] == []


def test_valid_header_garbage_body_for_every_api(target: BlockingCluster) -> None:
    rng = random.Random(7)
    for handler in registered_handlers():
        for version in {handler.min_version, handler.max_version}:
            for body in (b"", b"\xff" * 64, bytes(rng.randrange(256) for _ in range(64))):
                if handler.spec.key in _NOT_FUZZED_WITH_RANDOM_BODIES and body:
                    continue
                send_and_close(target, raw_frame(handler.spec.key, version, 5, body))
    healthy(target)


def test_unsupported_api_versions_version_then_a_retry_on_the_same_connection(
    target: BlockingCluster,
) -> None:
    with WireClient(address(target)) as client:
        client.send_raw(raw_frame(18, 99, 41, b""))
        (size,) = struct.unpack(">i", client.sock.recv(4, socket.MSG_WAITALL))
        correlation_id, body = decode_response(18, 0, client.sock.recv(size, socket.MSG_WAITALL))
        assert (correlation_id, body.error_code) == (41, UNSUPPORTED_VERSION)
        highest = next(k.max_version for k in body.api_keys if k.api_key == 18)
        # As Kafka: the connection stays open, and the client retries lower.
        client.send_raw(api_versions_frame(highest, correlation_id=42))
        (size,) = struct.unpack(">i", client.sock.recv(4, socket.MSG_WAITALL))
        correlation_id, body = decode_response(
            18, highest, client.sock.recv(size, socket.MSG_WAITALL)
        )
        assert (correlation_id, body.error_code) == (42, 0)


def test_a_client_keeps_working_while_garbage_arrives(target: BlockingCluster) -> None:
    stop = threading.Event()
    sent = [0]
    failures: list[BaseException] = []

    def garbage() -> None:
        rng = random.Random(1234)
        try:
            while not stop.is_set() and sent[0] < 2000:
                kind = rng.randrange(3)
                if kind == 0:
                    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
                elif kind == 1:
                    data = struct.pack(">i", rng.choice([-1, 2**31 - 1, 10**9])) + b"x"
                else:
                    data = api_versions_frame()[: rng.randrange(1, 20)]
                send_and_close(target, data)
                sent[0] += 1
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=garbage, name="garbage", daemon=True)
    thread.start()
    try:
        assert produce_all(target.bootstrap, "fuzz-client", 3000, **{"linger.ms": 1}) == []
        got = consume_all(target.bootstrap, "fuzz-client", 1, 3000)[0]
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert sent[0] > 0
    assert [int(m.value()) for m in got] == list(range(3000))


# -- limits -----------------------------------------------------------------------------------


@pytest.fixture
def small_frames(broker_log: BrokerLog) -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1, max_frame_size=64 * 1024) as running:
        yield running


def test_frames_over_the_limit_close_only_their_connection(
    small_frames: BlockingCluster, broker_log: BrokerLog
) -> None:
    with WireClient(address(small_frames)) as bad, WireClient(address(small_frames)) as good:
        assert good.request("ApiVersions", 0).error_code == 0
        assert bad.request("ApiVersions", 0).error_code == 0
        bad.send_raw(struct.pack(">i", 64 * 1024 + 1) + b"x" * 100)
        assert bad.is_closed_by_peer()
        assert good.request("ApiVersions", 0).error_code == 0
    assert any("exceeds the limit of 65536 bytes" in m for m in broker_log.messages())


def test_the_first_frame_has_a_smaller_limit(
    target: BlockingCluster, broker_log: BrokerLog
) -> None:
    over = KAFKA_SASL_MAX_RECEIVE_SIZE + 1
    with WireClient(address(target)) as first, WireClient(address(target)) as later:
        first.send_raw(struct.pack(">i", over))
        assert first.is_closed_by_peer()
        assert later.request("ApiVersions", 0).error_code == 0
        # After a first request, the same length is only a frame to wait for: a produce
        # request of that size is accepted.
        records = encode_batch([(None, b"x" * over, None, 1)])
        response = later.request(
            "Produce",
            9,
            transactional_id=None,
            acks=-1,
            timeout=5000,
            topic_data=[{"name": "fuzz-ok", "partition_data": [{"index": 0, "records": records}]}],
        )
        assert response.responses[0].partition_responses[0].error_code == 0
    assert any("unauthenticated request frame" in m for m in broker_log.messages())


def test_max_message_bytes_boundary(target: BlockingCluster) -> None:
    records = encode_batch([(None, b"y" * 500, None, 1)])
    target.create_topic("fuzz-limit", 1, configs={"max.message.bytes": str(len(records))})

    def produce(data: bytes) -> int:
        with WireClient(address(target)) as client:
            response = client.request(
                "Produce",
                9,
                transactional_id=None,
                acks=-1,
                timeout=5000,
                topic_data=[
                    {"name": "fuzz-limit", "partition_data": [{"index": 0, "records": data}]}
                ],
            )
        return int(response.responses[0].partition_responses[0].error_code)

    assert produce(records) == 0  # exactly at the limit
    assert produce(encode_batch([(None, b"y" * 501, None, 1)])) == MESSAGE_TOO_LARGE


# -- a broker process survives the count bomb of issue 10 ------------------------------------


def test_a_broker_process_survives_the_24_byte_metadata_bomb() -> None:
    # Before the bounds check, kio aborted the whole process (every broker in it) on this.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "no bootstrap line within 30 s"
        hosts = proc.stdout.readline().strip().split(",")
        bomb = raw_frame(3, 12, 1, b"\x00" + b"\xff\xff\xff\xff\x0f")  # header tags, topics
        for host in hosts:
            with WireClient(host) as bad:
                bad.send_raw(bomb)
                assert bad.is_closed_by_peer()
        assert proc.poll() is None
        for host in hosts:
            with WireClient(host) as good:
                assert good.request("ApiVersions", 0).error_code == 0
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
