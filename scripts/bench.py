"""`python scripts/bench.py ...` = `normlab bench ...` (normlab.commands.bench)."""

import sys

from normlab.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
