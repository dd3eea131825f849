"""Check that a committed reference is what the code produces: re-make one reported seed of a claim's reference
profile at this commit and compare each run with its archived record (results/<claim>/<profile>/runs/), evaluation
by evaluation.

    normlab verify ln_rnn                      # the reference's profile, its lowest reported seed
    normlab verify bn_small_batch --seed 3 --profile steps
    normlab verify bn_lstm --tolerance 0.5     # accuracy points allowed between the two (default: the claim's)

The runs of the profile's own sweep are re-made (a tuned reference's selected lrs are tuning's output: its
fixed-lr runs are checked), each with the threads its archived run used, in a scratch folder. Exit 0 when every
evaluation's validation and test accuracy agree within the tolerance, 1 when one does not (with the commit the
runs were made at and the commits since that touched the code or the configs), 2 for bad input.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from normlab.argtypes import command_parser
from normlab.claims import PROFILES, experiment_name, matching, profile_jobs, registry
from normlab.cli import CONF
from normlab.commands import normlab_command
from normlab.runs import load_runs

KEYS = ("val_acc", "test_acc")


def differences(archived, remade) -> tuple[float, int]:
    """The largest |difference| in accuracy points over the evaluations both runs made, and how many there were;
    an evaluation one run has and the other lacks counts as infinite."""
    worst, count = 0.0, 0
    for key in KEYS:
        (steps_a, a), (steps_b, b) = archived.curve(key), remade.curve(key)
        if steps_a != steps_b:
            return float("inf"), max(len(steps_a), len(steps_b))
        worst = max([worst, *(100 * abs(x - y) for x, y in zip(a, b, strict=True))])
        count += len(a)
    return worst, count


def changed_since(commit: str) -> str:
    """How many commits since `commit` touched src/ or conf/ (what can change a run), from git where it is."""
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        ["git", "rev-list", "--count", f"{commit}..HEAD", "--", "src", "conf"], cwd=root, capture_output=True, text=True
    )
    return f"{result.stdout.strip()} commit(s) since touched src/ or conf/" if result.returncode == 0 else "no git"


def main(argv=None) -> int:
    claims = registry()
    parser = command_parser(__doc__)
    parser.add_argument("claim", choices=list(claims))
    parser.add_argument("--profile", choices=PROFILES, help="default: the profile of the claim's reference")
    parser.add_argument("--seed", type=int, help="default: the lowest seed the profile reports")
    parser.add_argument("--tolerance", type=float, help="accuracy points (default: the claim's verify_tolerance)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where the archives are")
    args = parser.parse_args(argv)
    claim = claims[args.claim]
    profile = args.profile or (claim.reference or "quick").split("/")[0]
    tolerance = claim.verify_tolerance if args.tolerance is None else args.tolerance
    experiment = experiment_name(claim.name, profile)
    archive = args.results / claim.name / profile / "runs" / experiment
    if not archive.is_dir():
        print(f"error: no archived runs of {claim.name}'s {profile} profile at {archive}", file=sys.stderr)
        return 2
    jobs = profile_jobs(claim, profile, [], CONF)
    seed = min(config.seed for _, config in jobs) if args.seed is None else args.seed
    jobs = [(job, config) for job, config in jobs if config.seed == seed]
    if not jobs:
        print(f"error: --seed {seed} is not a seed of {claim.name}'s {profile} profile", file=sys.stderr)
        return 2
    archived = load_runs(archive)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="normlab-verify-") as scratch:
        for i, (job, config) in enumerate(jobs):
            kept, _ = matching(archived, [config.to_dict()])
            old = kept[0] if kept else None
            if old is None:
                print(f"  {' '.join(job)}: not archived, skipped")
                continue
            threads = str(old.summary.get("threads") or 1)
            command = [*normlab_command("train"), *job, "progress=false", f"hydra.run.dir={scratch}/{i}"]
            made = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": threads}
            )
            new = next(iter(load_runs(Path(scratch, str(i)))), None)
            if made.returncode != 0 or new is None:
                print(f"  {' '.join(job)}: the run failed: {made.stderr.strip().splitlines()[-1:]}")
                failed += 1
                continue
            worst, count = differences(old, new)
            same = worst <= tolerance
            failed += not same
            print(
                f"  {old.path.name}: {'agrees' if same else 'DIFFERS'}, largest |difference| {worst:.4f} points "
                f"over {count} evaluations (tolerance {tolerance:g})"
            )
    commits = sorted({(r.summary.get("git_commit") or "unknown")[:7] for r in archived})
    since = changed_since(commits[0]) if commits and commits[0] != "unknown" else "the runs' commit is unknown"
    word = "verified" if not failed else f"NOT verified ({failed} of {len(jobs)} runs)"
    print(f"{claim.name} ({profile}, seed {seed}): {word} against runs made at {', '.join(commits)} ({since})")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
