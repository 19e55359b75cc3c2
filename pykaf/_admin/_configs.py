"""Configs: describe (with sources and defaults) and incremental alter. (Stub: issue 14,
helper H1.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import ConfigChange, ConfigResource
from pykaf._client._async_client import AsyncClient

__all__ = ["ConfigEntry", "alter_configs", "describe_configs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntry:
    """One config of a resource: its value (None when sensitive), where it comes from
    (``source``: "topic", "dynamic_broker", "static_broker", "default", ...)."""

    name: str
    value: str | None
    source: str
    is_default: bool
    read_only: bool
    sensitive: bool
    synonyms: tuple[tuple[str, str | None, str], ...] = ()
    documentation: str | None = None


async def describe_configs(
    client: AsyncClient,
    resources: Iterable[ConfigResource],
    *,
    include_synonyms: bool,
    include_documentation: bool,
    timeout: float | None,
) -> Outcomes[ConfigResource, Mapping[str, ConfigEntry]]:
    raise NotImplementedError


async def alter_configs(
    client: AsyncClient,
    changes: Mapping[ConfigResource, Iterable[ConfigChange]],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[ConfigResource, None]:
    raise NotImplementedError
