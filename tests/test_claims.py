"""Each claim's analyze() on synthetic runs built here, whose right verdict is known: a clear win for the paper's
arm, a clear loss, a tie within noise, a diverged run, and targets never reached. A wrong criterion fails here,
not in a review."""

import json
import math
import zlib

import pytest

from normlab.claims import arms, in_contrast, registry, write_report
from normlab.claims.in_contrast import contrast_accuracies
from normlab.runs import Run

from conftest import ROOT

STEPS = list(range(100, 1100, 100))
SEEDS = range(5)
EFFECT = 3.0  # points: a clear difference (the noise is 0.3 points)
NOISE = (-1.0, 1.0, 0.0, 0.5, -0.5)
LAYERS = ("features.0", "features.1")


def config(norm="batch", batch_size=32, lr=0.1, activation="relu", seed=0, scheduler="constant"):
    return {
        "norm": {"name": norm},
        "batch_size": batch_size,
        "lr": lr,
        "model": {"activation": activation},
        "seed": seed,
        "scheduler": {"name": scheduler},
        "data": {},
    }


def make_run(
    path, cfg, quality, seed, status="completed", drift=1.0, layers=None, contrast_spread=None, landscape=None, gap=None
):
    """A run whose validation and test curves rise over STEPS, shifted by `quality` points (+ seeded noise);
    `landscape`: the Fig. 4 measurements at every evaluation (+ seeded noise); `gap`: the training images' accuracy
    in eval mode that many points above the test accuracy (+ seeded noise)."""
    # seed-to-seed noise of mean 0 over the 5 seeds, its sign fixed per arm: a tie stays a tie in every test
    sign = 1 if zlib.crc32(json.dumps(cfg, sort_keys=True).encode()) % 2 else -1
    noise = 0.3 * NOISE[seed] * sign
    metrics = []
    steps = STEPS if status == "completed" else STEPS[:3]
    for i, step in enumerate(steps):
        acc = 0.80 + 0.10 * (1 - math.exp(-step / 300)) + (quality + noise) / 100
        record = {"step": step, "val_acc": acc, "test_acc": acc + 0.002, "train_loss": 1.0}
        # a sigmoid input's percentiles travelling `drift` spreads (p85 - p15 = 2) over the run
        centre = 2 * drift * i / (len(STEPS) - 1)
        record["last_hidden_input"] = {p: [centre + o] * 3 for p, o in (("p15", -1), ("p50", 0), ("p85", 1))}
        if layers:
            record["norm_layers"] = layers
        if landscape:
            record["landscape"] = {k: v * math.exp(0.05 * NOISE[seed] * sign) for k, v in landscape.items()}
        if gap is not None:
            record["trainset_acc"] = acc + 0.002 + (gap + 0.2 * NOISE[(seed + 2) % 5] * sign) / 100
        metrics.append(record)
    summary = {"status": status, "config": {**cfg, "seed": seed}, "test_acc": metrics[-1]["test_acc"]}
    summary["norm_layers"] = layers or {}
    if contrast_spread is not None:  # accuracy at the 5 contrast factors: the original one highest
        top = metrics[-1]["test_acc"]
        summary["contrast"] = [top - contrast_spread / 100, top - contrast_spread / 200, top, top - 0.001, top - 0.002]
    run_dir = path / f"{json.dumps(cfg, sort_keys=True)}-{seed}"
    return Run(run_dir, summary, metrics)


SN_LAYERS = ("features.0.1", "features.2.1", "features.4.1")  # SN's layers, first to last


def sn_layers(bn_mean: float, bn_var: float, depth: float = 0.03) -> dict:
    """SN's importances in three layers: BN's mean and variance shares on average, the rest split between IN and
    LN; `depth` moves share from BN to IN in the first layer, from IN and LN to BN in the middle one and from BN to
    LN in the last (the SN paper's pattern; negative: the reverse)."""
    rest_mean, rest_var = (1 - bn_mean) / 2, (1 - bn_var) / 2
    shifts = (
        {"in": depth, "bn": -depth},
        {"in": -depth / 2, "ln": -depth / 2, "bn": depth},
        {"ln": depth, "bn": -depth},
    )
    base = {"in": (rest_mean, rest_var), "ln": (rest_mean, rest_var), "bn": (bn_mean, bn_var)}
    return {
        layer: {
            f"{kind}_{norm}": base[norm][i] + shift.get(norm, 0.0)
            for norm in base
            for i, kind in enumerate(("mean", "var"))
        }
        for layer, shift in zip(SN_LAYERS, shifts, strict=True)
    }


ROUGH = {"loss_range": 0.2, "grad_change": 1.0, "beta": 8.0, "grad_norm": 1.0}  # no norm's Fig. 4 levels


def smoothed(levels: dict, log_factor: float, keys=None) -> dict:
    """`levels` divided by exp(log_factor) (those of `keys`; all by default)."""
    return {k: v / math.exp(log_factor) if keys is None or k in keys else v for k, v in levels.items()}


def build(claim: str, effect: float, tmp_path, diverge: str | None = None) -> list[Run]:
    """Runs for `claim` where the paper's arm is better by `effect` points (negative: worse); `diverge`="baseline"
    or "favoured" makes every seed of that arm diverge in the claim's main comparison."""
    e, runs = effect, []

    def add(cfg, quality, role=None, **kw):
        for seed in SEEDS:
            status = "diverged" if diverge is not None and role == diverge else "completed"
            runs.append(make_run(tmp_path, cfg, quality, seed, status, **kw))

    if claim == "bn_convergence":
        add(config("none"), 0, "baseline", drift=1.0)
        add(config("batch"), e, "favoured", drift=1.0 - e / 10)
    elif claim in ("ln_rnn", "bn_lstm"):
        add(config("none"), 0, "baseline")
        add(config("layer" if claim == "ln_rnn" else "batch"), e, "favoured")
    elif claim == "wn_meanbn":
        add(config("none"), 0, "baseline")
        add(config("weight"), e)
        add(config("batch"), 0, "baseline")
        add(config("weight_meanbn"), e, "favoured")
    elif claim == "in_contrast":
        for norm in ("batch", "layer", "batch_instance"):
            add(config(norm), 0, "baseline" if norm == "batch" else None, contrast_spread=20.0)
        add(config("instance"), -10, "favoured", contrast_spread=20.0 - e)
    elif claim == "sn_switches":
        for bs in (32, 8):
            add(config("switchable", bs), 0, layers=sn_layers(0.5, 0.5, depth=e / 100))
        add(config("switchable", 2), 0, layers=sn_layers(0.5 - e / 100, 0.5 - 2 * e / 100, depth=e / 100))
    elif claim == "bn_small_batch":
        for norm in ("batch", "group", "layer", "instance", "switchable"):
            for bs in (32, 8, 2):
                bad = norm == "batch" and bs == 2
                add(config(norm, bs), -e if bad else 0, "baseline" if bad else "favoured" if bs == 2 else None)
    elif claim == "ln_small_batch":
        for bs in (128, 4):
            add(config("batch", bs), -max(e, 0) if bs == 4 else 0, "baseline" if bs == 4 else None)
            add(config("layer", bs), min(e, 0) if bs == 4 else 0, "favoured" if bs == 4 else None)
    elif claim == "bin_gates":
        add(config("batch"), 0, "baseline")
        add(config("instance"), -5)
        gates = {layer: {"gate_mean": 0.9} for layer in LAYERS}
        add(config("batch_instance"), e, "favoured", layers=gates)
    elif claim == "bn_learning_rate":  # BN x1 3 points above the plain net; BN x5 and x30 `effect` above BN x1
        for act in ("relu", "sigmoid"):
            for mult in (1, 5, 30):
                add(config("none", lr=0.01 * mult, activation=act), 0 if mult == 1 else -e)
                add(
                    config("batch", lr=0.01 * mult, activation=act),
                    3 + (e if mult > 1 else 0),
                    "baseline" if mult == 1 and act == "relu" else "favoured" if act == "relu" else None,
                )
    elif claim == "bn_smoothness":  # BN exp(e / 5) times smoother than no norm; noisy BN as good as BN
        add(config("none"), 5, "baseline", landscape=ROUGH)
        add(config("batch"), 5 + e, "favoured", landscape=smoothed(ROUGH, e / 5))
        add(config("batch_noisy"), 5 + e, landscape=smoothed(ROUGH, e / 5))
    elif claim == "bn_regularization":  # no norm's gap 5 (4 at batch 8); BN narrows it by e/3 (2e/3 at batch 8)
        for bs, plain_gap, narrowing in ((64, 5.0, e / 3), (8, 4.0, 2 * e / 3)):
            add(config("none", bs), 0, "baseline" if bs == 64 else None, gap=plain_gap)
            add(config("batch", bs), e, "favoured" if bs == 64 else None, gap=plain_gap - narrowing)
    else:
        raise AssertionError(f"no synthetic runs for {claim}: add them here")
    return runs


