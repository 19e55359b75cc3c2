"""Bootstrap parsing and request targets: no I/O."""

from __future__ import annotations

import pytest

from pykaf._client._address import Address, parse_bootstrap
from pykaf._client._targets import (
    Coordinator,
    CoordinatorType,
    Leader,
    check_purpose,
    check_target,
)


def test_bootstrap_string_and_list_forms() -> None:
    expected = (Address(host="a", port=1), Address(host="b", port=9092))
    assert parse_bootstrap("a:1, b") == expected
    assert parse_bootstrap(["a:1", ("b", 9092)]) == expected
    assert parse_bootstrap("a:1,a:1,b:9092,") == expected  # duplicates and empties dropped
    assert parse_bootstrap("PLAINTEXT://a:1") == (Address(host="a", port=1),)


def test_ipv6_addresses() -> None:
    (address,) = parse_bootstrap("[::1]:9093")
    assert address == Address(host="::1", port=9093)
    assert str(address) == "[::1]:9093"


@pytest.mark.parametrize("bad", ["", " , ", "a:b", "a:0", "a:70000", "::1:9092", "[::1"])
def test_bad_bootstrap_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_bootstrap(bad)


def test_targets() -> None:
    assert check_target("any") == "any"
    assert check_target(3) == 3
    assert check_target(Leader("t", 0)) == Leader("t", 0)
    coordinator = Coordinator("txn", type="transaction")
    assert coordinator.type is CoordinatorType.TRANSACTION
    assert Coordinator("g") == Coordinator("g", CoordinatorType.GROUP)
    assert hash(Coordinator("g")) == hash(Coordinator("g", 0))
    for bad in ("leader", -1, True, None, ("t", 0)):
        with pytest.raises(ValueError, match=r"to=|node id"):
            check_target(bad)
    with pytest.raises(ValueError, match="partition"):
        Leader("t", -1)
    with pytest.raises(ValueError, match="coordinator type"):
        Coordinator("g", type="cluster")
    assert check_purpose("fetch") == "fetch"
    with pytest.raises(ValueError, match="purpose="):
        check_purpose("poll")
