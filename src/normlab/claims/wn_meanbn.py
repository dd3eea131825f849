"""WN paper: WN + mean-only BN beats BN; WN alone speeds up early training over plain parameterization."""

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import curves
from normlab.protocol import Statement
from normlab.runs import CHANCE, arm_test, group, mean, mean_std

SOURCE = "Salimans & Kingma 2016"
BEST = Statement(
    "a_meanbn_best",
    "WN + mean-only BN: 7.31% test error (BN: 8.05%)",
    f"{SOURCE}, CIFAR-10 table (secondary sources)",
    "WN + mean-only BN − BN, final test accuracy > 0",
)
FASTER = Statement(
    "b_wn_speeds_up_sgd",
    "we speed up convergence of stochastic gradient descent",
    f"{SOURCE}, abstract",
    "WN − plain, validation accuracy at the first evaluation > 0",
)

PAPER = {"none": 8.43, "weight": 8.46, "batch": 8.05, "weight_meanbn": 7.31}
NORMS = ("none", "weight", "batch", "weight_meanbn")
MARGIN = 0.0  # points: the paper claims superiority (7.31 vs 8.05% error), not "no worse"
REGIME = 3.0  # the best arm's test error at most this factor of the paper's best (7.31%): a 0.74-point effect (7.31
# vs 8.05) is a statement about nets near convergence; in a net at 40-50% error it says nothing about the paper's


def early(run) -> float:
    """Validation accuracy (points) at the first evaluation: WN's claim is a faster start."""
    values = run.curve("val_acc")[1]
    return 100 * (values[0] if values else CHANCE)


def analyze(runs, out):
    groups = group(runs, lambda r: r.config["norm"]["name"])
    tests = [
        arm_test(
            "WN + mean-only BN − BN, final test accuracy (points)",
            groups.get("weight_meanbn", []),
            groups.get("batch", []),
            lambda r: r.endpoint("test_acc"),
            MARGIN,
        ),
        arm_test(
            "WN − plain, validation accuracy at the first evaluation (points)",
            groups.get("weight", []),
            groups.get("none", []),
            early,
            MARGIN,
        ),
    ]
    reported = [
        arm_test(
            "BN − plain, final test accuracy (points)",
            groups.get("batch", []),
            groups.get("none", []),
            lambda r: r.endpoint("test_acc"),
        ),
    ]
    best = min(PAPER, key=PAPER.get)
    errors = {n: mean(100 - r.endpoint("test_acc") for r in groups[n]) for n in NORMS if groups.get(n)}
    ours = min(errors, key=errors.get) if errors else best
    factor = errors.get(ours, float("nan")) / PAPER[best]
    preconditions = [
        protocol.precondition(
            f"the best arm's test error ({ours}, mean over seeds) over the paper's best ({best}, {PAPER[best]}%), a "
            "factor",
            factor,
            at_most=REGIME,
            need="a net trained near convergence: the paper's ConvPool-CNN-C at full width for many epochs (a "
            "GPU), where a 0.74-point difference of test error means what the paper's does",
        ),
    ]
    numbers, rows = {}, []
    first_step = next((r.curve("val_acc")[0][0] for r in runs if r.metrics), None)
    for norm in NORMS:
        rs = groups.get(norm, [])
        errs = [100 - r.endpoint("test_acc") for r in rs]
        numbers[norm] = {"err": mean(errs), "early_acc": mean(early(r) for r in rs)}
        rows.append(
            f"| {norm} | {mean_std(errs)} | {PAPER[norm]} | {mean_std([early(r) for r in rs], digits=1)} | {len(rs)} |"
        )
    order = sorted(NORMS, key=lambda n: numbers[n]["err"])
    table = (
        f"| norm | test error % | paper's test error % (S) | val acc % at step {first_step} | seeds |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nOrdering here (best first): {' < '.join(order)}. Paper: weight_meanbn < batch < none < weight.\n\n"
        + tests_table(tests, reported)
    )
    reason = (
        f"WN+mean-only BN − BN: {tests[0].estimate:+.2f} points of test accuracy ({tests[0].outcome}); WN − plain "
        f"at step {first_step}: {tests[1].estimate:+.2f} ({tests[1].outcome})."
    )
    if not preconditions[0].holds:
        reason = (
            f"not testable here: the best arm's test error is {errors[ours]:.1f}% ({ours}), {factor:.1f}x the "
            f"paper's best {PAPER[best]}% (the precondition: at most {REGIME:g}x). " + reason
        )
    plots = [
        curves({n: groups.get(n, []) for n in NORMS}, out / "test_accuracy.png", "CIFAR-10 CNN, Adam: test accuracy")
    ]
    findings = [protocol.decide(BEST, tests[:1]), protocol.decide(FASTER, tests[1:])]
    return Analysis(
        table, numbers, tests, reason, plots, reported=reported, preconditions=preconditions, findings=findings
    )


CLAIM = Claim(
    name="wn_meanbn",
    title="WN + mean-only BN vs BN, and WN's faster start (WN paper, CIFAR-10)",
    paper=(
        "Salimans & Kingma 2016 (https://arxiv.org/abs/1602.07868), CIFAR-10 test error (ConvPool-CNN-C variant, "
        "Adam, batch 100, 200 epochs): plain 8.43%, WN 8.46%, BN 8.05%, WN + mean-only BN 7.31%. These figures come "
        "from two consistent secondary summaries (S); the primary table was not found."
    ),
    setup=(
        "`cnn` (width 16) on CIFAR-10 with crop+flip (the paper: ZCA, no augmentation, Gaussian input noise, dropout), "
        "Adam lr 1e-3, batch 100, data-dependent init for the WN variants (500 images), none / weight / batch / "
        "weight_meanbn; 2 epochs of the first 15k training images and 5 seeds (quick) — the paper trains 200 epochs of "
        "a deeper net (ConvPool-CNN-C, 9 conv layers, dropout) at a decaying lr. The cpu profile (its tuned report is "
        "the reference) runs the paper's net (`model=convpool`: input noise, dropout, leaky ReLU) at width 16 instead "
        "of 96, without augmentation, standardized instead of ZCA-whitened, 2 epochs with cosine decay."
    ),
    criterion=(
        "Two tests, paired by seed, margin 0: WN + mean-only BN ends with a higher test accuracy than BN (the "
        "paper's superiority claim, 7.31 vs 8.05% error), and WN alone has a higher validation accuracy than the "
        "plain parameterization at the first evaluation (its faster start). Precondition: the best arm's test "
        f"error is at most {REGIME:g}x the paper's best (7.31%; else not testable here: the paper's 0.74-point "
        "effect is a statement about nets near convergence)."
    ),
    analyze=analyze,
    reference="cpu/tuned",
    reference_why=(
        "the paper's own net (ConvPool-CNN-C at width 16, no augmentation), each arm at its own Adam lr (tuned on "
        "validation at seed 5, not reported: lr × 1/3, 1, 3, extended where an arm chose an edge), 5 seeds. No "
        "norm, BN and WN + mean-only BN chose 9x (the grid extended to 27x, inside), WN 3x; 2 epochs leave every "
        "arm far from the paper's 200 (41-53% test error against 7-8%), which the precondition on the best arm's "
        "error (within 3x the paper's) reports: not testable here"
    ),
)
