"""`python scripts/verify.py ...` = `normlab verify ...` (normlab.commands.verify)."""

import sys

from normlab.commands.verify import main

if __name__ == "__main__":
    sys.exit(main())