@pytest.fixture(autouse=True)
def fake_contrast(monkeypatch):
    """in_contrast evaluates checkpoints on real images; here each synthetic run carries its accuracies."""
    monkeypatch.setattr(in_contrast, "contrast_accuracies", lambda run, cache: run.summary["contrast"])


CLAIMS = sorted(registry())


def test_every_claim_has_synthetic_runs(tmp_path):
    for claim in CLAIMS:
        assert build(claim, EFFECT, tmp_path)


# a tie where a claim's margin asks for more than no difference: a BN whose error does not rise as the batch
# shrinks contradicts bn_small_batch's "rises by more than 1 point" and ln_small_batch's "falls by more than 0.5"
TIE = {"bn_small_batch": "not_reproduced", "ln_small_batch": "not_reproduced", "bn_smoothness": "not_reproduced"}


@pytest.mark.parametrize("claim", CLAIMS)
@pytest.mark.parametrize(
    ("effect", "verdict"), [(EFFECT, "reproduced"), (-EFFECT, "not_reproduced"), (0.0, "inconclusive")]
)
def test_a_clear_win_loss_or_tie_gives_the_right_verdict(tmp_path, claim, effect, verdict):
    verdict = TIE.get(claim, verdict) if effect == 0 else verdict
    analysis = registry()[claim].analyze(build(claim, effect, tmp_path), tmp_path)
    assert analysis.verdict == verdict, [(t.name, t.estimate, t.ci95, t.outcome) for t in analysis.tests]
    for test in analysis.tests:  # every test is computed over the 5 seeds of each arm, paired
        assert len(test.favoured) == len(test.baseline) == 5 and test.method.startswith("paired")


@pytest.mark.parametrize("claim", CLAIMS)
def test_every_claim_is_the_papers_statements_each_with_its_own_verdict(tmp_path, claim):
    """Each claim lists the paper's statements (quoted, with where the paper says them, and how they are tested),
    each decided by its own primary tests; the claim's word follows from them (protocol.claim_verdict), and the
    report and summary.json show them first."""
    analysis = registry()[claim].analyze(build(claim, EFFECT, tmp_path), tmp_path)
    assert analysis.findings, f"{claim} states no statement"
    keys = [f.statement.key for f in analysis.findings]
    assert len(set(keys)) == len(keys)
    for finding in analysis.findings:
        assert finding.statement.quote and finding.statement.source and finding.statement.test
        assert finding.tests and all(t.statement == "primary" for t in finding.tests)
        assert finding.verdict == "reproduced", (claim, finding.statement.key)
    decided = {t.name for f in analysis.findings for t in f.tests}
    assert decided == {t.name for t in analysis.tests if t.statement == "primary"}


# sn_switches compares the weights one norm learned at two batch sizes: there is no baseline arm to diverge;
# bn_regularization's gap is not defined for a diverged run (test_a_diverged_run_has_no_gap)
@pytest.mark.parametrize("claim", [c for c in CLAIMS if c not in ("sn_switches", "bn_regularization")])
def test_a_diverged_baseline_counts_against_it_and_a_diverged_paper_arm_against_the_paper(tmp_path, claim):
    analyze = registry()[claim].analyze
    assert analyze(build(claim, EFFECT, tmp_path, diverge="baseline"), tmp_path).verdict == "reproduced"
    assert analyze(build(claim, EFFECT, tmp_path, diverge="favoured"), tmp_path).verdict != "reproduced"


def small_batch_runs(tmp_path, quality: dict) -> list[Run]:
    """bn_small_batch's arms at batch 32, 8 and 2, each `quality[(norm, batch)]` points (0 where not given)."""
    runs = []
    for norm in ("batch", "group", "layer"):
        for bs in (32, 8, 2):
            runs += [make_run(tmp_path, config(norm, bs), quality.get((norm, bs), 0.0), seed) for seed in SEEDS]
    return runs


GN_ALL = (32, 8, 2)


