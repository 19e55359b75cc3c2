"""ClientSettings validation, and AsyncClient construction (lazy: nothing connects)."""

from __future__ import annotations

import pytest

import pykaf
from pykaf._client._async_client import AsyncClient
from pykaf._client._settings import ClientSettings
from pykaf._errors import ClientClosedError
from pykaf._producer._settings import ProducerSettings


def test_defaults_are_valid_and_frozen() -> None:
    settings = ClientSettings()
    assert settings.request_timeout == 30.0
    with pytest.raises(AttributeError):
        settings.request_timeout = 1.0  # type: ignore[misc]


def test_unknown_setting_names_close_matches() -> None:
    with pytest.raises(TypeError, match="did you mean request_timeout"):
        ClientSettings.from_options({"request_timout": 1.0})
    with pytest.raises(TypeError, match="known settings"):
        ClientSettings.from_options({"zzz": 1})


@pytest.mark.parametrize(
    "options",
    [
        {"request_timeout": 0},
        {"connect_timeout": -1.0},
        {"metadata_max_age": float("inf")},
        {"reconnect_backoff": 2.0, "reconnect_backoff_max": 1.0},
        {"max_in_flight_per_connection": 0},
        {"max_in_flight_per_connection": 1.5},
        {"client_id": 42},
        {"client_software_name": "has space"},
        {"ssl_context": "yes"},
        {"request_timeout": True},
    ],
)
def test_bad_values_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClientSettings.from_options(options)


async def test_client_is_lazy_and_closes_without_brokers() -> None:
    # Nothing listens on a .invalid name: construction and close must not touch it.
    client = AsyncClient("nonexistent.invalid:9092", request_timeout=1.0)
    assert not client.closed
    await client.close()
    assert client.closed
    with pytest.raises(ClientClosedError):
        await client.metadata()


def test_settings_object_or_options_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        AsyncClient("a:1", settings=ClientSettings(), request_timeout=1.0)


def test_settings_and_keyword_options_together_are_refused() -> None:
    ready = ProducerSettings.from_options({"linger": 0.01})
    for make in (pykaf.Producer, pykaf.AsyncProducer, pykaf.AsyncConsumer, pykaf.AsyncClient):
        with pytest.raises(TypeError, match=r"either settings= or keyword options.*linger"):
            make("127.0.0.1:9", settings=ready, linger=0.5)  # type: ignore[arg-type]
    producer = pykaf.AsyncProducer("127.0.0.1:9", settings=ready)
    assert producer.settings is ready
