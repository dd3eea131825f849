"""GN paper (abstract; Tables 1-2, Fig. 1): BN's error rises rapidly as the batch shrinks, GN's accuracy is stable,
and at batch 2 GN has a lower error than BN.

Three statements, each decided on its own, each norm paired by seed with itself at batch 32. Errors are compared as
ratios (log error), so a margin means the same at 1% and at 40% error:
(a) BN's error at batch 2 is above RISE times its batch-32 error; BN with population statistics
    (`norm.bn_stats=batch_average`) beside it separates noisy batch statistics in training from running averages
    that misestimate them at test time (Wu & Johnson 2021), and the largest batch at which BN's error is already
    RISE times higher is where it breaks;
(b) GN's error at batch 2 is not above STABLE times its batch-32 error (non-inferiority), and it moves as a
    batch-independent norm does: GN's change net of LN's within ±log STABLE (equivalence). LN computes the same at
    every batch size, so what it gains or loses from batch 32 to 2 at equal epochs is the budget (more updates,
    noisier steps), not batch statistics. Plain flatness is shown beside, gated by that budget control;
(c) GN ends above BN at batch 2, which can speak only where GN competes at batch 32 (its error at most COMPETES
    times BN's; the paper: 1.02x), else not testable here."""

import math

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import lines
from normlab.protocol import Statement, mean_interval
from normlab.runs import arm_test, group, mean, mean_std, seed_differences

BATCHES = (32, 16, 8, 4, 2)
LARGE, SMALL = BATCHES[0], BATCHES[-1]
POPULATION = "batch (population stats)"  # BN evaluated with batch-averaged statistics instead of running averages
NORMS = ("batch", POPULATION, "group", "layer", "instance", "switchable")
SHORT = {
    "batch": "BN",
    POPULATION: "BN (population stats)",
    "group": "GN",
    "layer": "LN",
    "instance": "IN",
    "switchable": "SN",
}
RISE = 1.10  # BN's error at batch 2 above this times its batch-32 error (the paper: 34.7 / 23.6 = 1.47x)
STABLE = 1.05  # GN's error within this factor of its batch-32 error (the paper: 24.1 / 24.1; BN at batch 8: 1.05x)
COMPETES = 1.25  # GN's error at batch 32 at most this times BN's, or (c) is not testable (the paper: 1.02x)
PAPER = {  # Table 2 (ImageNet val error %, batch 32/16/8/4/2) and Table 1 (batch 32)
    "batch": (23.6, 23.7, 24.8, 27.3, 34.7),
    "group": (24.1, 24.2, 24.0, 24.2, 24.1),
    "layer": (25.3,),
    "instance": (28.4,),
}
SOURCE = "Wu & He 2018, abstract; Table 2, Fig. 1"
BN_RISES = Statement(
    "a_bn_rises",
    "BN's error increases rapidly when the batch size becomes smaller, caused by inaccurate batch statistics "
    "estimation.",
    SOURCE,
    f"BN's test error at batch {SMALL} over its error at {LARGE}, paired by seed: above {RISE:g}x (log ratio > "
    f"log {RISE:g})",
)
GN_STABLE = Statement(
    "b_gn_stable",
    "GN's computation is independent of batch sizes, and its accuracy is stable in a wide range of batch sizes.",
    SOURCE,
    f"GN's error at batch {SMALL} not above {STABLE:g}x its error at {LARGE} (non-inferiority), and GN's log ratio "
    f"minus LN's (a batch-independent control) within ±log {STABLE:g} (equivalence, 90% interval)",
)
GN_BEATS_BN = Statement(
    "c_gn_beats_bn_at_2",
    "On ResNet-50 trained in ImageNet, GN has 10.6% lower error than its BN counterpart when using a batch size of 2.",
    SOURCE,
    f"GN − BN test accuracy at batch {SMALL} > 0, where GN's error at batch {LARGE} is at most {COMPETES:g}x BN's",
)


def norm_of(run) -> str:
    norm = run.config["norm"]
    return POPULATION if norm.get("bn_stats") == "batch_average" and norm["name"] == "batch" else norm["name"]


def err(run) -> float:
    return 100 - run.endpoint("test_acc")


def acc(run) -> float:
    return run.endpoint("test_acc")


def log_err(run) -> float:
    return math.log(max(err(run), 1e-9))


