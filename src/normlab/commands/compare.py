"""Which norm, at my batch size? Ranks the norms of any sweep by validation accuracy, with 95% intervals over
seeds, per value of every other swept key (batch size, lr, ...), beside their cost per step, and says how sure
the recommendation is (normlab.protocol: the best against the runner-up, paired by seed).

    normlab compare runs/my_sweep                        # grouped by every swept key but norm and seed
    normlab compare runs/bn_small_batch --by batch_size --out accuracy_vs_batch.png
    normlab compare runs/default --method optimizer.name  # rank something else than the norm
    normlab compare runs/my_sweep --tensorboard          # + the answer in the sweep's TensorBoard (IMAGES, TEXT)

Ranking and the recommendation read the validation split (the endpoint of each run: the value after a decaying
schedule, else the mean of its last 5 evaluations); test accuracy is shown beside, never ranked on. Accuracy
intervals are t intervals on the logit scale, mapped back, so they stay inside [0, 100]; the recommendation names
every arm the paired interval cannot separate from the best. Each row says how many images its runs trained on.
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


def accuracy_interval(values: list[float]) -> tuple[float, float, float]:
    """The mean accuracy (points) and a 95% interval that stays inside [0, 100]: the t interval of the seeds'
    logits, mapped back (a t interval on points runs past 100 near the ceiling)."""
    mean = sum(values) / len(values)
    p = [min(max(v / 100, 1e-4), 1 - 1e-4) for v in values]
    _, low, high = protocol.mean_interval([math.log(v / (1 - v)) for v in p])
    if not math.isfinite(low):
        return mean, low, high
    return mean, 100 / (1 + math.exp(-low)), 100 / (1 + math.exp(-high))


def images_seen(run) -> float:
    """The training images a run's optimizer steps went through (steps × batch size)."""
    steps = run.summary.get("steps")
    return steps * run.config["batch_size"] if isinstance(steps, (int, float)) else math.nan


def order(value) -> tuple:
    """Sort swept values as numbers where they are numbers (2, 8, 32, not "2", "32", "8")."""
    return (isinstance(value, str) or value is None, value if isinstance(value, (int, float)) else str(value))


