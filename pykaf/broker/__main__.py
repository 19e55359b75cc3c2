"""``python -m pykaf.broker``: run a standalone embedded cluster (see ``cli``)."""

import sys

from pykaf.broker.cli import main

sys.exit(main())