@pytest.mark.parametrize(
    ("case", "quality", "statements"),
    [
        ("the paper's claim", {("batch", 2): -5}, ("reproduced", "reproduced", "reproduced")),
        (
            "(a) false: BN does not degrade",
            {("group", b): 1.5 for b in GN_ALL},
            ("not_reproduced", "reproduced", "reproduced"),
        ),
        (
            "(b) false: GN degrades too, by less (GN still wins at batch 2)",
            {("batch", 2): -6, ("group", 2): -3},
            ("reproduced", "not_reproduced", "reproduced"),
        ),
        (
            "(b)'s reason false: GN gains at batch 2 where the batch-independent LN does not",
            {("batch", 2): -5, ("group", 2): 3},
            ("reproduced", "not_reproduced", "reproduced"),
        ),
        (
            "(b) budget-limited: GN and LN gain alike at batch 2 (GN moves as a batch-independent norm)",
            {("batch", 2): -5, ("group", 2): 2, ("layer", 2): 2},
            ("reproduced", "reproduced", "reproduced"),
        ),
        (
            "(c) false: GN competes at batch 32 but loses at batch 2",
            {("batch", 2): -1.6, **{("group", b): -2.4 for b in GN_ALL}},
            ("reproduced", "reproduced", "not_reproduced"),
        ),
        (
            "(c) untestable: GN far behind BN at batch 32",
            {("batch", 2): -5, **{("group", b): -8 for b in GN_ALL}},
            ("reproduced", "reproduced", "not_testable"),
        ),
        (
            "(b) false where (c) is untestable",
            {("batch", 2): -5, ("group", 32): -8, ("group", 8): -8, ("group", 2): -4},
            ("reproduced", "not_reproduced", "not_testable"),
        ),
    ],
)
def test_bn_small_batch_decides_each_statement_and_never_reads_reproduced_when_one_is_false(
    tmp_path, case, quality, statements
):
    """Each of the GN paper's three statements false in turn (and (b)'s reason: GN moving unlike a batch-independent
    norm) while the others hold: that statement, and so the claim, never reads reproduced; a GN far behind BN at the
    largest batch leaves (c) not testable while (a) and (b) are still decided."""
    analysis = registry()["bn_small_batch"].analyze(small_batch_runs(tmp_path, quality), tmp_path)
    found = tuple(f.verdict for f in analysis.findings)
    assert found == statements, (case, [(t.name, t.estimate, t.ci95, t.outcome) for t in analysis.tests])
    keys = [f.statement.key for f in analysis.findings]
    assert keys == ["a_bn_rises", "b_gn_stable", "c_gn_beats_bn_at_2"]
    expected = (
        "not_reproduced"
        if "not_reproduced" in statements
        else ("not_testable" if "not_testable" in statements else "reproduced")
    )
    assert analysis.verdict == expected
    no_worse, net = analysis.findings[1].tests
    assert net.method.startswith("paired TOST") and net.margin == pytest.approx(math.log(1.05))
    assert no_worse.margin == pytest.approx(-math.log(1.05))
    assert analysis.findings[0].tests[0].margin == pytest.approx(math.log(1.10))
    if statements[2] == "not_testable":
        competes = next(p for p in analysis.preconditions if p.scope == "c_gn_beats_bn_at_2")
        assert "not testable here" in analysis.reason and not competes.holds
        assert competes.value == pytest.approx((10 + 8) / 10, abs=0.1)


@pytest.mark.parametrize(
    ("case", "quality", "verdict"),
    [
        ("the paper's claim", {("batch", 4): -3}, "reproduced"),
        (
            "BN improves at the small batch (an absolute change would pass)",
            {("batch", 4): 3, ("layer", 4): 4},
            "not_reproduced",
        ),
        ("LN is not flat (it falls too, by less)", {("batch", 4): -4, ("layer", 4): -2}, "not_reproduced"),
        ("LN does not beat BN at batch 4", {("batch", 4): -3, ("layer", 128): -4, ("layer", 4): -4}, "not_reproduced"),
    ],
)
def test_ln_small_batch_is_directional_and_fails_whenever_a_part_is_false(tmp_path, case, quality, verdict):
    runs = [
        make_run(tmp_path, config(norm, bs), quality.get((norm, bs), 0.0), seed)
        for norm in ("batch", "layer")
        for bs in (128, 4)
        for seed in SEEDS
    ]
    analysis = registry()["ln_small_batch"].analyze(runs, tmp_path)
    assert analysis.verdict == verdict, (case, [(t.name, t.estimate, t.ci95, t.outcome) for t in analysis.tests])


def test_bn_small_batch_separates_running_averages_from_batch_noise(tmp_path):
    """BN with population statistics: its own rise and its gap to running-average BN at batch 2, secondary."""
    runs = small_batch_runs(tmp_path, {("batch", 2): -5})
    population = {"name": "batch", "bn_stats": "batch_average"}
    for bs, quality in ((32, 0.0), (8, -0.5), (2, -2.0)):
        runs += [make_run(tmp_path, {**config("batch", bs), "norm": population}, quality, seed) for seed in SEEDS]
    analysis = registry()["bn_small_batch"].analyze(runs, tmp_path)
    secondary = {t.name: t for t in analysis.tests if t.statement == "secondary"}
    assert len(secondary) == 3 and analysis.verdict == "reproduced"
    rise = next(t for name, t in secondary.items() if name.startswith("BN (population stats): log(error"))
    gap = next(t for name, t in secondary.items() if "what the running averages add" in name)
    assert rise.estimate == pytest.approx(math.log(12 / 10), abs=0.05) and gap.estimate == pytest.approx(3.0, abs=0.5)
    assert "batch (population stats)" in analysis.numbers and (tmp_path / "error_vs_batch.png").exists()


def test_an_in_that_never_learned_is_not_counted_as_contrast_invariant(tmp_path):
    """IN near chance answers the same whatever the contrast: a spread of ~0 from a broken model must not pass."""
    runs = [
        make_run(tmp_path, config(norm), 0, seed, contrast_spread=20.0)
        for norm in ("batch", "layer", "batch_instance")
        for seed in SEEDS
    ]
    trained = [make_run(tmp_path, config("instance"), -20, seed, contrast_spread=1.0) for seed in SEEDS]
    at_chance = [make_run(tmp_path, config("instance"), -77, seed, contrast_spread=0.5) for seed in SEEDS]
    assert max(r.summary["contrast"][2] for r in at_chance) < 0.2 < min(r.summary["contrast"][2] for r in trained)
    analyze = registry()["in_contrast"].analyze
    assert analyze(runs + trained, tmp_path).verdict == "reproduced"
    broken = analyze(runs + at_chance, tmp_path)
    assert broken.verdict == "not_reproduced"
    assert broken.tests[0].estimate == pytest.approx(20.0 - 100.0, abs=1.0)
    assert "did not learn" in broken.reason and "instance 5 of 5" in broken.reason


def test_targets_never_reached_are_censored_not_compared_as_equal(tmp_path):
    """bn_convergence reports steps to 95% / 97%: where neither arm reaches 97%, that row is unclear (never <
    never is neither true nor false), and it does not decide the verdict."""
    runs = build("bn_convergence", EFFECT, tmp_path)
    analysis = registry()["bn_convergence"].analyze(runs, tmp_path)
    never = next(t for t in analysis.reported if "97%" in t.name)
    assert all(math.isinf(r.steps_to(0.97)) for r in runs)
    assert never.outcome == "unclear" and "never reached" in never.note
    assert analysis.verdict == "reproduced"


def test_the_summary_follows_the_contract(tmp_path):
    """write_report's summary.json: today's keys plus seeds, and tests with their intervals and per-seed values."""
    runs_root = tmp_path / "runs"
    runs = build("bn_convergence", EFFECT, runs_root / "bn_convergence")
    for run in runs:
        run.path.mkdir(parents=True)
        (run.path / "summary.json").write_text(json.dumps(run.summary))
        (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in run.metrics))
    summary = write_report(registry()["bn_convergence"], "quick", runs_root, tmp_path / "results")
    assert {"claim", "verdict", "reason", "criterion", "numbers", "runs", "wall_s", "commit"} <= set(summary)
    assert summary["seeds"] == 5 and summary["verdict"] == "reproduced"
    for test in summary["tests"]:
        assert set(test) >= {"name", "estimate", "ci95", "margin", "outcome", "favoured", "baseline"}
        low, high = test["ci95"]
        assert low <= test["estimate"] <= high and len(test["favoured"]) == 5
    assert [st["key"] for st in summary["statements"]] == ["a_higher_accuracy", "b_stable_inputs"]
    assert all(st["verdict"] == "reproduced" and st["quote"] and st["tests"] for st in summary["statements"])
    text = (tmp_path / "results" / "bn_convergence" / "README.md").read_text()
    assert text.index("## The paper's statements") < text.index("## The paper\n") < text.index("## Results")
    assert "| a_higher_accuracy | “The batch normalized network enjoys the higher test accuracy.”" in text
    assert len(arms(runs)) == 2


