"""BN paper Sec. 3.4: BN regularizes, because a training example's output depends on its batch-mates; the overview
normlab is built from adds "only slightly". The generalization gap (the training images' accuracy in eval mode
minus the test accuracy, `eval_train`) with and without BN: BN's smaller (a), by less than SLIGHT points (b), and by
more at a smaller batch, whose statistics are noisier, net of what the batch size does to the plain net (c)."""

import math

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import curves
from normlab.protocol import Statement
from normlab.runs import arm_test, group, mean, mean_std, seed_differences

LARGE, SMALL = 64, 8  # batch sizes, at equal epochs (lr scaled linearly: lr_batch_size 64)
SLIGHT = 2.0  # points: "only slightly": BN narrows the gap by less than this
OVERFITS = 1.0  # points: the plain net's gap at batch 64 at least this, or there is nothing to regularize
LEARNS = 50.0  # %: every run's training-image accuracy at each of its last evaluations at least this (no collapse)
SOURCE = "Ioffe & Szegedy 2015, Sec. 3.4"

HELPS = Statement(
    "a_narrows_the_gap",
    "In our experiments, we found this effect to be advantageous to the generalization of the network.",
    SOURCE,
    f"generalization gap (training images in eval mode − test, accuracy points) at batch {LARGE}: no norm − BN > 0",
)
SLIGHTLY = Statement(
    "b_only_slightly",
    "An unintended benefit of normalization is that it helps regularization (only slightly, not significantly).",
    "the overview normlab is built from; BN paper Sec. 3.4, 4.2.1 (dropout reduced, not replaced)",
    f"at batch {LARGE}: BN's gap − no norm's > −{SLIGHT:g} points (BN narrows it by less than {SLIGHT:g})",
)
BATCH_NOISE = Statement(
    "c_from_batch_noise",
    "A training example is seen in conjunction with other examples in the mini-batch, and the training network no "
    "longer producing deterministic values for a given training example.",
    SOURCE,
    f"how much BN narrows the gap (no norm − BN) at batch {SMALL} minus at batch {LARGE}, paired by seed: > 0 "
    "(noisier batch statistics regularize more; the plain net at both batches takes out what the batch size does "
    "without BN; Luo et al. 2019 derive the strength falling with the batch size)",
)


def gap(run) -> float:
    """The run's generalization gap in points: its training images' accuracy in eval mode minus its test accuracy,
    both endpoints (the mean of the last 5 evaluations). A diverged run has none: NaN, which leaves its tests
    without an interval (unclear), never a gap of 0 in either arm's favour."""
    if run.status != "completed":
        return math.nan
    return run.endpoint("trainset_acc") - run.endpoint("test_acc")


def analyze(runs, out):
    groups = group(runs, lambda r: (r.config["norm"]["name"], r.config["batch_size"]))

    def arm(norm, batch):
        return groups.get((norm, batch), [])

    def narrowing(batch) -> dict[int, float]:  # per seed: no norm's gap − BN's
        return seed_differences(arm("none", batch), arm("batch", batch), gap)

    small, large = narrowing(SMALL), narrowing(LARGE)
    seeds = sorted(small.keys() & large.keys())
    tests = [
        arm_test(f"gap at batch {LARGE}: no norm − BN (points)", arm("none", LARGE), arm("batch", LARGE), gap),
        arm_test(
            f"gap at batch {LARGE}: BN − no norm (points; > −{SLIGHT:g}: slightly)",
            arm("batch", LARGE),
            arm("none", LARGE),
            gap,
            -SLIGHT,
        ),
        protocol.compare(
            f"gap narrowed by BN (no norm − BN) at batch {SMALL} − at batch {LARGE} (points)",
            [small[s] for s in seeds],
            [large[s] for s in seeds],
        ),
        arm_test(
            f"test accuracy at batch {LARGE}: BN − no norm (points)",
            arm("batch", LARGE),
            arm("none", LARGE),
            lambda r: r.endpoint("test_acc"),
        ).as_secondary(),
    ]
    plain_gap = [gap(r) for r in arm("none", LARGE)]
    lowest_end = min((min(r.curve("trainset_acc")[1][-5:], default=math.nan) for r in runs), default=math.nan)
    preconditions = [
        protocol.precondition(
            f"the net without a norm overfits: its gap at batch {LARGE}, mean over seeds (points)",
            mean(plain_gap) if plain_gap else float("nan"),
            at_least=OVERFITS,
            need="fewer training images or more epochs: a net that does not overfit has nothing to regularize",
        ),
        protocol.precondition(
            "no run collapsed: the lowest accuracy on the training images (eval mode) at any of a run's last 5 "
            "evaluations, over every run (%)",
            100 * lowest_end,
            at_least=LEARNS,
            need="a lower lr: a run that collapsed to chance has no gap to measure (a gap of about 0 at 10%)",
        ),
    ]
    numbers, rows = {}, []
    for (norm, batch), rs in sorted(groups.items()):
        numbers[f"{norm}@{batch}"] = {
            "gap": mean(gap(r) for r in rs),
            "trainset_acc": mean(r.endpoint("trainset_acc") for r in rs),
            "test_acc": mean(r.endpoint("test_acc") for r in rs),
            "seeds": len(rs),
        }
        rows.append(
            f"| {norm} | {batch} | {mean_std([r.endpoint('trainset_acc') for r in rs])} | "
            f"{mean_std([r.endpoint('test_acc') for r in rs])} | {mean_std([gap(r) for r in rs])} | {len(rs)} |"
        )
    table = (
        "| norm | batch | training images, eval mode, acc % | test acc % | gap (points) | seeds |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + tests_table(tests, [])
    )
    reason = "; ".join(f"{t.name.split(' (')[0]} {t.estimate:+.2f} ({t.outcome})" for t in tests[:3]) + "."
    if not preconditions[0].holds:
        reason = f"not testable here: the plain net's gap is {preconditions[0].value:.2f} points. " + reason
    elif not preconditions[1].holds:
        reason = f"not testable here: a run collapsed ({preconditions[1].value:.1f}% on its training images). " + reason
    plots = [
        curves(
            {f"{norm}, batch {batch}": rs for (norm, batch), rs in sorted(groups.items())},
            out / "trainset_accuracy.png",
            "Accuracy on the training images, eval mode (mean over seeds)",
            key="trainset_acc",
            ylabel="accuracy on the training images",
        ),
        curves(
            {f"{norm}, batch {batch}": rs for (norm, batch), rs in sorted(groups.items())},
            out / "test_accuracy.png",
            "Test accuracy (mean over seeds)",
        ),
    ]
    findings = [
        protocol.decide(HELPS, tests[:1]),
        protocol.decide(SLIGHTLY, tests[1:2]),
        protocol.decide(BATCH_NOISE, tests[2:3]),
    ]
    return Analysis(table, numbers, tests, reason, plots, preconditions=preconditions, findings=findings)


