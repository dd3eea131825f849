"""Santurkar et al. 2018 (Fig. 2, Fig. 4): BN makes the loss landscape smoother and the gradients more predictive,
and "noisy" BN, whose layer inputs move every step, still trains about as well as BN: the stability of the inputs
(the internal-covariate-shift story, bn_convergence's Fig. 1(b, c) statement) is not what helps.

The landscape is measured along the training path (`landscape=true`, normlab.landscape): at each evaluation, steps
of 0.25-4 lr along the gradient of the step's batch. Each run is summarized by the geometric mean of each
measurement over the evaluations at which every arm of its seed is learning (validation accuracy at least LEARNS:
a net collapsed to chance has the flat landscape of a dead net), and arms are compared as log ratios (none / BN),
paired by seed: a margin means the same whatever the loss's scale."""

import math

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import curves, new_figure, save
from normlab.protocol import Statement
from normlab.runs import arm_test, common_steps, group, mean, mean_std

SOURCE = "Santurkar et al. 2018"
NORMS = ("none", "batch", "batch_noisy")
SHORT = {"none": "no norm", "batch": "BN", "batch_noisy": "noisy BN"}
MEASURES = {  # landscape key -> Fig. 4's panel
    "loss_range": "Fig. 4(a) loss variation along the gradient",
    "grad_change": "Fig. 4(b) gradient change along the gradient (predictiveness)",
    "beta": "Fig. 4(c) effective β-smoothness",
}
SMOOTHER = 1.25  # "significantly smoother": no norm's measure above this times BN's (Fig. 4: several-fold)
NOISY_WITHIN = (
    1.0  # points: noisy BN's mean validation accuracy at most this far below BN's (Fig. 2: "largely unchanged")
)
DIVERGED = math.log(1e6)  # a diverged run's log level: its loss ran away along its path, rougher than any measured
LEARNS = 90.0  # points: a net learns at an evaluation where its validation accuracy is at least this
COMMON = 5  # evaluations at which every arm of a seed learns, at the fewest: fewer, and the landscape is not compared

SMOOTH = Statement(
    "a_smoother_landscape",
    "[BatchNorm] makes the optimization landscape significantly smoother.",
    f"{SOURCE}, abstract; Fig. 4(a)",
    f"the loss's range along the gradient, geometric mean over the evaluations at which every arm learns: log(no "
    f"norm / BN) > log {SMOOTHER:g}",
)
PREDICTIVE = Statement(
    "b_predictive_gradients",
    "This smoothness induces a more predictive and stable behavior of the gradients, allowing for faster training.",
    f"{SOURCE}, abstract; Fig. 4(b, c)",
    f"the gradient's change along the gradient and the effective β-smoothness, geometric means over the "
    f"evaluations at which every arm learns: log(no norm / BN) > log {SMOOTHER:g}, both",
)
NOT_STABILITY = Statement(
    "c_noisy_bn_trains",
    "Such distributional stability of layer inputs has little to do with the success of BatchNorm.",
    f"{SOURCE}, abstract; Fig. 2",
    f"noisy BN (its layer inputs move every step) − BN, mean validation accuracy over the run > −{NOISY_WITHIN:g} "
    "point (non-inferiority), and noisy BN − no norm > 0",
)


def learning(run) -> set:
    """The evaluation steps at which the run is learning: its validation accuracy at least LEARNS."""
    return {
        r["step"] for r in run.metrics if isinstance(r.get("val_acc"), (int, float)) and 100 * r["val_acc"] >= LEARNS
    }


def level(run, key: str, steps=None) -> float:
    """log of the run's geometric mean of a landscape measurement over its evaluations at `steps` (all by default);
    DIVERGED for a run that diverged; NaN where it measured none (a run made without `landscape=true`)."""
    if run.status != "completed":
        return DIVERGED
    values = [
        r["landscape"][key]
        for r in run.metrics
        if isinstance(r.get("landscape"), dict) and (steps is None or r["step"] in steps)
    ]
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return mean(math.log(max(v, 1e-12)) for v in values) if values else math.nan


