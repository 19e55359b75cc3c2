import pytest
from kio.schema.errors import ErrorCode

from pykaf import errors
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerError, UnknownBrokerError


def test_every_kio_code_has_a_class() -> None:

    for code in ErrorCode:
        if code.value == 0:
            continue
        err = error_for_code(code.value, "detail")
        assert type(err).code == code.value
        assert err.retriable == code.retriable
        assert err.name == code.name.upper()
        assert "detail" in str(err)
        assert isinstance(err, errors.PykafError)


def test_specific_classes() -> None:
    err = error_for_code(6)
    assert isinstance(err, errors.NotLeaderOrFollowerError)
    assert err.retriable
    assert "NOT_LEADER_OR_FOLLOWER" in str(err)
    assert isinstance(error_for_code(7), TimeoutError)


def test_unknown_code_and_zero() -> None:
    err = error_for_code(31999)
    assert isinstance(err, UnknownBrokerError)
    assert isinstance(err, BrokerError)
    assert "31999" in str(err)
    with pytest.raises(ValueError, match="success"):
        error_for_code(0)
