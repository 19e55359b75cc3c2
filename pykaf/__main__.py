"""``python -m pykaf`` / ``pykaf``: the command line (grows with each layer)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(f"pykaf: nothing to run yet for {args!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
