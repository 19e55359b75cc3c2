"""Public names loaded on first use (PEP 562): a package's ``__getattr__`` and ``__dir__``.

Why: ``import pykaf`` used to import every capability (admin, consumer, producer, the
broker's protocol layer and, through it, kio's schema modules), ~0.3 s before a command
line could do anything. A package that re-exports names from private modules lists them
here instead; each is imported the first time it is read, then kept as a plain global, so
a second read costs what a normal attribute costs. The package also imports the same
names under ``TYPE_CHECKING``, so type checkers see them as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, sources: Mapping[str, str], submodules: str = ""
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names live in the
    modules given as ``{module: "Name other_name ..."}``; ``submodules`` names the
    public submodules that ``package.name`` reaches without an import of its own (an
    eager ``__init__`` had imported them as a side effect, and code may rely on it)."""
    where = {name: module for module, names in sources.items() for name in names.split()}
    modules = set(submodules.split())
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        if name in modules:
            return importlib.import_module(f"{package}.{name}")  # sets the attribute
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # from now on a plain global: __getattr__ is not asked
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