def test_the_index_and_answers_cite_each_claims_reference_and_name_disagreeing_profiles(tmp_path):
    """Synthetic summaries: bn_small_batch's reference (cpu) is cited and bolded, the quick profile's other
    verdict is named; before the reference is made the quick profile stands in and the index says so."""
    import shutil

    from normlab.claims import write_index

    def summary(sub, profile, variant, verdict, estimate):
        directory = tmp_path / "bn_small_batch" / sub
        directory.mkdir(parents=True)
        outcome = "holds" if estimate - 1 > 0 else "unclear"
        test = {
            "name": "at batch 2: GN − BN, final test accuracy (points)",
            "estimate": estimate,
            "ci95": [estimate - 1, estimate + 1],
            "outcome": outcome,
        }
        (directory / "summary.json").write_text(
            json.dumps(
                {
                    "claim": "bn_small_batch",
                    "profile": profile,
                    "variant": variant,
                    "verdict": verdict,
                    "tests": [test],
                    "seeds": 5,
                    "wall_s": 60,
                }
            )
        )

    summary("", "quick", "fixed lr", "inconclusive", 0.5)
    summary("cpu", "cpu", "fixed lr", "reproduced", 3.0)
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| [bn_small_batch](bn_small_batch/cpu/README.md) | **cpu** (reference) | **reproduced** |" in text
    assert "| [bn_small_batch](bn_small_batch/README.md) | quick | **inconclusive** |" in text
    cited = "[bn_small_batch](bn_small_batch/cpu/README.md) (cpu profile, 5 seeds: reproduced): at batch 2"
    assert cited in text
    assert "the quick profile (5 seeds, made under the current tests) said inconclusive" in text
    quick = tmp_path / "bn_small_batch" / "summary.json"
    current = quick.read_text()
    quick.write_text(json.dumps({**json.loads(current), "criterion": "a test since replaced"}))
    write_index(tmp_path)
    assert (
        "the quick profile (5 seeds, made under an earlier criterion) said inconclusive"
        in (tmp_path / "README.md").read_text()
    )
    quick.write_text(current)  # as it was, for what follows
    assert "error_vs_batch.png" not in text  # no figure drawn: none linked
    (tmp_path / "bn_small_batch" / "cpu" / "error_vs_batch.png").write_bytes(b"")
    write_index(tmp_path)
    assert (
        "Figure: [error against batch size per norm](bn_small_batch/cpu/error_vs_batch.png)."
        in (tmp_path / "README.md").read_text()
    )
    shutil.rmtree(tmp_path / "bn_small_batch" / "cpu")
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "- bn_small_batch: cpu is its reference, not made yet" in text
    assert "[bn_small_batch](bn_small_batch/README.md) (quick profile, 5 seeds: inconclusive)" in text
    assert "a setup that leaves GN far behind at every batch cannot say whether GN beats BN" in text


@pytest.mark.parametrize(("effect", "outcome"), [(EFFECT, "holds"), (-EFFECT, "contradicted"), (0.0, "unclear")])
def test_the_data_parallel_study_decides_synced_vs_local_bn_by_its_paired_interval(tmp_path, effect, outcome):
    """scripts/distributed_study.py's analysis on synthetic runs: synced BN better, worse or tied with local BN
    by `effect` points; every other variant at 0. Only the synced-vs-local test decides; the rest are reported."""
    from normlab.claims import data_parallel

    runs = {}
    for label, _, overrides in data_parallel.VARIANTS:
        quality = effect if label == "4x4 BN synced" else 0.0
        cfg = config(" ".join(overrides), scheduler="cosine")  # a distinct config per variant: its own noise sign
        runs[label] = [make_run(tmp_path / label, cfg, quality, s) for s in SEEDS]
    result = data_parallel.analyze(runs)
    (decided,) = result["tests"]
    assert decided.outcome == outcome and decided.method == "paired t" and len(decided.favoured) == 5
    assert decided.estimate == pytest.approx(effect, abs=0.5)
    assert len(result["reported"]) == 5 and result["table"].count("| reported |") == 5
    assert result["table"].count("| 5/5 |") == len(data_parallel.VARIANTS)


def test_the_answers_cite_the_data_parallel_study_by_its_intervals_once_it_has_them(tmp_path):
    from normlab.claims import write_index

    (tmp_path / "distributed").mkdir()
    path = tmp_path / "distributed" / "summary.json"
    path.write_text(json.dumps({"4x4 GN": {"final_acc": 0.3}, "wall_s": 60}))  # the one-seed study's summary
    write_index(tmp_path)
    assert "Not re-run under the protocol: no answer yet." in (tmp_path / "README.md").read_text()
    test = {
        "name": "4x4: synced BN − local BN, final test accuracy (points)",
        "estimate": 1.5,
        "ci95": [0.5, 2.5],
        "outcome": "holds",
    }
    path.write_text(json.dumps({"seeds": 5, "tests": [test], "reported": [], "wall_s": 60}))
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "(5 seeds, made under an earlier criterion" in text and "+1.50 [+0.50, +2.50] (holds)" in text
    from normlab.claims.data_parallel import CRITERION

    path.write_text(json.dumps({"seeds": 5, "criterion": CRITERION, "tests": [test], "reported": [], "wall_s": 60}))
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "(5 seeds, 4 processes × 4 images vs 1 × 16): 4x4: synced BN − local BN, final test accuracy" in text
    assert "+1.50 [+0.50, +2.50] (holds)" in text and "no answer yet" not in text


def learning_rate_runs(tmp_path, quality: dict) -> list[Run]:
    """bn_learning_rate's 12 arms, each (norm, mult, act) at quality[(norm, mult)] points (relu and sigmoid)."""
    return [
        make_run(tmp_path, config(norm, lr=0.01 * mult, activation=act), quality[(norm, mult)], seed)
        for act in ("relu", "sigmoid")
        for norm in ("none", "batch")
        for mult in (1, 5, 30)
        for seed in SEEDS
    ]


@pytest.mark.parametrize(
    ("case", "bn_x5", "bn_x30"),
    [
        ("BN at x30 trains worse than BN at x1, better than the plain net (the old test passed it)", 3.0, -2.0),
        ("BN at x5 trains worse than BN at x1", -2.0, 3.0),
        ("neither high lr helps BN", 0.0, 0.0),
    ],
)
def test_bn_learning_rate_is_never_reproduced_when_bn_does_not_gain_from_its_own_higher_rates(
    tmp_path, case, bn_x5, bn_x30
):
    quality = {
        ("none", 1): 0.0,
        ("none", 5): -5.0,
        ("none", 30): -80.0,
        ("batch", 1): 3.0,
        ("batch", 5): 3.0 + bn_x5,
        ("batch", 30): 3.0 + bn_x30,
    }
    analysis = registry()["bn_learning_rate"].analyze(learning_rate_runs(tmp_path, quality), tmp_path)
    assert analysis.verdict != "reproduced", case
    # every BN arm is above the plain net at x1, as in the old test's reading: it would have said reproduced
    assert all(t.outcome == "holds" for t in analysis.reported)


