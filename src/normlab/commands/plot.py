"""Validation accuracy (or any metric) vs step for a set of runs, one line per group, from each run's
metrics.jsonl.

    normlab plot runs/bn_small_batch --out small_batch.png      # a line per arm (every swept key)
    normlab plot runs/bn_small_batch --group norm.name,batch_size
    normlab plot runs/default --group batch_size --metric train_loss --filter norm.name=batch

Runs are grouped by dotted config keys (their summary.json's config; by default every key the runs differ in
but the seed, so that batch 2 is never averaged with batch 32); each line is the mean over the group's seeds,
with markers, and a group with a single evaluation is named (it is a point, not a curve). The test set is read
at every evaluation only where eval_every is set (a chosen cadence reads it once, at the end).
"""

import sys
from pathlib import Path

from normlab.argtypes import command_parser, existing_dir, key_value, output_file
from normlab.claims.plots import curves
from normlab.runs import load_runs, swept_keys


def lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("root", type=existing_dir, help="a runs/ or sweep directory")
    parser.add_argument(
        "--group",
        default=None,
        help="dotted config keys to group by, comma-separated (default: every key the runs differ in but the seed)",
    )
    parser.add_argument("--metric", default="val_acc", help="a metrics.jsonl key (val_acc, train_loss, ...)")
    parser.add_argument(
        "--filter", action="append", default=[], type=key_value, help="KEY=VALUE on the config, repeatable"
    )
    parser.add_argument("--out", type=output_file, default=Path("plot.png"))
    args = parser.parse_args(argv)
    runs = load_runs(args.root)
    try:
        for key, value in args.filter:
            runs = [r for r in runs if str(lookup(r.config, key)) == value]
        keys = args.group.split(",") if args.group else swept_keys([r.config for r in runs]) or ["norm.name"]
        groups: dict[str, list] = {}
        for run in runs:
            values = (lookup(run.config, k) for k in keys)  # floats to 6 digits: lr=0.0333333, not 0.03333333333333333
            label = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(keys, values))
            groups.setdefault(label, []).append(run)
    except KeyError as e:
        print(f"error: {e} is not a config key of these runs (e.g. norm.name, batch_size, lr)", file=sys.stderr)
        return 2
    if not groups:
        print(f"error: no finished runs under {args.root} match", file=sys.stderr)
        return 2
    evaluations = {name: [len(r.curve(args.metric)[0]) for r in rs if r.metrics] for name, rs in groups.items()}
    if not all(all(counts) for counts in evaluations.values()):
        print(f"error: metric {args.metric!r} is not in metrics.jsonl", file=sys.stderr)
        return 2
    label = args.metric.replace("_", " ")
    curves(dict(sorted(groups.items())), args.out, f"{label} by {', '.join(keys)}", key=args.metric, ylabel=label)
    print(f"wrote {args.out} ({len(runs)} runs in {len(groups)} groups by {', '.join(keys)})")
    for name, counts in sorted(evaluations.items()):
        if max(counts, default=0) <= 1:
            print(f"note: {name} has one evaluation: a point, not a curve (a lower eval_every draws one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
