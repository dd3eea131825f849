"""The `normlab` command's subcommands besides `train`: one module each, with `main(argv)` (scripts/ keeps thin
wrappers, so that `python scripts/compare.py ...` and the commands written in the committed reports still run)."""

import sys


def normlab_command(name: str) -> list[str]:
    """The command line that runs `normlab NAME` with this interpreter, installed or in a checkout."""
    return [sys.executable, "-m", "normlab", name]


def shown(command: list[str]) -> str:
    """A `normlab_command` line as a person types it: `normlab NAME ARGS`."""
    return " ".join(["normlab", *command[3:]])
