"""Build the optional C accelerator for record batches; everything else is in pyproject.toml.

The extension is ``optional``: without a compiler (or if it fails to build) pip still
installs pykaf, and ``pykaf.protocol._records`` falls back to the pure-Python reference
``_record_codec``. Set ``PYKAF_NO_EXTENSIONS=1`` at build time to skip it entirely (and at
run time to ignore a built one).
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

setup(ext_modules=ext_modules)
