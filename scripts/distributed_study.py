"""BN under data parallelism: global batch 16 on 1 process vs 4 processes × 4 per device (torchrun, gloo on CPU),
BN local vs BN synced vs GN, plus single-process BN at batch 4 (what local BN sees), at 5 seeds (the protocol's;
paired by seed). Finished runs are skipped, so an interrupted study resumes. Writes results/distributed/.

    python scripts/distributed_study.py                 # 56 min on 2 CPU cores (beside other jobs)
    python scripts/distributed_study.py --seeds 5,6     # fewer seeds (a report of them goes beside the runs)
    python scripts/distributed_study.py --report        # rebuild the report from runs/distributed/
    python scripts/distributed_study.py --report --runs results/distributed/runs   # ... from the committed archive
    python scripts/distributed_study.py max_steps=100   # extra overrides for every run (report beside the runs)
"""

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from normlab.argtypes import command_parser, existing_dir
from normlab.claims.base import fmt_test
from normlab.claims.data_parallel import CRITERION, MARGIN, VARIANTS, analyze
from normlab.claims.plots import curves
from normlab.runlog import write_json
from normlab.runs import load_runs

ROOT = Path(__file__).resolve().parents[1]
# fresh seeds: 0-4 decided the study before its equivalence tests were written, so they cannot test them
SEEDS = "5,6,7,8,9"


def run_dir(label: str, seed: int) -> str:
    return f"runs/distributed/{label.replace(' ', '_')}/s{seed}"