def test_bn_learning_rate_without_a_plain_net_that_learns_is_not_testable(tmp_path):
    quality = {
        ("none", 1): -80.0,
        ("none", 5): -80.0,
        ("none", 30): -80.0,
        ("batch", 1): 0.0,
        ("batch", 5): 3.0,
        ("batch", 30): 3.0,
    }
    analysis = registry()["bn_learning_rate"].analyze(learning_rate_runs(tmp_path, quality), tmp_path)
    assert analysis.verdict == "not_testable"
    (failed,) = [p for p in analysis.preconditions if not p.holds]
    assert failed.value < 20 and failed.required == ">= 20" and analysis.reason.startswith("not testable here")


def test_bn_convergence_against_a_baseline_at_chance_is_not_testable(tmp_path):
    """The `paper` profile at lr 0.1 left the plain net at 11%: BN then wins every test, and says nothing about
    Fig. 1(a), whose baseline learns. The same runs with a baseline that learns are decided."""
    plain = [make_run(tmp_path, config("none"), -75.0, seed) for seed in SEEDS]
    bn = [make_run(tmp_path, config("batch"), EFFECT, seed, drift=0.5) for seed in SEEDS]
    analysis = registry()["bn_convergence"].analyze(plain + bn, tmp_path)
    assert analysis.verdict == "not_testable" and all(t.outcome == "holds" for t in analysis.tests)
    (failed,) = analysis.preconditions
    assert not failed.holds and failed.value < 20 and failed.required == ">= 70"
    assert analysis.reason.startswith("not testable here")
    learns = [make_run(tmp_path, config("none"), 0.0, seed) for seed in SEEDS]
    assert registry()["bn_convergence"].analyze(learns + bn, tmp_path).verdict == "reproduced"


def test_bn_learning_rate_is_not_reproduced_where_the_plain_net_thrives_at_the_high_rate(tmp_path):
    """BN gains from x5 and x30, but so does the net without BN: BN does not *allow* the rate, so neither statement
    reads reproduced (the plain net's test was secondary before, and this world read "reproduced")."""
    quality = {
        ("none", 1): 0.0,
        ("none", 5): 2.0,
        ("none", 30): 2.0,
        ("batch", 1): 3.0,
        ("batch", 5): 6.0,
        ("batch", 30): 6.0,
    }
    analysis = registry()["bn_learning_rate"].analyze(learning_rate_runs(tmp_path, quality), tmp_path)
    assert [f.verdict for f in analysis.findings] == ["not_reproduced", "not_reproduced"]
    plain = [t for f in analysis.findings for t in f.tests if t.name.startswith("no norm")]
    assert [t.outcome for t in plain] == ["contradicted", "contradicted"] and analysis.verdict == "not_reproduced"


@pytest.mark.parametrize(
    ("case", "depth", "verdict"),
    [
        ("IN early, BN in the middle, LN last", 0.03, "reproduced"),
        ("the reverse order", -0.03, "not_reproduced"),
        ("no pattern by depth", 0.0, "inconclusive"),
    ],
)
def test_sn_switches_decides_the_depth_statement_on_its_own(tmp_path, case, depth, verdict):
    """The depth statement (IN early, BN in the middle, LN last) read from the layers at batch 32, while BN's
    importance still falls with the batch: its own verdict, and the claim's only through it."""
    runs = [
        make_run(tmp_path, config("switchable", bs), 0, seed, layers=sn_layers(*shares, depth=depth))
        for bs, shares in ((32, (0.5, 0.5)), (8, (0.5, 0.5)), (2, (0.4, 0.35)))
        for seed in SEEDS
    ]
    analysis = registry()["sn_switches"].analyze(runs, tmp_path)
    by_batch, by_depth = analysis.findings
    assert by_batch.verdict == "reproduced" and by_depth.verdict == verdict, case
    assert by_depth.statement.key == "b_in_early_bn_middle_ln_last" and len(by_depth.tests) == 3


def test_sn_switches_finer_point_is_shown_never_a_veto(tmp_path):
    """BN's importance falls with the batch (the paper's statement) while its variance weight stays above its mean
    weight at batch 2 (the finer point, false here): reproduced, the finer point contradicted beside it."""
    runs = [
        make_run(tmp_path, config("switchable", bs), 0, seed, layers=sn_layers(*shares))
        for bs, shares in ((32, (0.5, 0.5)), (8, (0.5, 0.5)), (2, (0.4, 0.45)))
        for seed in SEEDS
    ]
    analysis = registry()["sn_switches"].analyze(runs, tmp_path)
    main, finer = analysis.tests[:2]
    assert analysis.verdict == "reproduced" and main.outcome == "holds"
    assert finer.statement == "secondary" and finer.outcome == "contradicted"


@pytest.mark.parametrize(
    ("quality", "shares32", "failed"),
    [
        (-60.0, (0.5, 0.5), "test accuracy"),  # every arm near chance (20-30%): the switches are set by noise
        (0.0, (0.34, 0.34), "departure"),  # the switches at batch 32 barely left 1/3
    ],
)
def test_sn_switches_is_not_testable_where_sn_does_not_learn_or_its_switches_never_move(
    tmp_path, quality, shares32, failed
):
    """BN's importance still falls with the batch in these runs, so only a precondition stops "reproduced"."""
    runs = [
        make_run(tmp_path, config("switchable", bs), quality, seed, layers=sn_layers(*shares))
        for bs, shares in ((32, shares32), (8, shares32), (2, (0.2, 0.25)))
        for seed in SEEDS
    ]
    analysis = registry()["sn_switches"].analyze(runs, tmp_path)
    assert analysis.tests[0].outcome == "holds"
    assert analysis.verdict == "not_testable" and analysis.reason.startswith("not testable here")
    assert [p.holds for p in analysis.preconditions] == [failed != "test accuracy", failed != "departure"]


def test_bin_gates_is_not_testable_against_a_bn_that_does_not_learn(tmp_path):
    """BIN beats a BN stuck near chance by far: no verdict on the paper's +0.57 points."""
    runs = []
    for norm, quality in (("batch", -60.0), ("instance", -60.0), ("batch_instance", -50.0)):
        layers = {layer: {"gate_mean": 0.9} for layer in LAYERS} if norm == "batch_instance" else None
        runs += [make_run(tmp_path, config(norm), quality, seed, layers=layers) for seed in SEEDS]
    analysis = registry()["bin_gates"].analyze(runs, tmp_path)
    assert analysis.tests[0].outcome == "holds" and analysis.verdict == "not_testable"
    assert analysis.reason.startswith("not testable here: BN learns")


