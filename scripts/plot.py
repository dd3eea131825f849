"""Test accuracy (or any metric) vs step for a set of runs, one line per group, from each run's metrics.jsonl.

    python scripts/plot.py runs/bn_small_batch --group norm.name --out small_batch.png
    python scripts/plot.py runs/default --group batch_size --metric train_loss --filter norm.name=batch

Runs are grouped by a dotted config key (their summary.json's config); each line is the mean over the group.
"""

import argparse
import sys
from pathlib import Path

from normlab.claims.plots import curves
from normlab.runs import load_runs


def lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a runs/ or sweep directory")
    parser.add_argument("--group", default="norm.name", help="dotted config key to group runs by")
    parser.add_argument("--metric", default="test_acc", help="a metrics.jsonl key (test_acc, train_loss, ...)")
    parser.add_argument("--filter", action="append", default=[], help="KEY=VALUE on the config, repeatable")
    parser.add_argument("--out", type=Path, default=Path("plot.png"))
    args = parser.parse_args(argv)
    runs = load_runs(args.root)
    try:
        for f in args.filter:
            key, value = f.split("=", 1)
            runs = [r for r in runs if str(lookup(r.config, key)) == value]
        groups = {}
        for run in runs:
            groups.setdefault(f"{args.group}={lookup(run.config, args.group)}", []).append(run)
    except (KeyError, ValueError) as e:
        print(f"error: {e} is not a config key of these runs (e.g. norm.name, batch_size, lr)", file=sys.stderr)
        return 2
    if not groups:
        print(f"error: no finished runs under {args.root} match", file=sys.stderr)
        return 2
    if any(args.metric not in r.metrics[0] for rs in groups.values() for r in rs if r.metrics):
        print(f"error: metric {args.metric!r} is not in metrics.jsonl", file=sys.stderr)
        return 2
    label = args.metric.replace("_", " ")
    curves(dict(sorted(groups.items())), args.out, f"{label} by {args.group}", key=args.metric, ylabel=label)
    print(f"wrote {args.out} ({len(runs)} runs in {len(groups)} groups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
