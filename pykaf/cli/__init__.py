"""The ``pykaf`` command line: ``pykaf demo``, ``broker``, ``journal``, ``certs``, ``produce``,
``consume`` (see ``pykaf -h``)."""

from pykaf.cli._main import main

__all__ = ["main"]
