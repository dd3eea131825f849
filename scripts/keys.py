"""Write the config keys' documentation from its one source, src/normlab/keys.py: the table in docs/running.md
(between its `keys` markers) and the key lines of `python run.py --help` (conf/hydra/help/normlab.yaml, after
the norm line). Defaults come from conf/config.yaml as Hydra composes it.

    python scripts/keys.py            # print both
    python scripts/keys.py --write    # and write them (tests/test_docs.py checks they are up to date)
"""

import sys
from pathlib import Path

from normlab.api import compose
from normlab.argtypes import command_parser
from normlab.keys import docs_table, help_lines

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "running.md"
HELP = ROOT / "conf" / "hydra" / "help" / "normlab.yaml"
START, END = "<!-- keys: written by scripts/keys.py from src/normlab/keys.py -->", "<!-- /keys -->"
HELP_AFTER = "    norm=...  "  # the line before the generated key lines (the norm is a group, not a key)


def with_docs_table(text: str, table: str) -> str:
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"


def with_help_lines(text: str, lines: str) -> str:
    """The help file with the key lines after the norm line replaced, up to the blank line that ends them."""
    head, rest = text.split(HELP_AFTER, 1)
    norm_line, rest = rest.split("\n", 1)
    return f"{head}{HELP_AFTER}{norm_line}\n{lines}\n\n{rest.split(chr(10) + chr(10), 1)[1]}"


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("--write", action="store_true", help="write docs/running.md and the --help file")
    args = parser.parse_args(argv)
    config = compose([])
    table, lines = docs_table(config), help_lines(config)
    print(table, lines, sep="\n\n")
    if args.write:
        DOCS.write_text(with_docs_table(DOCS.read_text(), table))
        HELP.write_text(with_help_lines(HELP.read_text(), lines))
        print(f"wrote {DOCS.relative_to(ROOT)} and {HELP.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
