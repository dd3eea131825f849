"""Write the config keys' documentation from its one source, src/normlab/keys.py: the tables in docs/running.md
(between their markers) and the key lines of `python run.py --help` (conf/hydra/help/normlab.yaml, after the
norm line). Defaults come from conf/config.yaml as Hydra composes it, and from each conf/model/<name>.yaml.

    python scripts/keys.py            # print both
    python scripts/keys.py --write    # and write them (tests/test_docs.py checks they are up to date)
"""

import sys
from pathlib import Path

import yaml

from normlab.api import compose
from normlab.argtypes import command_parser
from normlab.keys import docs_table, help_lines, model_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "running.md"
HELP = ROOT / "conf" / "hydra" / "help" / "normlab.yaml"
MARK = "<!-- {}: written by scripts/keys.py from src/normlab/keys.py -->"  # the start of a table, then its end:
END = "<!-- /{} -->"
HELP_AFTER = "    norm=...  "  # the line before the generated key lines (the norm is a group, not a key)


def with_docs_table(text: str, table: str, name: str = "keys") -> str:
    """`text` with the table between `name`'s markers replaced."""
    start, end = MARK.format(name), END.format(name)
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def model_defaults() -> dict[str, dict]:
    """Each model's conf/model/<name>.yaml (its keys and defaults), but the name and a custom model's target."""
    files = sorted((ROOT / "conf" / "model").glob("*.yaml"))
    return {
        f.stem: {k: v for k, v in yaml.safe_load(f.read_text()).items() if k not in ("name", "_target_")} for f in files
    }


def with_help_lines(text: str, lines: str) -> str:
    """The help file with the key lines after the norm line replaced, up to the blank line that ends them."""
    head, rest = text.split(HELP_AFTER, 1)
    norm_line, rest = rest.split("\n", 1)
    tail = rest.split("\n\n", 1)[1]  # what follows the old key lines
    return f"{head}{HELP_AFTER}{norm_line}\n{lines}\n\n{tail}"


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("--write", action="store_true", help="write docs/running.md and the --help file")
    args = parser.parse_args(argv)
    config = compose([])
    table, models, lines = docs_table(config), model_table(model_defaults()), help_lines(config)
    print(table, models, lines, sep="\n\n")
    if args.write:
        DOCS.write_text(with_docs_table(with_docs_table(DOCS.read_text(), table), models, "model keys"))
        HELP.write_text(with_help_lines(HELP.read_text(), lines))
        print(f"wrote {DOCS.relative_to(ROOT)} and {HELP.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
