"""`python scripts/summarize.py ...` = `normlab summarize ...` (normlab.commands.summarize)."""

import sys

from normlab.commands.summarize import main

if __name__ == "__main__":
    sys.exit(main())
