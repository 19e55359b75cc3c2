"""The ``pykaf`` command line: ``pykaf demo``, ``pykaf broker``, ``pykaf journal``."""

from pykaf.cli._main import main

__all__ = ["main"]
