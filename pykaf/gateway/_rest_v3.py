"""Confluent's REST v3: clusters, topics, and records (with its streaming mode)."""

from __future__ import annotations

from pykaf.gateway._routes import Route

__all__ = ["V3_ROUTES"]

V3_ROUTES: list[Route] = []
