"""``python -m controller ...`` is ``netwarden controller ...``."""

import sys

from netwarden.cli import main

sys.exit(main(["controller", *sys.argv[1:]]))
