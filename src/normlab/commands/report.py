"""Turn a claim's runs into results/<claim>/ (README.md with table, paper figure, criterion and verdict; PNG plots;
summary.json) and refresh the index results/README.md.

    normlab report bn_small_batch [--profile quick|cpu|full] [--runs runs] [--results results]
    normlab report all
    normlab report bn_convergence max_steps=1000    # runs made with overrides: a report under runs/

A report counts exactly the runs of its profile's sweep (every job composed as `run.py -m` would, overrides
included); other runs under runs/<experiment>/ are left out and counted. A report of overridden runs never
rewrites the committed results: it goes to runs/<experiment>/report/ unless --results is given.
"""

import sys
from pathlib import Path

from normlab.argtypes import command_parser
from normlab.claims import PROFILES, experiment_name, profile_jobs, registry, write_index, write_report
from normlab.cli import CONF


def main(argv=None) -> int:
    claims = registry()
    parser = command_parser(__doc__)
    parser.add_argument("claim", choices=[*claims, "all"])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="default: results/ (runs/<experiment>/report/ for runs made with overrides)",
    )
    parser.add_argument("overrides", nargs="*", help="the Hydra overrides the runs were made with, if any")
    args = parser.parse_intermixed_args(argv)
    names = list(claims) if args.claim == "all" else [args.claim]
    for name in names:
        results = args.results or (
            args.runs / experiment_name(name, args.profile) / "report" if args.overrides else Path("results")
        )
        jobs = [config.to_dict() for _, config in profile_jobs(claims[name], args.profile, args.overrides, CONF)]
        summary = write_report(claims[name], args.profile, args.runs, results, jobs, tuple(args.overrides))
        print(f"{name} ({args.profile}): {summary['verdict']} — {summary['reason']}")
        if not args.overrides or args.results:
            write_index(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
