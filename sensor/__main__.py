"""``python -m sensor ...`` is ``netwarden sensor ...``."""

import sys

from netwarden.cli import main

sys.exit(main(["sensor", *sys.argv[1:]]))