CLAIM = Claim(
    name="bn_regularization",
    title="BN regularizes, slightly, through its batch noise (BN paper, Sec. 3.4)",
    paper=(
        'Ioffe & Szegedy 2015 (https://arxiv.org/abs/1502.03167), Sec. 3.4: with BN "the training network no '
        "longer producing deterministic values for a given training example. In our experiments, we found this "
        'effect to be advantageous to the generalization of the network"; Sec. 4.2.1: dropout can be removed or '
        'reduced (no figure isolates the effect, and no number). The overview normlab is built from: "it helps '
        'regularization (only slightly, not significantly)". Luo et al. 2019 (https://arxiv.org/abs/1809.00846) '
        "derive BN's regularization from the noise of its batch statistics, stronger at smaller batches."
    ),
    setup=(
        "`mlp` with relu (3×100) on the first 5,000 of MNIST's training images (55k after the 5k validation "
        "split), so that it overfits; `norm=none` and `batch`, batch 64 and 8 at equal epochs (20 quick, 60 cpu: "
        "the reference), SGD with momentum 0.9, lr at batch 64 scaled linearly to batch 8 (quick 0.1; cpu 0.03, "
        "seeds 5-9), 5 seeds; "
        "the 5,000 training images evaluated in eval mode at each evaluation, once an epoch (`eval_train`: BN's "
        "training curve is measured with batch statistics, so it cannot give the gap; the endpoints are the last 5 "
        "epochs). full: the VGG-style cnn on 10,000 CIFAR-10 "
        "images without augmentation (a GPU). Differences: no dropout arm (our nets have none), a small net on a "
        "small training set instead of Inception on ImageNet. The cpu profile's first runs (lr 0.1, seeds 0-4, "
        "commit 761fdb5) saw the plain net collapse to chance in 3 of its 10 runs over 60 epochs (batch 64 seeds "
        "2 and 4 at epochs 39 and 48, batch 8 seed 1 at epoch 55; its training images then at 10% too, a gap of "
        "about 0): since then a collapsed run makes the claim not testable (a precondition), and the cpu profile "
        "runs lr 0.03 (a pilot at seed 10, never reported: no collapse, 100% on the training images at both "
        "batches) on fresh seeds 5-9. The quick profile's 20 epochs at lr 0.1 end before any collapse."
    ),
    criterion=(
        f"Three statements on the generalization gap (accuracy points, endpoints), paired by seed: (a) no norm's "
        f"gap − BN's at batch {LARGE} > 0; (b) BN's gap − no norm's > −{SLIGHT:g} (BN narrows it by less than "
        f'{SLIGHT:g} points: "slightly"); (c) the narrowing at batch {SMALL} minus at batch {LARGE} > 0 (a '
        "difference in differences: the plain net's change with the batch size is taken out). Secondary: BN's "
        f"test accuracy above no norm's at batch {LARGE}. Precondition: the plain net overfits (gap at least "
        f"{OVERFITS:g} point), and no run collapsed (each run's training-image accuracy at least {LEARNS:g}% at each "
        "of its last 5 evaluations)."
    ),
    analyze=analyze,
    reference="cpu",
    reference_why="60 epochs (quick: 20) of the 5,000 images at 5 seeds: the gaps have settled by then",
    # batch 8 beside the experiment's batch-64 grid, evaluated once an epoch as batch 64 is
    sweeps={
        "quick": ("batch_size=8 eval_every=625",),
        "cpu": ("batch_size=8 eval_every=625",),
        "full": ("batch_size=8 eval_every=1250",),
    },
)
