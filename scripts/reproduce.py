"""`python scripts/reproduce.py ...` = `normlab reproduce ...` (normlab.commands.reproduce)."""

import sys

from normlab.commands.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