def command(label: str, nproc: int, overrides: list[str], seed: int) -> list[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    launch = launch if nproc > 1 else [sys.executable]
    where = f"hydra.run.dir={run_dir(label, seed)}"
    return [
        *launch,
        str(ROOT / "run.py"),
        "experiment=distributed",
        "progress=false",
        where,
        f"seed={seed}",
        *overrides,
    ]


def shown(cmd: list[str]) -> str:
    """A command as a user types it: `run.py ...` or `torchrun ...`."""
    text = " ".join(cmd).replace(sys.executable + " -m torch.distributed.run", "torchrun")
    return text.replace(sys.executable, "python").replace(str(ROOT / "run.py"), "run.py")


def report(seeds: list[int], extra: list[str], timings: dict, runs_root: Path, out: Path) -> None:
    runs: dict = {}
    for run in load_runs(runs_root / "distributed"):
        label = run.path.parent.name.replace("_", " ")
        if run.seed in seeds and any(label == v[0] for v in VARIANTS):
            runs.setdefault(label, []).append(run)
    result = analyze(runs)
    out.mkdir(parents=True, exist_ok=True)
    plot = curves(
        {label: runs[label] for label, _, _ in VARIANTS if label in runs},
        out / "test_accuracy.png",
        "CIFAR-10 CNN, global batch 16: test accuracy (mean over seeds)",
    )
    commands = "\n".join(
        f"- {label}: `{shown(command(label, nproc, [*overrides, *extra], seeds[0]))}`"
        for label, nproc, overrides in VARIANTS
    )
    commits = sorted({(r.summary.get("git_commit") or "unknown")[:7] for rs in runs.values() for r in rs})
    (decided,) = result["tests"]
    study = shown([sys.executable, "scripts/distributed_study.py", *extra])
    text = f"""# BN under data-parallel training

BN normalizes with the statistics of the batch it sees, and under DistributedDataParallel each process sees only
its own shard: with 4 processes × 4 images, local BN computes its statistics over 4 images even though the global
batch is 16. SyncBatchNorm (`norm.sync=true`) all-reduces the moments and restores the global batch's statistics;
GN normalizes each sample by itself and does not care. Expected: local BN ≈ single-process BN at batch 4, synced
BN ≈ batch 16, GN the same everywhere.

**Outcome: {decided.outcome}** ({fmt_test(decided.to_dict())}; margin {MARGIN:+g}, stated before running).

## Setup

`cnn` (width 16) on the first 10k images of CIFAR-10's 45k training split, 2 epochs (1,250 steps of global batch
16; batch 4 in one process: 5,000 steps at lr / 4), SGD lr 0.05 momentum 0.9, cosine decay to 0, crop+flip, GN
with 4 channels per group; the test set's 10k images; seeds {", ".join(map(str, seeds))}, the same in every
variant, so variants are compared **paired by seed** (`scipy.stats.ttest_rel`, 95% interval; results/README.md
states the protocol). 4 processes share this machine's 2 CPU cores (gloo, one thread each), so wall time says
nothing about speed. Runs made at commit {", ".join(commits)}, {datetime.date.today()};
{timings.get("wall_s", 0) / 60:.1f} min of wall time, by `{study}`, which runs (seed {seeds[0]} shown):

{commands}

## Results

{result["table"]}

The pairs marked "the same function" differ only in float summation order (tests/test_distributed.py checks that
GN and synced BN in 2 processes match one process on the same global batch to 1e-4 over 12 steps): they are
equivalence tests (two one-sided tests, the 90% interval inside ±δ), as their hypothesis is equality. Criterion:
{CRITERION}

![{plot}]({plot})

Multi-node: torchrun's own rendezvous, e.g. on each of 2 nodes
`torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 run.py ...`;
normlab needs nothing more (nccl on CUDA, gloo on CPU).
"""
    (out / "README.md").write_text(text)
    write_json(
        out / "summary.json",
        {
            "seeds": len(seeds),
            "criterion": CRITERION,
            "tests": [t.to_dict() for t in result["tests"]],
            "reported": [t.to_dict() for t in result["reported"]],
            "wall_s": timings.get("wall_s"),
            "commit": ",".join(commits),
        },
    )
    print(text)


def main() -> int:
    parser = command_parser(__doc__)
    parser.add_argument("--report", action="store_true", help="only rebuild the report")
    parser.add_argument("--seeds", default=SEEDS, help=f"comma-separated seeds (default {SEEDS})")
    parser.add_argument("--workdir", type=existing_dir, default=ROOT, help="where runs/ go (default: the repo)")
    parser.add_argument("--results", type=Path, help="where the report goes (default: <workdir>/results)")
    parser.add_argument(
        "--runs",
        type=existing_dir,
        help="with --report: the runs' root (default: <workdir>/runs; the archive: "
        "results/distributed/runs, made by `scripts/archive_runs.py save runs/distributed results/distributed/runs`)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. max_steps=100")
    args = parser.parse_intermixed_args()
    try:
        seeds = sorted({int(s) for s in args.seeds.split(",")})
    except ValueError:
        print(f"error: --seeds {args.seeds!r} is not a comma-separated list of integers, e.g. 0,1,2", file=sys.stderr)
        return 2
    work = args.workdir.resolve()
    # a report of other seeds or overridden runs never rewrites the committed results: it goes beside the runs
    full = args.seeds == SEEDS and not args.overrides
    out = (args.results or work / "results") / "distributed" if full else work / "runs" / "distributed" / "report"
    runs_root = args.runs.resolve() if args.runs and args.report else work / "runs"
    timing_file = runs_root / "distributed" / "study.json"
    previous = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    if not args.report:
        start = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for seed in seeds:
            for label, nproc, overrides in VARIANTS:
                print(f"+ {label}, seed {seed}", flush=True)
                cmd = command(label, nproc, [*overrides, *args.overrides], seed)
                if subprocess.run(cmd, cwd=work, env=env).returncode != 0:
                    print(
                        f"error: {label}, seed {seed} failed (finished runs are kept; re-run to resume)",
                        file=sys.stderr,
                    )
                    return 1
        wall = time.perf_counter() - start
        if wall > previous.get("wall_s", 0):  # the time of the call that did the work, not of a resume
            timing_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(timing_file, {"wall_s": wall})
            previous = {"wall_s": wall}
    report(seeds, args.overrides, previous, runs_root, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
