"""sarama 1.22 (Debian's Go package) as a consumer-group member against the embedded
broker: it joins with JoinGroup v1 and commits with OffsetCommit v1, versions Kafka 4
dropped and Kafka 3.x (and the embedded broker) still answer.

The Go program (``sarama_groupprobe/main.go``) is built offline in GOPATH mode into a
temporary directory; the test skips where go or the sarama sources are missing
(``apt-get install golang-go golang-github-shopify-sarama-dev``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pykaf
from pykaf.broker import BlockingCluster
from pykaf.broker._groups import group_coordinator

pytestmark = pytest.mark.peer

_GOPATH_DEBIAN = Path("/usr/share/gocode")
_SARAMA = _GOPATH_DEBIAN / "src/github.com/Shopify/sarama"
_SOURCE = Path(__file__).parent / "sarama_groupprobe" / "main.go"
_BUILD_TIMEOUT = 120.0
_RUN_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def groupprobe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (apt-get install golang-go)")
    if not _SARAMA.is_dir():
        pytest.skip(f"sarama's sources are not at {_SARAMA} (golang-github-shopify-sarama-dev)")
    root = tmp_path_factory.mktemp("sarama")
    package = root / "src" / "groupprobe"
    package.mkdir(parents=True)
    shutil.copy(_SOURCE, package / "main.go")
    binary = root / "groupprobe"
    env = {
        **os.environ,
        "GOPATH": f"{root}:{_GOPATH_DEBIAN}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(root / "cache"),
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), "groupprobe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=_BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, f"building the sarama program failed:\n{built.stderr}"
    return binary


def test_sarama_consumer_group_consumes_and_commits(groupprobe: Path) -> None:
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("sarama", 2)
        with pykaf.Producer(bootstrap=cluster.bootstrap) as producer:
            for i in range(10):
                producer.produce("sarama", f"v{i}".encode(), partition=i % 2)
            producer.flush()
        run = subprocess.run(
            [str(groupprobe), cluster.bootstrap, "sarama", "sarama-group", "10"],
            capture_output=True,
            text=True,
            timeout=_RUN_TIMEOUT,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        consumed = sorted(line.split()[2] for line in run.stdout.splitlines())
        assert consumed == sorted(f"v{i}" for i in range(10))
        offsets = cluster.call(
            lambda: group_coordinator(cluster.state).offsets.all_for("sarama-group")
        )
        assert {p: c.offset for p, c in offsets["sarama"].items()} == {0: 5, 1: 5}
