"""``python -m pykaf.broker.control --control 127.0.0.1:P broker_down 2``: drive the faults
of a standalone broker started with ``--control-port`` (see ``pykaf.broker._control``)."""

import sys

from pykaf.broker._control import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