def compare(runs, method: str, by: list[str]) -> tuple[str, dict]:
    """A markdown table per value of `by` and the recommendation line; the numbers for the plot."""
    groups: dict[tuple, dict[str, list]] = {}
    for run in runs:
        flat = flat_hparams(run.config)
        groups.setdefault(tuple(flat.get(k) for k in by), {}).setdefault(str(flat.get(method)), []).append(run)
    lines, numbers = [], {}
    seen: dict[tuple, float] = {}
    for where, arms in sorted(groups.items(), key=lambda kv: [order(v) for v in kv[0]]):
        title = ", ".join(f"{k}={v}" for k, v in zip(by, where)) or "all runs"
        ranked = []
        for name, rs in arms.items():
            val = accuracy_interval([r.endpoint("val_acc") for r in rs])
            test = accuracy_interval([r.endpoint("test_acc") for r in rs])
            ranked.append((name, rs, val, test))
        ranked.sort(key=lambda a: -a[2][0])
        numbers[where] = {name: val for name, _, val, _ in ranked}
        lines += [
            f"### {title}",
            "",
            f"| rank | {method} | val acc % [95% interval] | test acc % | ms/step | images seen | runs |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, (name, rs, val, test) in enumerate(ranked, 1):
            cost = sum(ms_per_step(r) for r in rs) / len(rs)
            images = sum(images_seen(r) for r in rs) / len(rs)
            seen[(*where, name)] = images
            lines.append(f"| {i} | {name} | {fmt(*val)} | {fmt(*test)} | {cost:.1f} | {images:,.0f} | {len(rs)} |")
        lines += ["", recommendation(method, ranked), ""]
    finite = [v for v in seen.values() if math.isfinite(v)]
    if finite and max(finite) > 1.01 * min(finite):
        lines.append(
            f"**Note:** the arms trained on different numbers of images ({min(finite):,.0f} to {max(finite):,.0f}): "
            "a fixed max_steps gives a small batch fewer images. To compare batch sizes at equal epochs, sweep with "
            "`epochs=N` instead of `max_steps`."
        )
    return "\n".join(lines), numbers


def recommendation(method: str, ranked) -> str:
    """The best against each other arm, paired by seed: the recommendation names the best and every arm whose
    interval against it includes 0 (not separable at these seeds); nothing is recommended from one seed per arm."""
    if len(ranked) == 1:
        return f"Only {method}={ranked[0][0]} ran here."
    best, best_runs = ranked[0][0], ranked[0][1]
    tests = []
    for name, rs, _, _ in ranked[1:]:
        a, b, is_paired = paired(best_runs, rs, lambda r: r.endpoint("val_acc"))
        if min(len(a), len(b)) < 2:
            lead = sum(a) / len(a) - sum(b) / len(b)
            return (
                f"**No recommendation** — {best} is ahead of {name} by {lead:+.2f} points at 1 seed: no interval, "
                "nothing tells this from seed noise; run 2 or more seeds (the protocol runs 5)."
            )
        tests.append((name, protocol.compare(f"{best} − {name}", a, b, 0.0, paired=is_paired), len(a)))

    def interval(name, t, n) -> str:
        return (
            f"{best} − {name} = {t.estimate:+.2f} points [{t.ci95[0]:+.2f}, {t.ci95[1]:+.2f}] ({t.method}, {n} seeds)"
        )

    tied = [(name, t, n) for name, t, n in tests if t.outcome != "holds"]
    if not tied:
        name, t, n = tests[0]
        return f"**Recommendation: {best}** — ahead of every other arm; of the runner-up: {interval(name, t, n)}."
    names = " or ".join([best, *(name for name, _, _ in tied)])
    return (
        f"**Recommendation: {names}** — not separable at these seeds: "
        + "; ".join(interval(*x) for x in tied)
        + "; run more seeds to tell them apart."
    )


def figure(numbers: dict, by: list[str], method: str):
    """Validation accuracy vs the first `by` key, one line per method value, with 95% intervals."""
    fig, ax = new_figure(figsize=(6, 4))
    xs = sorted({where[0] for where in numbers}, key=order)
    names = sorted({name for arms in numbers.values() for name in arms})
    for name in names:
        points = [(x, numbers[w][name]) for x in xs for w in numbers if w[0] == x and name in numbers[w]]
        if not points:
            continue
        mean = [m for _, (m, _, _) in points]
        err = [
            [m - lo if math.isfinite(lo) else 0 for _, (m, lo, _) in points],
            [hi - m if math.isfinite(hi) else 0 for _, (m, _, hi) in points],
        ]
        ax.errorbar([str(x) for x, _ in points], mean, yerr=err, marker="o", capsize=3, label=name)
    ax.set(xlabel=by[0], ylabel="validation accuracy % (95% interval)", title=f"{method} by {by[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def to_tensorboard(root: Path, table: str, numbers: dict, by: list[str], method: str, runs: int) -> Path:
    """The answer where the sweep's curves are: an events file in <root>/compare holding the table (TEXT) and the
    plot (IMAGES, where `by` names a key), at step = the number of runs compared, so that a compare re-run as more
    runs finish adds a step, never rewrites one."""
    from torch.utils.tensorboard import SummaryWriter

    folder = root / "compare"
    with SummaryWriter(log_dir=str(folder)) as writer:
        writer.add_text(f"compare/{method}", table.replace("\n", "  \n"), global_step=runs)
        if by:
            writer.add_figure(f"compare/{method} by {by[0]}", figure(numbers, by, method), global_step=runs)
    return folder


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("root", type=existing_dir, help="a runs/ or sweep directory")
    parser.add_argument("--method", default="norm.name", help="the config key whose values are ranked")
    parser.add_argument("--by", nargs="*", help="keys to compare within (default: every other swept key)")
    parser.add_argument("--out", type=output_file, help="write the plot here (accuracy vs the first --by key)")
    parser.add_argument(
        "--tensorboard", action="store_true", help="also write the table and plot into <root>/compare's TensorBoard"
    )
    args = parser.parse_args(argv)
    runs, copies = distinct([r for r in load_runs(args.root) if r.status in ("completed", "diverged")])
    unreadable = [r for r in runs if not math.isfinite(r.endpoint("val_acc"))]
    if unreadable:  # ranked first as "+nan points" before
        names = ", ".join(r.path.name for r in unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
        print(f"note: {len(unreadable)} run(s) without a finite validation accuracy were left out: {names}")
        runs = [r for r in runs if r not in unreadable]
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
        print(
            f"error: the runs also differ in {', '.join(unnamed)}, which --by does not name; add them "
            f"(--by {' '.join([*by, *unnamed])}) or compare a folder of one sweep",
            file=sys.stderr,
        )
        return 2
    table, numbers = compare(runs, args.method, by)
    print(table)
    if args.out and by:
        print(f"plot: {args.out.parent / save(figure(numbers, by, args.method), args.out)}")
    if args.tensorboard:
        folder = to_tensorboard(args.root, table, numbers, by, args.method, len(runs))
        print(f"tensorboard: tensorboard --logdir {folder.parent} (the answer under IMAGES and TEXT, run 'compare')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
