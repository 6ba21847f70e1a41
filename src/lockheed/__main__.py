"""``python -m lockheed``: the command line (see :mod:`lockheed._cli`).

:func:`main` is the ``lockheed`` console script; :func:`kubectl_main` is
``kubectl-lockheed``, which kubectl runs for ``kubectl lockheed ...``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from ._cli import main as cli_main

    sys.exit(cli_main())


def kubectl_main() -> None:
    from ._cli import main as cli_main

    sys.exit(cli_main(prog="kubectl lockheed"))


if __name__ == "__main__":
    main()
