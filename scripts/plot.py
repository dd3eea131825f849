"""`python scripts/plot.py ...` = `normlab plot ...` (normlab.commands.plot)."""

import sys

from normlab.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
