"""`python scripts/report.py ...` = `normlab report ...` (normlab.commands.report)."""

import sys

from normlab.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
