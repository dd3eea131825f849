"""`normlab train --nproc N ARGS`: torchrun's launcher (torch.distributed.run, one machine) in this process, so that
a failed process ends in normlab's one line and exit code instead of torchrun's ChildFailedError report."""

from __future__ import annotations

import logging
import sys


def split_nproc(argv: list[str]) -> tuple[int | None, list[str]]:
    """`--nproc N` (or `--nproc=N`) taken out of `argv`: (N, the rest); (None, argv) where it is not given."""
    for i, arg in enumerate(argv):
        if arg == "--nproc" or arg.startswith("--nproc="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if not value.isdigit() or int(value) < 1:
                print(f"error: --nproc {value!r} is not allowed; give a number of processes >= 1", file=sys.stderr)
                sys.exit(2)
            rest = argv[:i] + argv[i + (1 if "=" in arg else 2) :]
            return int(value), rest
    return None, argv


def launch(nproc: int, argv: list[str]) -> int:
    """`torchrun --standalone --nproc_per_node=nproc -m normlab train argv`, quietly: each process speaks for
    itself (rank 0 gives a refusal's one line, exit 2); a process that failed otherwise gets one line here naming
    it, and the exit code is the first failure's (2 bad input, 130 interrupted, else 1)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from normlab.cli import INTERRUPTED

    for name in ("torch.distributed.elastic", "torch.distributed.run"):  # the agent's warnings and failure table
        logging.getLogger(name).setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "normlab", "train", *argv])
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode in (2, 130):  # said already, in one line, by rank 0
            return failure.exitcode
        print(
            f"error: process {rank} of {nproc} failed (exit code {failure.exitcode}; its output is above); "
            f"`torchrun --nproc_per_node={nproc} -m normlab train ...` prints torchrun's full report",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return 0
