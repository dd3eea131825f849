"""Keep a sweep's finished runs as small records in the repo, and put them back: each run's summary.json and
metrics.jsonl, and in_contrast's contrast.json (a few KB; no checkpoint, no TensorBoard events), so that a
reference report can be rebuilt (`report.py --runs <archive>`) and a long sweep resumed in another checkout, its
finished runs skipped.

    python scripts/archive_runs.py save runs/bn_small_batch_cpu results/bn_small_batch/cpu/runs
    python scripts/archive_runs.py restore results/bn_small_batch/cpu/runs runs   # then re-run the sweep

`save` copies only finished runs (status completed or diverged) into <archive>/<experiment>/<run>/ (a study's
nested run dirs keep their paths: runs/distributed/<variant>/s5/); `restore` copies an archive's runs into
<runs>/<experiment>/<run>/, never over a run dir that holds anything already.
"""

import shutil
import sys
from pathlib import Path

from normlab.argtypes import command_parser, existing_dir
from normlab.runlog import read_json

RECORDS = ("summary.json", "metrics.jsonl", "contrast.json")  # what reports read (load_runs; in_contrast its cache)


def finished(run_dir: Path) -> bool:
    summary = read_json(run_dir / "summary.json")
    return isinstance(summary, dict) and summary.get("status") in ("completed", "diverged")


def save(sweep: Path, archive: Path) -> int:
    """Copy the records of every finished run under `sweep` (runs/<experiment>) into archive/<experiment>/."""
    runs = sorted(p.parent for p in sweep.rglob("summary.json") if finished(p.parent))  # (a study's: nested)
    for run in runs:
        target = archive / sweep.name / run.relative_to(sweep)
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORDS:
            if (run / name).is_file():
                shutil.copyfile(run / name, target / name)
    return len(runs)


def restore(archive: Path, runs_root: Path) -> tuple[int, int]:
    """Copy every archived run into runs_root/<experiment>/<run>/; (copied, left as they were)."""
    copied = kept = 0
    for summary in sorted(archive.glob("*/**/summary.json")):
        run = summary.parent
        target = runs_root / run.relative_to(archive)
        if target.exists() and any(target.iterdir()):
            kept += 1  # a run dir in use (or restored before) is never overwritten
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORDS:
            if (run / name).is_file():
                shutil.copyfile(run / name, target / name)
        copied += 1
    return copied, kept


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    keep = commands.add_parser("save", help="copy a sweep's finished runs' records into an archive")
    keep.add_argument("sweep", type=existing_dir, help="runs/<experiment>")
    keep.add_argument("archive", type=Path, help="e.g. results/<claim>/<profile>/runs")
    back = commands.add_parser("restore", help="copy an archive's runs into a runs/ folder")
    back.add_argument("archive", type=existing_dir)
    back.add_argument("runs", type=Path, help="the runs/ folder a sweep resumes from")
    args = parser.parse_args(argv)
    if args.command == "save":
        print(f"saved {save(args.sweep, args.archive)} finished runs into {args.archive / args.sweep.name}")
    else:
        copied, kept = restore(args.archive, args.runs)
        print(f"restored {copied} runs into {args.runs}; {kept} run dirs already there were left as they were")
    return 0


if __name__ == "__main__":
    sys.exit(main())
