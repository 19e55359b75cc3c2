"""Version negotiation against a broker's ApiVersions answer."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from pykaf._errors import NoCommonVersionError
from pykaf.errors import UnsupportedVersionError
from pykaf.protocol._apis import all_apis, api_spec
from pykaf.protocol._framing import (
    ClientConnection,
    Request,
    Response,
    ServerConnection,
    UnsupportedRequest,
)
from pykaf.protocol._messages import (
    build_request,
    build_response,
    encode_request,
    encode_response,
)
from pykaf.protocol._negotiation import (
    NegotiatedVersions,
    api_versions_retry_version,
    negotiate,
    pick_version,
)


def _broker(*ranges: tuple[int, int, int], error_code: int = 0, version: int = 3) -> Any:
    fields: dict[str, object] = {
        "error_code": error_code,
        "api_keys": [{"api_key": k, "min_version": lo, "max_version": hi} for k, lo, hi in ranges],
        "throttle_time": 0,
    }
    return build_response("ApiVersions", version, **fields)


def test_highest_common_version_per_api() -> None:
    broker = _broker((0, 0, 9), (1, 0, 99), (3, 0, 12), (18, 0, 3), (1000, 0, 1))
    versions = negotiate(broker)
    assert versions == {0: 9, 1: api_spec("Fetch").max_version, 3: 12, 18: 3}
    assert isinstance(versions, dict)
    assert pick_version(versions, "Produce") == 9
    assert pick_version(versions, "fetch") == api_spec("Fetch").max_version
    assert pick_version(versions, 3) == 12


def test_no_common_version_names_the_api_and_both_ranges() -> None:
    # A broker older than the KIP-896 floor: Produce v0-v2 only, and no OffsetDelete.
    versions = negotiate(_broker((0, 0, 2), (3, 0, 12)))
    assert 0 not in versions
    with pytest.raises(NoCommonVersionError) as info:
        pick_version(versions, "Produce")
    assert info.value.api == "Produce"
    assert info.value.ours == (3, api_spec("Produce").max_version)
    assert info.value.theirs == (0, 2)
    assert "the broker offers v0..v2" in str(info.value)
    with pytest.raises(NoCommonVersionError, match=r"OffsetDelete.*does not offer it") as info:
        pick_version(versions, "OffsetDelete")
    assert info.value.theirs is None
    # A plain dict works too (no ranges remembered: ours is pykaf's whole range).
    with pytest.raises(NoCommonVersionError, match="Metadata"):
        pick_version({}, "Metadata")


def test_wanted_limits_and_narrows() -> None:
    broker = _broker((1, 4, 17), (3, 0, 12))
    assert negotiate(broker, wanted=["Metadata"]) == {3: 12}
    narrowed = negotiate(broker, wanted={"Fetch": (4, 12), "metadata": (0, 99)})
    assert narrowed == {1: 12, 3: 12}
    assert isinstance(narrowed, NegotiatedVersions)
    assert narrowed.ours[1] == (4, 12)
    none_left = negotiate(broker, wanted={"Fetch": (0, 3)})
    with pytest.raises(NoCommonVersionError) as info:
        pick_version(none_left, "Fetch")
    assert info.value.ours == (4, 3)  # narrowed below pykaf's floor: empty
    assert info.value.theirs == (4, 17)


def test_every_registered_api_negotiates_against_itself() -> None:
    broker = _broker(*((s.key, s.min_version, s.max_version) for s in all_apis()))
    versions = negotiate(broker)
    assert versions == {s.key: s.max_version for s in all_apis()}


def test_error_in_response_raises_the_broker_error() -> None:
    with pytest.raises(UnsupportedVersionError):
        negotiate(_broker((18, 0, 2), error_code=35, version=0))


def test_retry_version_after_unsupported_version() -> None:
    old = _broker((18, 0, 2), error_code=35, version=0)
    assert api_versions_retry_version(old, sent_version=4) == 2
    # No ApiVersions entry: retry at v0, as Kafka's Java client does.
    assert api_versions_retry_version(_broker(error_code=35, version=0), sent_version=3) == 0
    assert api_versions_retry_version(old, sent_version=0) is None  # nothing lower to try
    assert api_versions_retry_version(old, sent_version=2) is None  # would loop
    assert api_versions_retry_version(_broker((18, 0, 3)), sent_version=3) is None


def test_api_versions_quirk_end_to_end() -> None:
    """A client sends ApiVersions v4 to a broker that speaks only up to v2; the broker
    answers UNSUPPORTED_VERSION in v0 format; the client retries at v2 and negotiates."""
    client = ClientConnection()
    data = client.send(
        build_request("ApiVersions", 4, client_software_name="pykaf", client_software_version="0")
    )
    # An "old broker": knows the header, not v4. pykaf's server side would accept v4, so
    # play the old broker by hand with the v0 answer Kafka sends.
    server = ServerConnection()
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, Request)
    old_answer = _broker((18, 0, 2), error_code=35, version=0)
    client.receive_data(encode_response(18, 0, event.correlation_id, old_answer))
    answer = client.next_event()
    assert isinstance(answer, Response)
    assert answer.api_version == 0
    retry = api_versions_retry_version(answer.response, sent_version=4)
    assert retry == 2
    client.send(build_request("ApiVersions", retry))
    assert client.in_flight == 1


def test_unsupported_api_versions_on_the_server_side() -> None:
    """pykaf's broker side receives ApiVersions v99: it gets an UnsupportedRequest and
    can answer in v0, which the client decodes and turns into a retry version."""
    server = ServerConnection()
    request = build_request("ApiVersions", 3, client_software_name="x", client_software_version="1")
    frame = bytearray(encode_request(request, correlation_id=9, client_id="future"))
    frame[6:8] = (99).to_bytes(2, "big")  # api_version field of the header
    server.receive_data(bytes(frame))
    event = server.next_event()
    assert event == UnsupportedRequest(
        correlation_id=9, api_key=18, api_version=99, client_id="future"
    )
    ours = api_spec("ApiVersions")
    reply = server.send_response(
        event, _broker((18, ours.min_version, ours.max_version), error_code=35, version=0)
    )
    client = ClientConnection(first_correlation_id=9)
    client.send(
        build_request(
            "ApiVersions", ours.max_version, client_software_name="x", client_software_version="1"
        )
    )
    client.receive_data(reply)
    answer = client.next_event()
    assert isinstance(answer, Response)
    assert answer.response.error_code == 35
    assert api_versions_retry_version(answer.response, sent_version=99) == ours.max_version


@pytest.fixture
def no_collector() -> Any:
    """The cyclic collector off: what only it would free stays alive, as it does between
    two of its runs (which is when a connection reads its next frame)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "answer",
    [
        # An old broker's answer to ApiVersions v4: UNSUPPORTED_VERSION in the v0 layout.
        encode_response(18, 0, 7, _broker((18, 0, 2), (0, 0, 8), error_code=35, version=0))[4:],
        # UNSUPPORTED_VERSION and a body no layout reads (the decode fuzz campaign's find).
        bytes.fromhex("00000007002300"),
    ],
    ids=["old-broker-v0-body", "unreadable-body"],
)
def test_the_api_versions_fallback_leaves_the_connection_reading(
    no_collector: None, answer: bytes
) -> None:
    """The fallback read tries layouts that fail; a failed try must not keep a view of
    the connection's buffer alive (exceptions and frames in a reference cycle did, until
    the collector ran), or the buffer cannot move past the frame: BufferError, not a
    typed error, out of ``next_event``."""
    client = ClientConnection(first_correlation_id=7)
    client.send(
        build_request("ApiVersions", 4, client_software_name="t", client_software_version="0")
    )
    client.send(build_request("ApiVersions", 0))
    client.receive_data(len(answer).to_bytes(4, "big") + answer)
    first = client.next_event()
    assert isinstance(first, Response)
    assert first.response.error_code == 35
    # The connection goes on to the next frame.
    client.receive_data(encode_response(18, 0, 8, _broker((18, 0, 2), version=0)))
    second = client.next_event()
    assert isinstance(second, Response)
    assert second.correlation_id == 8