def test_a_mechanism_check_is_listed_apart_and_never_called_reproduced(tmp_path):
    from normlab.claims import write_index

    directory = tmp_path / "in_contrast"
    directory.mkdir()
    test = {
        "name": "mechanism: accuracy spread across contrast, BN − IN (points)",
        "estimate": 30.0,
        "ci95": [28.0, 32.0],
        "outcome": "holds",
    }
    (directory / "summary.json").write_text(
        json.dumps(
            {
                "claim": "in_contrast",
                "profile": "quick",
                "verdict": "reproduced",
                "tests": [test],
                "seeds": 5,
                "wall_s": 60,
            }
        )
    )
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    reproductions, checks = text.split("**Mechanism checks**")
    assert "in_contrast/README.md" not in reproductions.split("## What the runs say")[0].split("| claim |")[1]
    assert "| [in_contrast](in_contrast/README.md) | **quick** (reference) | **mechanism confirmed** |" in checks
    assert "(quick profile, 5 seeds: mechanism confirmed)" in text and "seeds: reproduced)" not in text


def test_a_test_without_runs_reads_back_from_summary_json():
    """A test whose arm was not run (bn_small_batch's steps profile runs no LN): NaN is saved as null."""
    from normlab.claims.base import fmt_test

    line = fmt_test({"name": "GN − LN", "estimate": None, "ci95": [None, None], "outcome": "unclear"})
    assert line == "GN − LN: n/a none (unclear)"


def test_a_test_without_an_interval_reads_back_from_summary_json():
    """One seed gives an infinite interval, which summary.json stores as null: the index still prints it."""
    from normlab.claims import fmt_test

    assert (
        fmt_test({"name": "x", "estimate": 1.0, "ci95": [None, None], "outcome": "unclear"})
        == "x: +1.00 none (unclear)"
    )


def test_the_data_parallel_pairs_of_one_function_are_equivalence_tests(tmp_path):
    """ "The same function" is tested as equality (TOST, ±1 point): a tie holds, a 3-point gap is contradicted."""
    from normlab.claims.data_parallel import VARIANTS, analyze

    quality = {"1x16 GN": 3.0, "4x4 BN synced": 1.0}
    runs = {
        label: [make_run(tmp_path, config(label.replace(" ", "_")), quality.get(label, 0.0), seed) for seed in SEEDS]
        for label, _, _ in VARIANTS
    }
    result = analyze(runs)
    synced, gn = (next(t for t in result["reported"] if t.name.startswith(start)) for start in ("synced", "GN at"))
    assert synced.method.startswith("paired TOST") and synced.margin == 1.0
    assert gn.outcome == "contradicted" and gn.estimate == pytest.approx(-3.0, abs=0.5)
    assert result["tests"][0].outcome == "holds"  # synced BN 1 point above local BN


def test_wn_meanbn_in_a_net_far_from_the_papers_error_is_not_testable(tmp_path):
    """Every arm at ~45% test error (the cpu reference's regime; the paper's best 7.31%): a clear WN+meanBN win
    still gives "not testable here", with the factor named."""
    runs = build("wn_meanbn", EFFECT, tmp_path)
    assert registry()["wn_meanbn"].analyze(runs, tmp_path).verdict == "reproduced"
    far = [
        make_run(
            tmp_path,
            {**r.config, "seed": None},
            -35 + (EFFECT if r.config["norm"]["name"] == "weight_meanbn" else 0),
            r.seed,
        )
        for r in runs
    ]
    analysis = registry()["wn_meanbn"].analyze(far, tmp_path)
    assert analysis.verdict == "not_testable" and analysis.tests[0].outcome == "holds"
    assert "not testable here: the best arm's test error is" in analysis.reason and not analysis.preconditions[0].holds


def test_archived_run_records_beside_a_report_are_not_reports(tmp_path):
    """results/<claim>/<profile>/runs/ (scripts/archive_runs.py) holds runs' summary.json files; the index skips
    them."""
    from normlab.claims import write_index

    run = tmp_path / "bn_small_batch" / "cpu" / "runs" / "bn_small_batch_cpu" / "cifar10-cnn-batch-bs32-lr0.1-s1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "completed", "config": {}, "test_acc": 0.7}))
    write_index(tmp_path)
    assert "bn_small_batch: cpu is its reference, not made yet" in (tmp_path / "README.md").read_text()


def test_a_reports_criteria_are_dated_by_what_can_change_a_verdict(tmp_path):
    """criteria_commit: a change to a claim's descriptive fields or docstrings after the runs leaves them judged
    under the criteria they were made under; a changed margin (or protocol) does not."""
    import subprocess

    from normlab.claims.base import criteria_commit

    module = tmp_path / "src" / "normlab" / "claims" / "toy.py"
    module.parent.mkdir(parents=True)
    (tmp_path / "src" / "normlab" / "protocol.py").write_text("ALPHA = 0.05\n")

    def commit(margin: float, why: str) -> str:
        module.write_text(f'"""A toy claim."""\nMARGIN = {margin}\nCLAIM = Claim(name="toy", reference_why="{why}")\n')
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", why], cwd=tmp_path, check=True)
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    fixed = commit(0.0, "criteria")
    runs = commit(0.0, "the runs were made here")
    commit(0.0, "a new reason, after the runs")
    assert criteria_commit("toy", runs, tmp_path) == (
        fixed,
        f"Criteria (tests, margins, preconditions) last changed at {fixed}, before the runs.",
        False,
    )
    changed = commit(1.0, "a margin moved after the runs")
    when, note, after = criteria_commit("toy", runs, tmp_path)
    assert when == changed and after and "decide only on fresh seeds" in note
    back = commit(0.0, "the margin moved back")  # the runs' criteria again: dated at or before the runs
    assert criteria_commit("toy", runs, tmp_path)[0] == fixed and criteria_commit("toy", back, tmp_path)[0] == back
    module.write_text(module.read_text().replace("0.0", "2.0"))  # not committed: no commit holds these criteria
    assert criteria_commit("toy", runs, tmp_path)[0] == "unknown"


def test_the_cost_line_quotes_the_tradeoffs_own_run_over_the_whole_bench(tmp_path):
    """`bench.py --only tradeoff` writes bench-tradeoff.json beside an older whole run's bench.json: the answers
    quote the ratios its table shows."""
    from normlab.claims.answers import answers

    (tmp_path / "bench").mkdir()
    for name, ratio in (("bench.json", 0.5), ("bench-tradeoff.json", 0.74)):
        rows = [{"norm": "none", "ratio_to_bn": ratio}, {"norm": "batch", "ratio_to_bn": 1.0}]
        (tmp_path / "bench" / name).write_text(json.dumps({"tradeoff": rows}))
    assert "relative to BN: none 0.74x, batch 1.00x." in answers(tmp_path, registry())
    (tmp_path / "bench" / "bench-tradeoff.json").unlink()
    assert "relative to BN: none 0.50x, batch 1.00x." in answers(tmp_path, registry())