def analyze(runs, out):
    by_norm = group(runs, lambda r: r.config["norm"]["name"])
    plain, bn, noisy = (by_norm.get(n, []) for n in NORMS)
    grid = common_steps(runs)
    both: dict[int, set] = {}  # per seed: the evaluations at which every arm's run of that seed learns (a diverged
    for run in runs:  # run's landscape is DIVERGED wherever it stopped)
        if run.status == "completed":
            both[run.seed] = both[run.seed] & learning(run) if run.seed in both else learning(run)
    both.update({r.seed: set() for r in runs if r.seed not in both})

    def smoother(key, favoured=bn, name="BN"):
        return arm_test(
            f"{MEASURES[key]}, while every arm learns: log(no norm / {name}) (> log {SMOOTHER:g} = "
            f"{math.log(SMOOTHER):.3f})",
            plain,
            favoured,
            lambda r: level(r, key, both[r.seed]),
            math.log(SMOOTHER),
        )

    def curve(run):
        return run.curve_mean("val_acc", grid)

    tests = [
        smoother("loss_range"),
        smoother("grad_change"),
        smoother("beta"),
        arm_test(
            f"noisy BN − BN, mean validation accuracy over the run (points; > −{NOISY_WITHIN:g})",
            noisy,
            bn,
            curve,
            -NOISY_WITHIN,
        ),
        arm_test("noisy BN − no norm, mean validation accuracy over the run (points)", noisy, plain, curve),
        # the reason, beside: the smoothness survives the noise (Santurkar et al.: smoothness, not stability)
        smoother("beta", noisy, "noisy BN").as_secondary(),
        # the overview's "it bounds the magnitude of the gradients much more tightly"
        arm_test(
            "‖g‖: log(no norm / BN) (> 0)", plain, bn, lambda r: level(r, "grad_norm", both[r.seed]), 0.0
        ).as_secondary(),
    ]
    preconditions = [
        protocol.precondition(
            "the net without a norm learns: its best validation accuracy, mean over seeds (points)",
            100 * mean(max(r.curve("val_acc")[1], default=0.0) for r in plain) if plain else float("nan"),
            at_least=LEARNS,
            need="an lr at which the plain net trains (Fig. 4 compares both nets at one lr along their own paths)",
        ),
        protocol.precondition(
            "evaluations at which every arm learns, at the fewest over seeds",
            min((len(s) for s in both.values()), default=0),
            at_least=COMMON,
            need="an lr and length at which every net learns for a while: a net at chance has a flat landscape",
        ),
    ]
    numbers, rows = {}, []
    for norm, rs in zip(NORMS, (plain, bn, noisy), strict=True):
        numbers[norm] = {
            **{
                key: math.exp(mean(level(r, key, both[r.seed]) for r in rs)) if rs else None
                for key in (*MEASURES, "grad_norm")
            },
            "curve_mean": mean(curve(r) for r in rs),
            "final_acc": mean(r.endpoint("test_acc") for r in rs),
            "seeds": len(rs),
        }
        cells = " | ".join(
            mean_std([math.exp(level(r, k, both[r.seed])) for r in rs], digits=3) for k in (*MEASURES, "grad_norm")
        )
        rows.append(
            f"| {SHORT[norm]} | {cells} | {mean_std([curve(r) for r in rs])} | "
            f"{mean_std([r.endpoint('test_acc') for r in rs])} | {len(rs)} |"
        )
    table = (
        "| arm | loss range along g | gradient change | effective β | ‖g‖ | mean val acc over the run % | "
        "final test acc % | seeds |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nLandscape columns: each run's geometric mean over the evaluations at which every arm of its seed "
        f"learns (validation accuracy at least {LEARNS:g}%; "
        + ", ".join(f"seed {s}: {len(steps)}" for s, steps in sorted(both.items()))
        + " evaluations), then mean ± std over seeds.\n\n"
        + tests_table(tests, [])
    )
    reason = "; ".join(f"{t.name.split(':')[0]} {t.estimate:+.2f} ({t.outcome})" for t in tests[:5]) + "."
    failed = [p for p in preconditions if not p.holds]
    if failed:
        reason = f"not testable here: {failed[0].name} is {failed[0].value:.1f}, needs {failed[0].required}. " + reason
    plots = [
        curves(
            {SHORT[n]: rs for n, rs in zip(NORMS, (plain, bn, noisy), strict=True)},
            out / "fig2_validation_accuracy.png",
            "Fig. 2: validation accuracy, BN with and without step-varying noise (mean over seeds)",
            key="val_acc",
            ylabel="validation accuracy",
        ),
        landscape_figure(by_norm, out / "fig4_landscape.png"),
    ]
    findings = [
        protocol.decide(SMOOTH, tests[:1]),
        protocol.decide(PREDICTIVE, tests[1:3]),
        protocol.decide(NOT_STABILITY, tests[3:5]),
    ]
    return Analysis(table, numbers, tests, reason, plots, preconditions=preconditions, findings=findings)


