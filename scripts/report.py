"""Turn a claim's runs into results/<claim>/ (README.md with table, paper figure, criterion and verdict; PNG plots;
summary.json) and refresh the index results/README.md.

    python scripts/report.py bn_small_batch [--profile quick|cpu|full] [--runs runs] [--results results]
    python scripts/report.py all
"""

import argparse
import sys
from pathlib import Path

from normlab.claims import registry, write_index, write_report

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    claims = registry()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claim", choices=[*claims, "all"])
    parser.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    names = list(claims) if args.claim == "all" else [args.claim]
    for name in names:
        summary = write_report(claims[name], args.profile, args.runs, args.results)
        print(f"{name} ({args.profile}): {summary['verdict']} — {summary['reason']}")
    write_index(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
