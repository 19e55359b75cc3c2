"""The blocking Client: the same calls as AsyncClient, on a private loop in a daemon thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from peers import MockCluster, Tansu, free_port

from pykaf._client._client import Client
from pykaf._client._targets import Leader
from pykaf.errors import ClientClosedError, NoBrokersError, UnsupportedVersionError
from pykaf.protocol._messages import build_request
from pykaf.protocol._records import encode_batch

FAST = {"reconnect_backoff": 0.01, "reconnect_backoff_max": 0.1}


def metadata_request(version: int) -> object:
    return build_request(
        "Metadata",
        version,
        topics=[],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


@pytest.mark.peer
def test_blocking_twins_against_the_mock_cluster(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("sync", 2, 1)
    with Client(mock_cluster.bootstrap, request_timeout=10.0) as client:
        view = client.metadata(["sync"])
        info = view.topics["sync"]
        assert len(info.partitions) == 2
        versions = client.api_versions(info.partitions[0].leader)
        assert versions.node_id == info.partitions[0].leader
        batch = encode_batch([(b"k", b"v", [], 1_700_000_000_000)])
        answer = client.request(
            build_request(
                "Produce",
                versions.version("Produce"),
                transactional_id=None,
                acks=-1,
                timeout=5000,
                topic_data=[
                    {
                        "name": "sync",
                        "topic_id": info.topic_id,
                        "partition_data": [{"index": 0, "records": batch}],
                    }
                ],
            ),
            to=Leader("sync", 0),
            purpose="produce",
        )
        assert int(answer.responses[0].partition_responses[0].error_code) == 0
        # Typed errors cross the thread boundary as they are.
        with pytest.raises(UnsupportedVersionError):
            client.request(
                build_request(
                    "ListOffsets", 11, replica_id=-1, isolation_level=0, timeout=1000, topics=[]
                ),
                to=1,
            )
    assert client.closed
    with pytest.raises(ClientClosedError):
        client.metadata()


@pytest.mark.peer
def test_many_threads_share_one_client(mock_cluster: MockCluster) -> None:
    with Client(mock_cluster.bootstrap) as client:
        version = client.api_versions().version("Metadata")

        def call(node: int) -> int:
            return len(client.request(metadata_request(version), to=node).brokers)

        with ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(call, [1, 2, 3] * 10))
    assert sizes == [3] * 30


@pytest.mark.peer
def test_blocking_client_against_tansu(tansu: Tansu) -> None:
    tansu.create_topic("sync-tansu", 3)
    with Client([tansu.bootstrap]) as client:
        info = client.metadata(["sync-tansu"]).topics["sync-tansu"]
        assert [p.partition for p in info.partitions] == [0, 1, 2]


def test_all_dead_typed_error_and_bounded_close_with_a_call_pending() -> None:
    dead = f"127.0.0.1:{free_port()}"
    client = Client(dead, request_timeout=1.0, close_timeout=1.0, **FAST)
    with pytest.raises(NoBrokersError, match=dead):
        client.metadata()
    outcome: list[BaseException] = []
    started = threading.Event()

    def pending_call() -> None:
        started.set()
        try:
            client.metadata(timeout=60.0)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=pending_call)
    caller.start()
    assert started.wait(5.0)
    client.close()  # must not wait for the 60 s call
    caller.join(5.0)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosedError)
    client.close()  # idempotent


def test_bad_settings_raise_before_any_thread_starts() -> None:
    before = threading.active_count()
    with pytest.raises(TypeError, match="request_timeout"):
        Client("127.0.0.1:9092", request_timout=1.0)
    assert threading.active_count() == before


def test_a_timeout_raised_inside_the_call_keeps_its_own_message() -> None:
    from pykaf._client._loop_thread import LoopThread
    from pykaf._errors import KafkaTimeoutError

    async def times_out() -> None:
        raise KafkaTimeoutError("broker 3 at 127.0.0.1:1 did not answer Metadata in 1s")

    loop = LoopThread()
    try:
        with pytest.raises(KafkaTimeoutError, match="broker 3"):
            loop.run(times_out, 5.0)
    finally:
        loop.stop(5.0)