def analyze(runs, out):
    groups = group(runs, lambda r: (norm_of(r), r.config["batch_size"]))
    batches = [b for b in BATCHES if any(bs == b for _, bs in groups)]
    norms = [n for n in NORMS if any(name == n for name, _ in groups)]

    def arm(norm, batch):
        return groups.get((norm, batch), [])

    def rise(norm, batch=SMALL):
        return arm_test(
            f"{SHORT[norm]}: log(error at batch {batch} / at batch {LARGE}) (> log {RISE:g} = {math.log(RISE):.3f})",
            arm(norm, batch),
            arm(norm, LARGE),
            log_err,
            math.log(RISE),
        )

    def ratio(norm):  # per seed: log(error at batch 2 / at batch 32)
        return seed_differences(arm(norm, SMALL), arm(norm, LARGE), log_err)

    # (a) BN's error rises
    bn_rise = rise("batch")
    breaks = [rise("batch", b) for b in batches if b not in (LARGE, SMALL)]
    broken = [
        b for b, t in zip([b for b in batches if b not in (LARGE, SMALL)], breaks, strict=True) if t.outcome == "holds"
    ]
    breaks_at = max(broken, default=SMALL if bn_rise.outcome == "holds" else None)
    a = protocol.decide(BN_RISES, [bn_rise])
    # (b) GN's error is stable
    gn_ratio, ln_ratio = ratio("group"), ratio("layer")
    seeds = sorted(gn_ratio.keys() & ln_ratio.keys())
    no_worse = arm_test(
        f"GN: −log(error at batch {SMALL} / at batch {LARGE}) (> −log {STABLE:g} = {-math.log(STABLE):.3f}: not worse)",
        arm("group", SMALL),
        arm("group", LARGE),
        lambda r: -log_err(r),
        -math.log(STABLE),
    )
    net = protocol.equivalent(
        f"GN's log error ratio (batch {SMALL} / {LARGE}) − LN's (within ±log {STABLE:g} = ±{math.log(STABLE):.3f})",
        [gn_ratio[s] for s in seeds],
        [ln_ratio[s] for s in seeds],
        math.log(STABLE),
    )
    b = protocol.decide(GN_STABLE, [no_worse, net])
    ln_moves = mean(abs(v) for v in ln_ratio.values()) if ln_ratio else math.nan
    budget = protocol.precondition(
        f"LN's |log error ratio| (batch {SMALL} / {LARGE}), mean over seeds: the batch-independent control does not "
        "move, so the budget is not limiting",
        ln_moves,
        at_most=math.log(STABLE),
        scope=f"GN: log(error at batch {SMALL} / at batch {LARGE}) (within ±log {STABLE:g})",
        need="a schedule that trains every batch size to convergence (more epochs, the `full` profile)",
    )
    flat = protocol.equivalent(
        budget.scope, [gn_ratio[s] for s in sorted(gn_ratio)], [0.0] * len(gn_ratio), math.log(STABLE)
    )
    # (c) GN beats BN at batch 2, where GN competes at batch 32
    err_bn, err_gn = mean(err(r) for r in arm("batch", LARGE)), mean(err(r) for r in arm("group", LARGE))
    competes = protocol.precondition(
        f"GN's error / BN's at batch {LARGE}, means over seeds (the paper: 24.1 / 23.6 = 1.02)",
        err_gn / err_bn if err_bn > 0 else math.nan,
        at_most=COMPETES,
        scope=GN_BEATS_BN.key,
        need="a setup where GN competes with BN at the largest batch: a longer schedule, a ResNet with γ = 0 in each "
        "block's last norm (model.zero_init_residual), the full training set (the `full` profile, on a GPU); see "
        "the pilots",
    )
    beats = arm_test(
        f"at batch {SMALL}: GN − BN, final test accuracy (points)", arm("group", SMALL), arm("batch", SMALL), acc
    )
    c = protocol.decide(GN_BEATS_BN, [beats], [competes])
    findings = [a, b, c]
    tests = [*a.tests, *b.tests, *c.tests, protocol.gate(flat, budget).as_secondary()]
    if arm(POPULATION, SMALL):
        tests += [
            rise(POPULATION).as_secondary(),
            arm_test(
                f"at batch {SMALL}: BN with population stats − BN with running averages, final test accuracy "
                "(points: what the running averages add to BN's failure)",
                arm(POPULATION, SMALL),
                arm("batch", SMALL),
                acc,
            ).as_secondary(),
        ]
    at_large = arm_test(
        f"at batch {LARGE}: GN − BN, final test accuracy (points; paper −0.5)",
        arm("group", LARGE),
        arm("batch", LARGE),
        acc,
    )
    reported = [
        at_large,
        *breaks,
        *(
            arm_test(
                f"{SHORT[norm]}: error at batch {SMALL} − at batch {LARGE} (points)",
                arm(norm, SMALL),
                arm(norm, LARGE),
                err,
            )
            for norm in norms
            if norm != POPULATION
        ),
        *(
            arm_test(
                f"at batch {SMALL}: {SHORT[norm]} − BN, final test accuracy (points)",
                arm(norm, SMALL),
                arm("batch", SMALL),
                acc,
            )
            for norm in norms
            if norm in ("layer", "instance", "switchable")
        ),
    ]

    numbers, rows, intervals = {}, [], {}
    for norm in norms:
        errs = {b: [err(r) for r in arm(norm, b)] for b in batches}
        intervals[norm] = {b: mean_interval(errs[b]) for b in batches if errs[b]}
        numbers[norm] = {f"err_bs{b}": intervals[norm][b][0] for b in intervals[norm]}
        if LARGE in intervals[norm] and SMALL in intervals[norm]:
            numbers[norm]["change"] = intervals[norm][SMALL][0] - intervals[norm][LARGE][0]
        rows.append(
            f"| {norm} | "
            + " | ".join(mean_std(errs[b], digits=1) for b in batches)
            + f" | {numbers[norm].get('change', float('nan')):+.1f} |"
        )
    numbers["bn_breaks_at"] = breaks_at
    paper_rows = [
        f"| {norm} (paper) | " + " | ".join(f"{v}" for v in values) + " |" + " |" * (len(BATCHES) - len(values))
        for norm, values in PAPER.items()
    ]
    where = (
        f"BN breaks at batch {breaks_at}: the largest batch at which its error is already above {RISE:g}x its "
        f"batch-{LARGE} error (the paper: batch 4, 27.3 / 23.6 = 1.16x)"
        if breaks_at
        else f"BN's error is not shown above {RISE:g}x its batch-{LARGE} error at any batch size run"
    )
    table = (
        "Test error (%), mean ± std over seeds (a norm's missing batch sizes were not run in this profile):\n\n"
        f"| norm | {' | '.join(f'bs {b}' for b in batches)} | change {LARGE}→{SMALL} |\n|---|"
        + "---|" * (len(batches) + 1)
        + "\n"
        + "\n".join(rows)
        + f"\n\n{where}.\n"
        + "\n\nThe paper (ResNet-50, ImageNet val error %), Table 2 at batch 32 / 16 / 8 / 4 / 2 and Table 1 at batch"
        " 32:\n\n| norm | "
        + " | ".join(f"bs {b}" for b in BATCHES)
        + " |\n|---|"
        + "---|" * len(BATCHES)
        + "\n"
        + "\n".join(paper_rows)
        + "\n\n"
        + tests_table(tests, reported)
    )
    reason = "; ".join(f"({f.statement.key[0]}) {f.verdict.replace('_', ' ')}" for f in findings)
    reason += f". {where}; at batch {SMALL} GN − BN is {beats.estimate:+.2f} {fmt_ci(beats)} points"
    if not competes.holds:
        reason += (
            f" (not testable here: GN's error at batch {LARGE} is {competes.value:.2f}x BN's, the "
            f"precondition needs {competes.required})"
        )
    plot = lines(
        batches,
        {norm: [intervals[norm].get(b, (float("nan"),))[0] for b in batches] for norm in norms},
        out / "error_vs_batch.png",
        "test error vs batch size, 95% intervals (cf. GN paper Fig. 1)",
        f"batch size (lr = 0.1·N/{LARGE})",
        "test error (%)",
        log2_reversed=True,
        intervals={
            norm: [intervals[norm].get(b, (0, float("nan"), float("nan")))[1:] for b in batches] for norm in norms
        },
    )
    return Analysis(
        table,
        numbers,
        tests,
        reason + ".",
        [plot],
        notes=pilots(out),
        reported=reported,
        preconditions=[competes, budget],
        findings=findings,
    )


