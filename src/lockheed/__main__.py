"""``python -m lockheed``: the command line (see :mod:`lockheed._cli`)."""

from __future__ import annotations

import sys


def main() -> None:
    from ._cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
