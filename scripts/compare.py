"""`python scripts/compare.py ...` = `normlab compare ...` (normlab.commands.compare)."""

import sys

from normlab.commands.compare import main

if __name__ == "__main__":
    sys.exit(main())
