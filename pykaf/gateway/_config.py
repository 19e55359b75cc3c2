"""The gateway's TOML configuration file: ``load_config(path, overrides)``.

    bootstrap = "kafka-1:9092,kafka-2:9092"
    journal_dir = "/var/lib/pykaf-gateway/journal"
    close_timeout = 30.0    # seconds a stop gives the producers to flush

    [producer]          # producer and client settings (pykaf.ProducerSettings names)
    acks = "all"

    [security]          # SecuritySettings
    tokens = { "sha256:9f86d0...": "billing" }
    auth_failure_limit = 20         # failures per address per auth_failure_window (60 s)

    [security.permissions]          # principal = { topic pattern = [actions] }
    billing = { "orders" = ["produce", "describe"] }
    platform = { "team-*" = ["create", "delete", "describe"] }

    [limits]            # LimitSettings
    [server]            # ServerSettings: host, port, graceful_timeout, ...

Permission actions are "produce", "describe", "create", "delete" and "*" (all of them);
"create" does not grant "delete" (v3's topic delete asks for "delete").

Top-level keys are ``GatewaySettings`` fields. Every key is checked against the class
that takes it, and a value against the field's type, so a typo or a wrong type fails
at startup naming ``section.key``, rather than as a surprise at the first request.
``overrides`` (a command line's flags) use the same dotted names and win over the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pykaf import ProducerSettings
from pykaf.gateway._limits import LimitSettings
from pykaf.gateway._security import SecuritySettings
from pykaf.gateway._server import ServerSettings
from pykaf.gateway._settings import GatewaySettings

__all__ = ["ConfigError", "load_config"]

# Tables and the class each one builds (None: the top level, GatewaySettings).
_TABLES: Final[dict[str, Any]] = {
    "security": SecuritySettings,
    "limits": LimitSettings,
    "server": ServerSettings,
}
_PRODUCER: Final = "producer"


class ConfigError(ValueError):
    """The configuration cannot work; the message names the file and the key."""


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[GatewaySettings, ServerSettings]:
    """The gateway's and the server's settings from the TOML file at ``path`` (None: no
    file), with ``overrides`` ({"journal_dir": ..., "server.port": ...}) on top and
    ``defaults`` (the same names) under it."""
    source = "the settings" if path is None else str(path)
    values: dict[str, Any] = {} if path is None else _read(Path(path))
    for dotted, value in (defaults or {}).items():
        _place(values, dotted, value, source, keep=True)
    for dotted, value in (overrides or {}).items():
        _place(values, dotted, value, source, keep=False)
    try:
        return _build(values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _place(values: dict[str, Any], dotted: str, value: Any, source: str, *, keep: bool) -> None:
    table, _, key = dotted.rpartition(".")
    target = values.setdefault(table, {}) if table else values
    if not isinstance(target, dict):
        raise ConfigError(f"{source}: {table} must be a table ([{table}])")
    if keep:
        target.setdefault(key, value)
    else:
        target[key] = value


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _build(values: dict[str, Any]) -> tuple[GatewaySettings, ServerSettings]:
    tables = {name: values.pop(name, {}) for name in (*_TABLES, _PRODUCER)}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name} must be a table ([{name}]), not {table!r}")
    built = {name: _instance(cls, tables[name], name) for name, cls in _TABLES.items()}
    if "bootstrap" not in values:
        raise ConfigError("bootstrap is required: the Kafka cluster, 'host:port[,...]'")
    if "producer_options" in values:
        raise ConfigError("producer_options is not a top-level key: use the [producer] table")
    preset = {
        "security": built["security"],
        "limits": built["limits"],
        "producer_options": _producer_options(tables[_PRODUCER]),
    }
    return _instance(GatewaySettings, values, None, preset), built["server"]


def _producer_options(options: dict[str, Any]) -> dict[str, Any]:
    # Checked now (ProducerSettings names, its own value checks), though the producers
    # open later: a typo here would otherwise fail the first request.
    try:
        ProducerSettings.from_options(dict(options))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[producer] {exc}") from None
    return options


def _instance(
    cls: Any, values: dict[str, Any], table: str | None, preset: dict[str, Any] | None = None
) -> Any:
    where = "" if table is None else f"{table}."
    from_mapping = getattr(cls, "from_mapping", None)
    if from_mapping is not None:  # the class reads its own table (nested values)
        try:
            return from_mapping(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    for key, value in values.items():
        if key not in fields or key in (preset or {}):
            known = sorted(set(fields) - set(preset or {}))
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {where}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown key {where}{key}{hint}; known: {', '.join(known)}")
        expected = hints.get(key)
        if expected is not None and not _fits(value, expected):
            raise ConfigError(f"{where}{key} must be {_describe(expected)}, not {value!r}")
    try:
        return cls(**values, **(preset or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{table}] {exc}" if table else str(exc)) from None


def _hints(cls: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a hint this checker cannot resolve: the class checks
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML value can be what ``hint`` says (the class checks the rest)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, Mapping)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:  # TOML has no null: no "None"
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        return " or ".join(_describe(arm) for arm in arms)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a table"
    return names.get(hint, getattr(hint, "__name__", str(hint)))
