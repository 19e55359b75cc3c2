"""Who is calling, and what they may do: authentication and per-principal permissions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from pykaf.gateway._asgi import Request

__all__ = ["Action", "Security", "SecuritySettings"]

#: What a principal may be allowed on a topic.
Action: TypeAlias = Literal["produce", "describe", "create"]


@dataclass(frozen=True, kw_only=True)
class SecuritySettings:
    #: Add the caller's principal to each record in this header (None: do not).
    principal_header: str | None = None


class Security:
    """Checks each request: ``authenticate`` names the principal (or raises 401),
    ``authorize`` checks one action on one topic (or raises 403)."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings

    def authenticate(self, request: Request) -> str | None:
        return None

    def authorize(self, principal: str | None, action: Action, topic: str | None) -> None:
        return None
