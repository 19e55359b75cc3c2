"""Broker addresses: ``host:port`` parsing for bootstrap lists, IPv6 included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "Address", "parse_bootstrap"]

DEFAULT_PORT = 9092


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Address:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a broker address needs a host")
        if type(self.port) is not int or not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, not {self.port!r}")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """``"host:port"``, ``"host"`` (port 9092), ``"[::1]:9092"``; a ``PLAINTEXT://``-
        style scheme prefix, as Kafka's listener lists write it, is accepted and dropped."""
        entry = text.strip()
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        if not entry:
            raise ValueError(f"empty broker address in {text!r}")
        if entry.startswith("["):
            host, sep, rest = entry[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad IPv6 broker address {text!r}; write [host]:port")
            port_text = rest[1:] if rest else ""
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
        elif ":" in entry:
            raise ValueError(f"bad broker address {text!r}; write IPv6 hosts as [host]:port")
        else:
            host, port_text = entry, ""
        if not port_text:
            port = DEFAULT_PORT
        elif port_text.isdigit():
            port = int(port_text)
        else:
            raise ValueError(f"bad port in broker address {text!r}")
        try:
            return cls(host=host, port=port)
        except ValueError as exc:
            raise ValueError(f"bad broker address {text!r}: {exc}") from None


def parse_bootstrap(bootstrap: str | Iterable[str | tuple[str, int]]) -> tuple[Address, ...]:
    """``"host:port,host:port"`` or a list of such strings or ``(host, port)`` pairs;
    duplicates dropped, order kept (the first entries are tried first)."""
    items: list[str | tuple[str, int]]
    if isinstance(bootstrap, str):
        items = [part for part in bootstrap.split(",") if part.strip()]
    else:
        items = list(bootstrap)
    addresses: list[Address] = []
    for item in items:
        if isinstance(item, tuple):
            host, port = item
            address = Address(host=host, port=port)
        elif isinstance(item, str):
            address = Address.parse(item)
        else:
            raise TypeError(f"a bootstrap entry is 'host:port' or (host, port), not {item!r}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValueError("the bootstrap list is empty; give at least one 'host:port'")
    return tuple(addresses)
