"""`normlab COMMAND ...` (installed by the package; also `python -m normlab`): `normlab train` is
`python run.py`, the rest are the tools that read runs."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train one run, or a sweep with -m (the same as `python run.py ...`; --nproc N: N processes, DDP)",
    "compare": "rank the norms of a sweep, with 95% intervals over seeds, and recommend one if the runs say so",
    "summarize": "one row per run (or per arm with --seeds) of a folder of runs",
    "plot": "validation or test curves of a folder of runs, a line per arm",
    "reproduce": "run a paper's claim (its sweep, then its report): `normlab reproduce bn_small_batch`",
    "report": "write a claim's report from runs already made",
    "verify": "re-make one seed of a claim's committed reference and compare it with the archived runs",
    "migrate": "bring run records saved by an earlier normlab up to today's config, in place",
    "bench": "measure speed: the runner, data, norm layers, kernels (results/bench/)",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "usage: normlab COMMAND [ARGS]   (normlab COMMAND --help for its own)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    sys.argv[0] = f"normlab {name}"  # the name argparse's usage lines show
    try:
        if name == "train":
            from normlab.launch import launch, split_nproc

            nproc, rest = split_nproc(rest)
            if nproc is not None:  # several processes: torchrun's launcher, one line if one fails
                return launch(nproc, rest)
            from normlab.cli import train_command

            train_command(rest)
            return 0
        return importlib.import_module(f"normlab.commands.{name}").main(rest) or 0
    except KeyboardInterrupt:  # Ctrl-C while a command's imports load (seconds), or one that does not catch it
        print("interrupted: what finished is kept; nothing is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
