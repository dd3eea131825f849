"""Which norm, at my batch size? Ranks the norms of any sweep by validation accuracy, with 95% intervals over
seeds, per value of every other swept key (batch size, lr, ...), beside their cost per step, and says how sure
the recommendation is (normlab.protocol: the best against the runner-up, paired by seed).

    normlab compare runs/my_sweep                        # grouped by every swept key but norm and seed
    normlab compare runs/bn_small_batch --by batch_size --out accuracy_vs_batch.png
    normlab compare runs/default --method optimizer.name  # rank something else than the norm

Ranking and the recommendation read the validation split (the endpoint of each run: the value after a decaying
schedule, else the mean of its last 5 evaluations); test accuracy is shown beside, never ranked on.
"""

import math
import sys
from pathlib import Path

from normlab import protocol
from normlab.argtypes import command_parser, existing_dir, output_file
from normlab.claims.plots import new_figure, save
from normlab.runlog import flat_hparams
from normlab.runs import distinct, load_runs, paired, swept_keys


def ms_per_step(run) -> float:
    rate = run.summary.get("samples_per_s")
    return 1000 * run.config["batch_size"] / rate if rate else math.nan


def fmt(mean, low, high) -> str:
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{mean:.2f} (1 seed)"


def compare(runs, method: str, by: list[str]) -> tuple[str, dict]:
    """A markdown table per value of `by` and the recommendation line; the numbers for the plot."""
    groups: dict[tuple, dict[str, list]] = {}
    for run in runs:
        flat = flat_hparams(run.config)
        groups.setdefault(tuple(flat.get(k) for k in by), {}).setdefault(str(flat.get(method)), []).append(run)
    lines, numbers = [], {}
    for where, arms in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
        title = ", ".join(f"{k}={v}" for k, v in zip(by, where)) or "all runs"
        ranked = []
        for name, rs in arms.items():
            val = protocol.mean_interval([r.endpoint("val_acc") for r in rs])
            test = protocol.mean_interval([r.endpoint("test_acc") for r in rs])
            ranked.append((name, rs, val, test))
        ranked.sort(key=lambda a: -a[2][0])
        numbers[where] = {name: val for name, _, val, _ in ranked}
        lines += [f"### {title}", "", f"| rank | {method} | val acc % [95% interval] | test acc % | ms/step | runs |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for i, (name, rs, val, test) in enumerate(ranked, 1):
            cost = sum(ms_per_step(r) for r in rs) / len(rs)
            lines.append(f"| {i} | {name} | {fmt(*val)} | {fmt(*test)} | {cost:.1f} | {len(rs)} |")
        lines += ["", recommendation(method, ranked), ""]
    return "\n".join(lines), numbers


def recommendation(method: str, ranked) -> str:
    """The best against the runner-up: sure if the paired interval of their difference excludes 0; nothing is
    recommended as sure from one seed per arm (no interval)."""
    if len(ranked) == 1:
        return f"Only {method}={ranked[0][0]} ran here."
    (best, best_runs, _, _), (second, second_runs, _, _) = ranked[0], ranked[1]
    a, b, is_paired = paired(best_runs, second_runs, lambda r: r.endpoint("val_acc"))
    if min(len(a), len(b)) < 2:
        lead = sum(a) / len(a) - sum(b) / len(b)
        return (f"**No recommendation** — {best} is ahead of {second} by {lead:+.2f} points at 1 seed: no interval, "
                "nothing tells this from seed noise; run 2 or more seeds (the protocol runs 5).")  # fmt: skip
    t = protocol.compare(f"{best} − {second}", a, b, 0.0, paired=is_paired)
    interval = f"{t.estimate:+.2f} points [{t.ci95[0]:+.2f}, {t.ci95[1]:+.2f}] ({t.method}, {len(a)} seeds)"
    if t.outcome == "holds":
        return f"**Recommendation: {best}** — ahead of {second} by {interval}: the interval excludes 0."
    return (f"**Recommendation: {best} or {second}** — not separable at these seeds: {best} − {second} = {interval}; "
            "run more seeds to tell them apart.")  # fmt: skip


def plot(numbers: dict, by: list[str], method: str, out: Path) -> str:
    """Validation accuracy vs the first `by` key, one line per method value, with 95% intervals."""
    fig, ax = new_figure(figsize=(6, 4))
    xs = sorted({where[0] for where in numbers}, key=lambda v: (isinstance(v, str), v))
    names = sorted({name for arms in numbers.values() for name in arms})
    for name in names:
        points = [(x, numbers[w][name]) for x in xs for w in numbers if w[0] == x and name in numbers[w]]
        if not points:
            continue
        mean = [m for _, (m, _, _) in points]
        err = [[m - lo if math.isfinite(lo) else 0 for _, (m, lo, _) in points],
               [hi - m if math.isfinite(hi) else 0 for _, (m, _, hi) in points]]  # fmt: skip
        ax.errorbar([str(x) for x, _ in points], mean, yerr=err, marker="o", capsize=3, label=name)
    ax.set(xlabel=by[0], ylabel="validation accuracy % (95% interval)", title=f"{method} by {by[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out)


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("root", type=existing_dir, help="a runs/ or sweep directory")
    parser.add_argument("--method", default="norm.name", help="the config key whose values are ranked")
    parser.add_argument("--by", nargs="*", help="keys to compare within (default: every other swept key)")
    parser.add_argument("--out", type=output_file, help="write the plot here (accuracy vs the first --by key)")
    args = parser.parse_args(argv)
    runs, copies = distinct([r for r in load_runs(args.root) if r.status in ("completed", "diverged")])
    if not runs:
        print(f"error: no finished runs under {args.root}", file=sys.stderr)
        return 2
    if copies:
        print(f"note: {copies} run(s) are copies of another run (the same config and seed): each counted once")
    swept = swept_keys([r.config for r in runs])
    by = args.by if args.by is not None else [k for k in swept if k != args.method]
    unknown = [k for k in [args.method, *by] if k not in flat_hparams(runs[0].config)]
    if unknown:
        print(f"error: {unknown[0]} is not a config key of these runs; swept here: {swept}", file=sys.stderr)
        return 2
    unnamed = [k for k in swept if k not in (args.method, *by)]
    if unnamed:  # runs that differ in them would be pooled into one arm, as if they were seeds of one run
        print(f"error: the runs also differ in {', '.join(unnamed)}, which --by does not name; add them "
              f"(--by {' '.join([*by, *unnamed])}) or compare a folder of one sweep", file=sys.stderr)  # fmt: skip
        return 2
    table, numbers = compare(runs, args.method, by)
    print(table)
    if args.out and by:
        print(f"plot: {args.out.parent / plot(numbers, by, args.method, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
