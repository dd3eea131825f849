"""A claim's pilot runs (normlab.claims.pilots): one seed that no report counts (0), each pilot a line of overrides on
the claim's pilot experiment (`conf/experiment/<claim>_pilot.yaml`), looking for a setup in which the claim's
tests can speak; then their table, results/<claim>/pilots.md, which the claim's reports include.

    python scripts/pilots.py bn_small_batch            # finished pilots are skipped; --jobs N runs at once
    python scripts/pilots.py bn_convergence --jobs 2
"""

import os
import subprocess
import sys
from pathlib import Path

from normlab.argtypes import command_parser, positive_int
from normlab.claims.pilots import PILOTS
from normlab.commands import normlab_command
from normlab.commands.reproduce import run_sweep
from normlab.runlog import read_json

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("claim", choices=sorted(PILOTS), help="a set of pilots (most are named by their claim)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, help="runs at once")
    args = parser.parse_args(argv)
    pilots = PILOTS[args.claim]
    claim, experiment = pilots.claim_of(args.claim), pilots.experiment_of(args.claim)
    # one sweep per pilot, launched as reproduce.py launches a profile's sweeps (no timing record)
    run_sweep(
        claim,
        experiment.removeprefix(f"{claim}_"),
        [],
        args.jobs,
        Path(".").resolve(),
        record=False,
        sweeps=[line.split() for line in pilots.lines],
    )
    table = subprocess.run(
        [*normlab_command("summarize"), f"runs/{experiment}", "--markdown"], capture_output=True, text=True, check=True
    ).stdout
    summaries = (read_json(p) or {} for p in Path("runs", experiment).glob("*/summary.json"))
    commits = sorted({(s.get("git_commit") or "unknown")[:7] for s in summaries})
    out = ROOT / "results" / claim / pilots.table
    out.write_text(
        f"# {args.claim}: pilots\n\n{pilots.why}\n\nMade by `python scripts/pilots.py {args.claim}` (runs made at "
        f"commit {', '.join(commits)}): `run.py -m experiment={experiment}` with each pilot's overrides (the "
        "columns that differ); seed 0, which no report counts. Accuracies in [0, 1].\n\n"
        + "\n".join(f"- `{line}`" for line in pilots.lines)
        + "\n\n"
        + table
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
