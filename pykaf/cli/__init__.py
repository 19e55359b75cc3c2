"""The ``pykaf`` command line: ``pykaf demo``, ``broker``, ``journal``, ``certs``."""

from pykaf.cli._main import main

__all__ = ["main"]
