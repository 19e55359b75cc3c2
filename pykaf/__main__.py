"""``python -m pykaf`` and the ``pykaf`` script."""

import sys

from pykaf.cli import main

if __name__ == "__main__":
    sys.exit(main())