def pilots(out) -> str:
    """The pilots' tables (results/bn_small_batch/pilots*.md, made by scripts/pilots.py), where made."""
    home = next((p for p in (out, *out.parents) if p.name == "bn_small_batch"), None)
    tables = sorted(home.glob("pilots*.md")) if home is not None else []
    return "".join(f"\n## Pilots: {path.stem}\n\n" + path.read_text().split("\n", 2)[2] for path in tables)


def fmt_ci(test) -> str:
    low, high = test.ci95
    return f"[{low:+.2f}, {high:+.2f}]"


CLAIM = Claim(
    name="bn_small_batch",
    title="BN fails at small batches, GN does not (GN paper, Tables 1-2)",
    paper=(
        "Wu & He 2018 (https://arxiv.org/abs/1803.08494), Table 2: ResNet-50 ImageNet val error at batch/GPU "
        "32/16/8/4/2 — BN 23.6/23.7/24.8/27.3/34.7, GN 24.1/24.2/24.0/24.2/24.1; lr 0.1·N/32, same epochs. "
        "Table 1 at batch 32: BN 23.6, LN 25.3, IN 28.4, GN 24.1."
    ),
    setup=(
        "`cnn` (width 16, ~60k parameters) on CIFAR-10 with crop+flip; group norm with 4 channels per group in every "
        "layer (4, 8, 16 groups: the paper's G = 32 would make the 16- and 32-channel layers IN); SGD momentum 0.9, "
        "lr 0.1·N/32 (the paper's linear scaling rule, not tuned: every arm gets the same rule), cosine decay, the "
        "same number of epochs at every batch size. cpu (the reference): 3 epochs of the 45k training split, weight "
        "decay 1e-4 as in the paper, seeds 1-5 (seed 0 is the pilots'), BN and GN at batch 32, 16, 8, 4, 2, BN with "
        "population statistics (`norm.bn_stats=batch_average`, averaged over up to 200 training batches before "
        "each evaluation) at every batch size, LN and IN at 32 and 2. steps: its equal-steps control (BN and GN: "
        "every batch size runs the 4,218 steps batch 32 runs in 3 epochs, so batch 2 sees 1/16 of the images). "
        "Quick: 1 epoch of the first 5k images, BN/GN/LN/IN/SN at 32, 8, 2. full (a GPU): ResNet-20 with γ = 0 in "
        "each block's last norm, 30 epochs of 45k, step decay. Test error on all 10k test images. Unlike the paper: "
        "a 60k-parameter CNN for ResNet-50, CIFAR-10 for ImageNet, 3 epochs for 100, cosine decay for steps at "
        "30/60/90, no decay on γ and β (the paper decays them)."
    ),
    criterion=(
        f"Three statements, each paired by seed. (a) BN's test error at batch {SMALL} above {RISE:g}x its error at "
        f"batch {LARGE} (log ratio > log {RISE:g}). (b) GN's error at batch {SMALL} not above {STABLE:g}x its error "
        f"at {LARGE} (non-inferiority) and GN's log error ratio minus LN's within ±log {STABLE:g} (equivalence, 90% "
        f"interval): both primary. (c) GN − BN test accuracy at batch {SMALL} > 0, testable only where GN's error at "
        f"batch {LARGE} is at most {COMPETES:g}x BN's. Secondary: GN's own log ratio within ±log {STABLE:g}, where "
        f"LN's mean |log ratio| is below log {STABLE:g} (the budget is not limiting); BN with population statistics "
        f"still above {RISE:g}x; at batch {SMALL} BN with population statistics − BN with running averages. "
        f"Reported: BN's log ratio at each batch size (it breaks at the largest one above {RISE:g}x), each norm's "
        f"change in points, GN − BN at batch {LARGE}, LN, IN (and SN) − BN at batch {SMALL}."
    ),
    analyze=analyze,
    reference="cpu",
    reference_why=(
        "the cpu profile (3 epochs of the 45k split, 27x the images of the quick profile), every batch size of the "
        "paper's Table 2, 5 seeds not used for anything else, the paper's lr rule for every arm (no tuning, so no "
        "tuning budget to equalise); its equal-steps control is the steps profile"
    ),
    sweeps={
        "cpu": ("norm=batch norm.bn_stats=batch_average", "norm=layer,instance batch_size=32,2"),
        "full": ("norm=batch norm.bn_stats=batch_average", "norm=layer,instance batch_size=32,2"),
    },
)
