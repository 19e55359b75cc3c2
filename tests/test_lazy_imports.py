"""Start-up: ``import pykaf`` and ``pykaf.protocol`` load their names on first use, and a
command line imports what its command needs (issue 14: ``pykaf produce`` was bound by
~0.6 s of imports). Each check runs in a fresh interpreter: this one has loaded it all."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def under(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if m.startswith(prefixes))


def test_import_pykaf_loads_no_capability_and_no_kio() -> None:
    modules = loaded_after("import pykaf, pykaf.protocol, pykaf.errors")
    assert under(modules, "pykaf._client", "pykaf._producer", "pykaf._consumer") == []
    assert under(modules, "pykaf._admin", "pykaf.protocol.", "kio", "asyncio") == []


def test_a_producer_loads_no_consumer_admin_or_unused_kio_schema() -> None:
    modules = loaded_after("from pykaf import Producer")
    assert "pykaf._producer._producer" in modules
    assert under(modules, "pykaf._consumer._async_consumer", "pykaf._admin") == []
    # Produce requests are written by hand; their kio classes load only if one is built.
    assert under(modules, "kio.schema.produce.", "pykaf.protocol._legacy_schemas") == []


def test_the_command_line_imports_only_its_command() -> None:
    modules = loaded_after("import pykaf.cli")
    assert under(modules, "pykaf._", "kio", "asyncio") == [
        "pykaf._errors",
        "pykaf._lazy",
        "pykaf._version",
    ]


def test_a_command_keeps_kio_off_hypothesis_but_leaves_hypothesis_usable() -> None:
    pytest.importorskip("hypothesis")
    code = (
        "import sys\n"
        "sys.argv = ['pykaf', '--help']\n"
        "from pykaf.cli import main\n"
        "main()\n"
        "import kio.static._phantom as phantom\n"
        "import hypothesis.strategies\n"
        "print(phantom.hypothesis is None, 'hypothesis.strategies' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split()[-2:] == ["True", "True"]


def test_main_called_with_arguments_leaves_kio_as_it_is() -> None:
    # A test (or an application) that calls main([...]) keeps kio's strategies.
    pytest.importorskip("hypothesis")
    code = (
        "from pykaf.cli import main\n"
        "main(['--help'])\n"
        "import kio.static._phantom as phantom\n"
        "print(phantom.hypothesis is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split()[-1] == "True"


def _typed_names(package: str) -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` imports of the package's __init__."""
    source = (ROOT / package.replace(".", "/") / "__init__.py").read_text()
    names: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                assert stmt.module is not None
                names.update((alias.name, stmt.module) for alias in stmt.names)
    return names


@pytest.mark.parametrize("package", ["pykaf", "pykaf.protocol"])
def test_each_lazy_name_is_the_one_type_checkers_see(package: str) -> None:
    module = importlib.import_module(package)
    typed = _typed_names(package)
    assert typed
    for name, source in typed.items():
        assert name in module.__all__
        assert getattr(module, name) is getattr(importlib.import_module(source), name)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        getattr(module, "NoSuchName")  # noqa: B009  (the missing name is the point)


def test_public_submodules_are_reached_from_the_package() -> None:
    # `import pykaf; pykaf.protocol.encode_batch` worked while __init__ imported it all.
    code = "import pykaf\nprint(pykaf.protocol.encode_batch.__name__, pykaf.errors.PykafError)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split()[0] == "encode_batch"
