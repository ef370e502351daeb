import sys

from netwarden.cli import main

sys.exit(main())
