"""The ``pykaf`` command line: ``pykaf demo``, ``pykaf broker``."""

from pykaf.cli._main import main

__all__ = ["main"]
