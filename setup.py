"""Build the optional C accelerators (record batches, and the gateway's v3 streaming route);
everything else is in pyproject.toml.

The extensions are ``optional``: without a compiler (or if one fails to build) pip still
installs pykaf, and ``pykaf.protocol._records`` falls back to the pure-Python reference
``_record_codec`` (``pykaf.gateway._v3_fast`` to its Python twins). Set
``PYKAF_NO_EXTENSIONS=1`` at build time to skip them entirely (and at run time to ignore
built ones).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]


ext_modules = []
if not os.environ.get("PYKAF_NO_EXTENSIONS"):
    ext_modules.append(
        Extension(
            "pykaf.protocol._crecords",
            ["pykaf/protocol/_crecords.c"],
            optional=True,
            extra_compile_args=_compile_args(),
        )
    )
    # The v3 streaming route's per-record loops (pykaf.gateway._v3_fast has their
    # Python twins, used without it).
    ext_modules.append(
        Extension(
            "pykaf.gateway._cv3",
            ["pykaf/gateway/_cv3.c"],
            optional=True,
            extra_compile_args=_compile_args(),
        )
    )

setup(ext_modules=ext_modules)
