"""`python scripts/migrate_runs.py ...` = `normlab migrate ...` (normlab.commands.migrate)."""

import sys

from normlab.commands.migrate import main

if __name__ == "__main__":
    sys.exit(main())
