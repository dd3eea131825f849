"""BN paper Sec. 4.2, Fig. 3: BN allows 5-30x higher learning rates, and trains sigmoid nets that fail without it."""

from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import curves
from normlab.runs import arm_test, common_steps, group, mean, mean_std

BASE_LR = 0.01
MARGIN = 0.0  # points


def label(norm, mult, act):
    return f"{'BN' if norm == 'batch' else 'no norm'} x{mult} {act}"


def analyze(runs, out):
    def key(r):
        return r.config["norm"]["name"], round(r.config["lr"] / BASE_LR), r.config["model"]["activation"]

    groups = group(runs, key)
    grid = common_steps(runs)

    def arm(norm, mult, act):
        return groups.get((norm, mult, act), [])

    def curve(r):
        return r.curve_mean("val_acc", grid)

    base = arm("none", 1, "relu")
    tests = [
        arm_test("BN x5 − no norm x1 (relu), mean validation accuracy over the run (points)", arm("batch", 5, "relu"),
                 base, curve, MARGIN),
        arm_test("BN x30 − no norm x1 (relu), mean validation accuracy over the run (points)",
                 arm("batch", 30, "relu"), base, curve, MARGIN),
        arm_test("BN x5 − no norm x1 (sigmoid), final test accuracy (points)", arm("batch", 5, "sigmoid"),
                 arm("none", 1, "sigmoid"), lambda r: r.endpoint("test_acc"), MARGIN),
    ]  # fmt: skip
    reported = [
        arm_test(f"no norm x{mult} − x1 (relu), final test accuracy (points; not in the paper)",
                 arm("none", mult, "relu"), base, lambda r: r.endpoint("test_acc"))
        for mult in (5, 30)
    ]  # fmt: skip
    rows, numbers = [], {}
    for (norm, mult, act), rs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        diverged = sum(r.status == "diverged" for r in rs)
        numbers[label(norm, mult, act)] = {
            "lr": BASE_LR * mult,
            "curve_mean": mean(curve(r) for r in rs),
            "final_acc": mean(r.endpoint("test_acc") for r in rs),
            "diverged": diverged,
        }
        rows.append(
            f"| {label(norm, mult, act)} | {BASE_LR * mult:g} | {mean_std([curve(r) for r in rs])} | "
            f"{mean_std([r.endpoint('test_acc') for r in rs])} | {diverged}/{len(rs)} |"
        )
    table = (
        "| model | lr | mean val acc over the run % | final test acc % | diverged |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nA diverged run counts as chance (10%).\n\n"
        + tests_table(tests, reported)
    )
    reason = "; ".join(f"{t.name.split(',')[0]} {t.estimate:+.2f} ({t.outcome})" for t in tests) + "."
    plots = [
        curves(
            {label(*k): v for k, v in sorted(groups.items()) if k[2] == act},
            out / f"{act}_curves.png",
            f"inception_lite, {act}: validation accuracy",
            key="val_acc",
            ylabel="validation accuracy",
        )
        for act in ("relu", "sigmoid")
    ]
    return Analysis(table, numbers, tests, reason, plots, reported=reported)


CLAIM = Claim(
    name="bn_learning_rate",
    title="BN allows much higher learning rates (BN paper, Sec. 4.2, Fig. 3)",
    paper=(
        "Ioffe & Szegedy 2015, Fig. 3 (Inception on ImageNet, batch 32, single-crop top-1): steps to reach 72.2% — "
        "Inception (lr 0.0015) 31.0M, BN-Baseline 13.3M, BN-x5 2.1M, BN-x30 2.7M (max 74.8%); BN-x5-Sigmoid never "
        'reaches it (max 69.8%); Inception with sigmoid and no BN "never achieves better than 1/1000".'
    ),
    setup=(
        "`inception_lite` (width 8 quick, 32 full) on CIFAR-10 with crop+flip, batch 32, SGD momentum 0.9, base lr "
        "0.01 ×1, ×5, ×30, with and without BN, relu and sigmoid activations (a full grid: 12 arms), 500 steps (quick) "
        "or 3,000 (cpu, the reference), 5 seeds. The paper's BN-x5/x30 also change weight decay, dropout and the lr "
        "schedule; we change only the learning rate. A CIFAR-10 net of 70k parameters for minutes, not Inception for "
        "days."
    ),
    criterion=(
        "The parts the paper measured, three tests paired by seed, margin 0: BN at 5x and at 30x the base lr trains "
        "faster than no norm at the base lr (a higher mean validation accuracy over the run: the paper's steps to "
        '72.2%), and BN at 5x with sigmoids ends above the sigmoid net without BN (which "never achieves better '
        'than 1/1000"). No norm at 5x and 30x was not run in the paper: reported beside, not tested.'
    ),
    analyze=analyze,
    reference_why=(
        "the cpu profile (3,000 steps, 6x the quick profile's), 5 seeds; not tuned, because the claim varies the lr "
        "itself: every arm (BN or none, relu or sigmoid) runs the same grid, the base lr × 1, 5, 30 (the same "
        "budget), and the tests compare arms across it. Far from converged (a constant lr, as the paper's Fig. 3 "
        "measures the speed of training, not its end)"
    ),
    reference="cpu",
)