def landscape_figure(by_norm, path) -> str:
    """Fig. 4 redrawn: each measurement over training, per arm, the geometric mean over seeds at each evaluation."""
    fig, axes = new_figure(1, 3, figsize=(14, 3.8))
    for ax, (key, title) in zip(axes, MEASURES.items(), strict=True):
        for norm in NORMS:
            rs = by_norm.get(norm, [])
            steps = sorted(
                set.intersection(*[{r["step"] for r in run.metrics if "landscape" in r} for run in rs]) or []
            )
            if not rs or not steps:
                continue
            ys = [
                math.exp(
                    mean(
                        math.log(max(m["landscape"][key], 1e-12))
                        for run in rs
                        for m in run.metrics
                        if m["step"] == s and "landscape" in m
                    )
                )
                for s in steps
            ]
            ax.plot(steps, ys, label=SHORT[norm])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


CLAIM = Claim(
    name="bn_smoothness",
    title="BN smooths the loss landscape; noisy BN trains as well (Santurkar et al. 2018, Figs. 2, 4)",
    paper=(
        'Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?" '
        "(https://arxiv.org/abs/1805.11604). Fig. 4: VGG on CIFAR-10 with and without BN at one learning rate; at "
        "each step of training, the loss (a) and the ℓ2 change of the gradient (b) when moving along the gradient "
        'by a range of step sizes, and (c) the "effective β-smoothness", the largest change of the gradient over '
        "the distance moved: all much smaller with BN. Fig. 2: BN followed by noise with a non-zero mean and "
        'non-unit variance that changes every step ("noisy BN") trains about as well as BN and better than the '
        "net without BN, although its layers' input distributions are less stable than the plain net's."
    ),
    setup=(
        "`mlp` with relu (3×100 units, the norm before each relu) on MNIST (55k training images, 5k held out for "
        "validation), batch 60, SGD lr 0.1 with momentum 0.9 for every arm (the plain net learns there: a pilot "
        "at seed 100, not reported), `norm=none`, `batch` and `batch_noisy`, 5 seeds; quick 3,000 steps, cpu "
        "10,000 steps (the reference), full: the paper's setting, `cnn` (a small VGG) on CIFAR-10 (a GPU). "
        "`landscape=true` measures at every evaluation, on the batch of the step just taken and in training mode: "
        "steps of 0.25, 0.5, 1, 2 and 4 × lr along −g (the paper states no step sizes). Noisy BN: each channel's "
        "output y × s + m with s ~ U(1, 2), m ~ U(−1, 1) drawn every step (norms/batch.py; the paper's noise "
        "parameters are not in its text). Differences: an MLP on MNIST, not VGG on CIFAR-10; our step sizes and "
        "noise; the paper plots the landscape per step and draws no interval, we summarize each run and test over "
        "seeds. At lr 0.1 the plain net collapses in the cpu profile: at seeds 0-4 (the first reference, judged over "
        "whole runs, commit 85d949e: not reproduced) its training loss rose to ln 10 (uniform predictions, chance "
        "accuracy) between steps 5,000 and 6,800 in every seed, after which its landscape was flat (effective β "
        "about 0.1, against 3-7 before): a dead net's gradient hardly changes along itself. The criterion since "
        "compares the landscapes only where every arm learns, and decides on fresh seeds 5-9."
    ),
    criterion=(
        "Three statements, tests paired by seed. The landscape of a run is the geometric mean of each measurement "
        f"over the evaluations at which every arm of its seed learns (validation accuracy at least {LEARNS:g}%: a net "
        "collapsed to chance has the flat landscape of a dead net). (a) The loss's range along the gradient: "
        f"log(no norm / BN) above log {SMOOTHER:g}. (b) The gradient's change along the gradient and the effective "
        f"β-smoothness: both log ratios above log {SMOOTHER:g}. (c) Noisy BN's mean validation accuracy over the run "
        f"at most {NOISY_WITHIN:g} point below BN's (non-inferiority) and above no norm's. Secondary: noisy BN's "
        "β-smoothness below no norm's (the smoothness survives the noise, the paper's reason), and ‖g‖ smaller "
        f"with BN. Preconditions: the plain net learns (best validation accuracy at least {LEARNS:g}%), and every "
        f"seed has at least {COMMON} evaluations at which every arm learns."
    ),
    analyze=analyze,
    reference="cpu",
    reference_why="10,000 steps (quick: 3,000) at 5 seeds, the landscape measured every 200 steps",
)
