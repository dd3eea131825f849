"""Turn a claim's runs into results/<claim>/ (README.md with table, paper figure, criterion and verdict; PNG plots;
summary.json) and refresh the index results/README.md.

    normlab report bn_small_batch --profile cpu     # runs/bn_small_batch_cpu/, else the committed archive
    normlab report bn_small_batch --profile cpu --in-place   # rewrite results/bn_small_batch/cpu/ itself
    normlab report all
    normlab report bn_convergence max_steps=1000    # runs made with overrides

A report counts exactly the runs of its profile's sweep (every job composed as `run.py -m` would, overrides
included); other runs under runs/<experiment>/ are left out and counted. It reads runs/<experiment>/, or where
that folder is missing the runs archived beside the committed report (results/<claim>/<profile>/runs/), and writes
to runs/<experiment>/report/ (or --results): the committed results/ only with --in-place.
"""

import sys
from pathlib import Path

from normlab.argtypes import command_parser
from normlab.claims import PROFILES, experiment_name, profile_jobs, registry, results_dir, write_index, write_report
from normlab.cli import CONF
from normlab.runlog import read_json


def main(argv=None) -> int:
    claims = registry()
    parser = command_parser(__doc__)
    parser.add_argument("claim", choices=[*claims, "all"])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--runs", type=Path, help="default: runs/, else the committed archive of the profile")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--results", type=Path, help="where the report goes (default: runs/<experiment>/report/)")
    where.add_argument("--in-place", action="store_true", help="rewrite the committed report under results/")
    parser.add_argument("overrides", nargs="*", help="the Hydra overrides the runs were made with, if any")
    args = parser.parse_intermixed_args(argv)
    names = list(claims) if args.claim == "all" else [args.claim]
    for name in names:
        experiment = experiment_name(name, args.profile)
        runs = args.runs or find_runs(name, args.profile)
        if runs is None:
            print(missing(name, args.profile), file=sys.stderr)
            return 2
        results = Path("results") if args.in_place else args.results or Path("runs") / experiment / "report"
        jobs = [config.to_dict() for _, config in profile_jobs(claims[name], args.profile, args.overrides, CONF)]
        summary = write_report(claims[name], args.profile, runs, results, jobs, tuple(args.overrides))
        print(f"{name} ({args.profile}): {summary['verdict']} — {summary['reason']}")
        print(f"wrote {results_dir(results, name, args.profile)}/README.md (from {runs / experiment})")
        if not args.overrides or args.results or args.in_place:
            write_index(results)
    return 0


def find_runs(claim: str, profile: str) -> Path | None:
    """runs/ where it holds runs of the profile's sweep, else the committed archive beside its report, else None."""
    experiment = experiment_name(claim, profile)
    for root in (Path("runs"), results_dir(Path("results"), claim, profile) / "runs"):
        if any((root / experiment).glob("*/summary.json")):
            return root
    return None


def missing(claim: str, profile: str) -> str:
    """The error for a profile with no runs here and no archive: the command that makes them, and its time."""
    committed = read_json(results_dir(Path("results"), claim, profile) / "summary.json") or {}
    took = (
        f" (about {committed['wall_s'] / 60:.0f} min here)" if isinstance(committed.get("wall_s"), (int, float)) else ""
    )
    return (
        f"error: no runs of {claim}'s {profile} profile under runs/{experiment_name(claim, profile)} and no archive "
        f"under {results_dir(Path('results'), claim, profile)}/runs; make them with `normlab reproduce {claim} "
        f"--profile {profile}`{took}"
    )


if __name__ == "__main__":
    sys.exit(main())