def test_a_reports_criteria_history_marks_the_changes_made_after_its_runs(tmp_path):
    """criteria_history: each commit that moved the criteria, newest first; one after the runs' commit is marked
    (a re-analysis), a change of a descriptive field is not a row."""
    import subprocess

    from normlab.claims.base import criteria_history

    module = tmp_path / "src" / "normlab" / "claims" / "toy.py"
    module.parent.mkdir(parents=True)
    (tmp_path / "src" / "normlab" / "protocol.py").write_text("ALPHA = 0.05\n")

    def commit(margin: float, why: str) -> str:
        module.write_text(f'MARGIN = {margin}\nCLAIM = Claim(name="toy", reference_why="{why}")\n')
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", why], cwd=tmp_path, check=True)
        head = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(head, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    first = commit(0.0, "criteria")
    runs = commit(0.0, "the runs were made here")
    later = commit(1.0, "a margin moved after the runs")
    commit(1.0, "only the reason changed")
    table = criteria_history("toy", runs, tmp_path)
    rows = [line for line in table.splitlines() if line.startswith(f"| {first}") or line.startswith(f"| {later}")]
    assert rows[0].startswith(f"| {later} |") and rows[0].endswith("| **after these runs** |")
    assert rows[1].startswith(f"| {first} |") and rows[1].endswith("| before |")
    assert "only the reason changed" not in table and "the runs were made here" not in table


def test_bin_gates_is_not_testable_where_the_gates_never_left_bn(tmp_path):
    """Every gate stays at 1 (BIN computes BN) and BIN ends higher: the gain is not BIN's mixing, so the statement
    is not testable here; the same runs with gates that moved read reproduced."""
    runs = build("bin_gates", EFFECT, tmp_path)
    stuck = [
        Run(r.path, {**r.summary, "norm_layers": {layer: {"gate_mean": 1.0} for layer in LAYERS}}, r.metrics)
        if r.config["norm"]["name"] == "batch_instance"
        else r
        for r in runs
    ]
    analysis = registry()["bin_gates"].analyze(stuck, tmp_path)
    assert analysis.tests[0].outcome == "holds" and analysis.findings[0].verdict == "not_testable"
    assert analysis.verdict == "not_testable"
    assert registry()["bin_gates"].analyze(runs, tmp_path).verdict == "reproduced"


def smoothness_runs(tmp_path, plain=5.0, noisy=5.0, bn=5.0, bn_levels=None, noisy_levels=None) -> list[Run]:
    """bn_smoothness's three arms: each arm's quality (points) and Fig. 4 levels (no norm: ROUGH)."""
    arms_ = (("none", plain, ROUGH), ("batch", bn, bn_levels or ROUGH), ("batch_noisy", noisy, noisy_levels or ROUGH))
    return [
        make_run(tmp_path, config(norm), quality, seed, landscape=levels)
        for norm, quality, levels in arms_
        for seed in SEEDS
    ]


SMOOTH = smoothed(ROUGH, 1.0)  # e times smoother than no norm in every measurement


@pytest.mark.parametrize(
    ("case", "kw", "verdicts"),
    [
        ("all hold", {"bn_levels": SMOOTH, "noisy_levels": SMOOTH, "plain": 2.0}, ("reproduced",) * 3),
        (
            "(a) BN's loss no flatter along the gradient",
            {"bn_levels": smoothed(ROUGH, 1.0, ("grad_change", "beta")), "noisy_levels": SMOOTH, "plain": 2.0},
            ("not_reproduced", "reproduced", "reproduced"),
        ),
        (
            "(b) BN's gradients no more predictive",
            {"bn_levels": smoothed(ROUGH, 1.0, ("loss_range",)), "noisy_levels": SMOOTH, "plain": 2.0},
            ("reproduced", "not_reproduced", "reproduced"),
        ),
        (
            "(c) noisy BN trains 3 points below BN",
            {"bn_levels": SMOOTH, "noisy_levels": SMOOTH, "noisy": 2.0, "plain": 2.0},
            ("reproduced", "reproduced", "not_reproduced"),
        ),
        (
            "(c) noisy BN no better than no norm",
            {"bn_levels": SMOOTH, "noisy_levels": SMOOTH, "plain": 5.0, "noisy": 5.0, "bn": 5.0},
            ("reproduced", "reproduced", "inconclusive"),
        ),
    ],
)
def test_bn_smoothness_decides_each_statement_and_each_fails_alone(tmp_path, case, kw, verdicts):
    from normlab.claims import bn_smoothness

    analysis = bn_smoothness.analyze(smoothness_runs(tmp_path, **kw), tmp_path)
    assert tuple(f.verdict for f in analysis.findings) == verdicts, case
    assert (tmp_path / "fig4_landscape.png").is_file()


def test_bn_smoothness_shows_a_smoothness_the_noise_undid_as_its_reason_failing_never_as_a_veto(tmp_path):
    """Santurkar et al.'s reason: the smoothness survives the noise. Where noisy BN trains as well as BN but is as
    rough as no norm, the secondary test says so (contradicted), and the statements still decide."""
    from normlab.claims import bn_smoothness

    runs = smoothness_runs(tmp_path, plain=2.0, bn=5.0, noisy=5.0, bn_levels=SMOOTH, noisy_levels=ROUGH)
    analysis = bn_smoothness.analyze(runs, tmp_path)
    reason = next(t for t in analysis.tests if "noisy BN)" in t.name)
    assert reason.statement == "secondary" and reason.outcome == "contradicted"
    assert analysis.verdict == "reproduced"


def test_bn_smoothness_without_a_plain_net_that_learns_is_not_testable(tmp_path):
    from normlab.claims import bn_smoothness

    runs = smoothness_runs(tmp_path, plain=-40.0, bn_levels=SMOOTH, noisy_levels=SMOOTH)
    assert bn_smoothness.analyze(runs, tmp_path).verdict == "not_testable"


def regularization_runs(tmp_path, gaps: dict) -> list[Run]:
    """bn_regularization's four arms, each with its generalization gap (points) `gaps[(norm, batch)]`."""
    return [
        make_run(tmp_path, config(norm, bs), 0.0, seed, gap=gaps[(norm, bs)]) for norm, bs in gaps for seed in SEEDS
    ]


@pytest.mark.parametrize(
    ("case", "gaps", "verdicts"),
    [
        ("all hold", (5.0, 4.0, 4.0, 2.0), ("reproduced",) * 3),
        ("(a) BN widens the gap", (5.0, 5.5, 4.0, 3.0), ("not_reproduced", "reproduced", "reproduced")),
        ("(b) BN narrows it by 4 points", (5.0, 1.0, 8.0, 2.0), ("reproduced", "not_reproduced", "reproduced")),
        ("(c) no more at the small batch", (5.0, 4.0, 4.0, 4.0), ("reproduced", "reproduced", "not_reproduced")),
    ],
)
def test_bn_regularization_decides_each_statement_and_each_fails_alone(tmp_path, case, gaps, verdicts):
    """gaps: no norm and BN at batch 64, then at batch 8."""
    from normlab.claims import bn_regularization

    keys = (("none", 64), ("batch", 64), ("none", 8), ("batch", 8))
    analysis = bn_regularization.analyze(regularization_runs(tmp_path, dict(zip(keys, gaps))), tmp_path)
    assert tuple(f.verdict for f in analysis.findings) == verdicts, case


def test_bn_regularization_needs_a_plain_net_that_overfits_and_gives_a_diverged_run_no_gap(tmp_path):
    from normlab.claims import bn_regularization

    keys = (("none", 64), ("batch", 64), ("none", 8), ("batch", 8))
    runs = regularization_runs(tmp_path, dict(zip(keys, (0.5, 0.0, 0.5, 0.0))))
    assert bn_regularization.analyze(runs, tmp_path).verdict == "not_testable"
    for diverged in ("none", "batch"):
        runs = regularization_runs(tmp_path, dict(zip(keys, (5.0, 4.0, 4.0, 2.0))))
        for run in runs:
            if run.config["norm"]["name"] == diverged and run.config["batch_size"] == 64:
                run.summary["status"] = "diverged"
        assert bn_regularization.analyze(runs, tmp_path).verdict != "reproduced", diverged


def test_bn_regularization_with_a_run_that_collapsed_late_is_not_testable(tmp_path):
    """A plain run that collapsed to chance in its last evaluations (as 3 of 10 did at lr 0.1 over 60 epochs): its
    gap of about 0 measures nothing, and the tests would count it."""
    from normlab.claims import bn_regularization

    keys = (("none", 64), ("batch", 64), ("none", 8), ("batch", 8))
    runs = regularization_runs(tmp_path, dict(zip(keys, (5.0, 4.0, 4.0, 2.0))))
    assert bn_regularization.analyze(runs, tmp_path).verdict == "reproduced"
    collapsed = next(r for r in runs if r.config["norm"]["name"] == "none")
    for row in collapsed.metrics[-2:]:
        row.update(test_acc=0.10, val_acc=0.10, trainset_acc=0.10)
    analysis = bn_regularization.analyze(runs, tmp_path)
    assert analysis.verdict == "not_testable" and "collapsed" in analysis.reason
    assert [p.holds for p in analysis.preconditions] == [True, False]


def test_typing_a_claim_module_changes_none_of_its_criteria():
    """Annotations move no verdict: a claim typed after its runs keeps their criteria; a changed default does not."""
    from normlab.claims.base import criteria_source

    plain = "def gap(run, k=5):\n    return run.x - k\n"
    typed = "def gap(run: dict, k: int = 5) -> float:\n    return run.x - k\n"
    assert criteria_source(plain) == criteria_source(typed)
    assert criteria_source("MARGIN: float = 0.5\n") == criteria_source("MARGIN: int = 0.5\n")
    assert criteria_source(plain) != criteria_source(plain.replace("k=5", "k=4"))
    assert criteria_source("MARGIN: float = 0.5\n") != criteria_source("MARGIN: float = 0.4\n")


def test_bn_smoothness_compares_landscapes_only_while_every_arm_learns(tmp_path):
    """A plain net that collapses to chance halfway has the flat landscape of a dead net: counted, it would make no
    norm look smoother than BN; compared where every arm still learns, BN's smoothness shows."""
    from normlab.claims import bn_smoothness

    runs = smoothness_runs(tmp_path, plain=5.0, bn=8.0, noisy=8.0, bn_levels=SMOOTH, noisy_levels=SMOOTH)
    for run in runs:
        if run.config["norm"]["name"] == "none":
            for record in run.metrics:
                if record["step"] > 700:  # dead: chance accuracy, a gradient that no longer changes
                    record["val_acc"] = record["test_acc"] = 0.1
                    record["landscape"] = {k: v / 100 for k, v in record["landscape"].items()}
    analysis = bn_smoothness.analyze(runs, tmp_path)
    assert [f.verdict for f in analysis.findings[:2]] == ["reproduced", "reproduced"]
    assert "while every arm learns" in analysis.tests[0].name
    assert all(p.holds for p in analysis.preconditions), analysis.preconditions
    for run in runs:  # collapsed from the start of the common window on: too few evaluations to compare
        if run.config["norm"]["name"] == "none":
            for record in run.metrics:
                if record["step"] > 500:
                    record["val_acc"] = 0.1
    assert bn_smoothness.analyze(runs, tmp_path).verdict == "not_testable"


ARCHIVES = sorted(p for p in (ROOT / "results").glob("*/**/runs") if (p.parent / "summary.json").is_file())


def committed_summary(report) -> dict:
    path = report / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def archived_reports():
    """(archive, report dir, claim, profile) of every committed report whose runs are archived beside it: the
    profile's own report and its tuned variant. (Reports made before the claims were statements, which the index
    marks so, are not: bn_small_batch's tuned cpu report of 2026-11-24 ran batch 32 and 2 only.)"""
    for archive in ARCHIVES:
        parts = archive.parent.relative_to(ROOT / "results").parts
        claim, profile = parts[0], parts[1] if len(parts) > 1 else "quick"
        for report in (archive.parent, archive.parent / "tuned"):
            if "statements" in committed_summary(report):
                yield pytest.param(archive, report, claim, profile, id=str(report.relative_to(ROOT / "results")))


@pytest.mark.slow  # every archived reference analysed again (~1 min)
@pytest.mark.parametrize("archive,report,claim,profile", list(archived_reports()))
def test_every_archived_report_is_what_todays_code_makes_of_its_runs(
    tmp_path, monkeypatch, archive, report, claim, profile
):
    """The committed verdicts are today's code's: each report rebuilt from its archived runs gives the same
    verdict, statements and test estimates. A change anywhere (a claim, the protocol, runs.py's measures, a shared
    helper) that moves a committed number fails here, until the report is made again and says how it was made."""
    from normlab.claims import experiment_name, matching, profile_jobs
    from normlab.cli import CONF
    from normlab.config import identity
    from normlab.runs import load_runs

    monkeypatch.setattr(in_contrast, "contrast_accuracies", contrast_accuracies)  # its archived contrast.json
    committed = committed_summary(report)
    jobs = [c.to_dict() for _, c in profile_jobs(registry()[claim], profile, committed["overrides"], CONF)]
    runs = load_runs(archive / experiment_name(claim, profile))
    chosen, _ = matching(runs, jobs)
    if report.name == "tuned":  # each arm at its selected lr: the run of the job's arm and seed at another lr
        by_arm_and_seed: dict[str, list] = {}
        for run in runs:
            by_arm_and_seed.setdefault(identity({**run.config, "lr": None}), []).append(run)
        fixed = {id(r) for r in chosen}
        chosen = [
            next((r for r in found if id(r) not in fixed), found[0])
            for found in (by_arm_and_seed[identity({**job, "lr": None})] for job in jobs)
        ]
    analysis = registry()[claim].analyze(chosen, tmp_path)
    assert analysis.verdict == committed["verdict"]
    assert [f.verdict for f in analysis.findings] == [s["verdict"] for s in committed["statements"]]
    made = {t.name: t.estimate for t in [*analysis.tests, *analysis.reported]}
    kept = {t["name"]: t["estimate"] for t in [*committed["tests"], *committed["reported"]]}
    assert made.keys() == kept.keys()
    for name, estimate in kept.items():
        if estimate is None:  # (NaN, as JSON writes it)
            assert math.isnan(made[name]), name
        else:
            assert made[name] == pytest.approx(estimate, rel=1e-9), name
