"""The statistical protocol on synthetic runs whose right answer is known: a clear win, a clear loss, a tie within
noise, targets never reached by one or both arms, a diverged run; the intervals against scipy's own and against a
formula written out here."""

import math

import numpy as np
import pytest
from scipy import stats

from normlab.protocol import (
    Statement,
    claim_verdict,
    compare,
    compare_steps,
    decide,
    endpoint,
    precondition,
    steps_to_target,
    verdict,
)

SEEDS = 5


def arms(delta, noise, seed=0, shared=1.0):
    """Per-seed accuracies of two arms run on the same seeds: a seed effect both share, plus independent noise."""
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0, shared, SEEDS)
    base = 70 + seed_effect + rng.normal(0, noise, SEEDS)
    return (base + delta + rng.normal(0, noise, SEEDS)).tolist(), base.tolist()


def test_a_clear_win_holds_a_clear_loss_is_contradicted_a_tie_is_unclear():
    win = compare("win", *arms(delta=3.0, noise=0.2), margin=0.0)
    loss = compare("loss", *arms(delta=-3.0, noise=0.2), margin=0.0)
    tie = compare("tie", *arms(delta=0.0, noise=1.0, seed=3), margin=0.0)
    assert (win.outcome, loss.outcome, tie.outcome) == ("holds", "contradicted", "unclear")
    assert win.ci95[0] > 0 and loss.ci95[1] < 0 and tie.ci95[0] < 0 < tie.ci95[1]
    assert verdict([win]) == "reproduced"
    assert verdict([win, tie]) == "inconclusive"
    assert verdict([win, tie, loss]) == "not_reproduced"
    assert verdict([]) == "inconclusive"


def test_a_margin_decides_non_inferiority_and_superiority():
    favoured, baseline = arms(delta=0.5, noise=0.1)
    assert compare("superior by > 0", favoured, baseline, margin=0.0).outcome == "holds"
    assert compare("superior by > 2 points", favoured, baseline, margin=2.0).outcome == "contradicted"
    assert compare("not worse by > 1 point", favoured, baseline, margin=-1.0).outcome == "holds"


def test_the_paired_interval_is_the_t_interval_of_the_differences():
    favoured, baseline = arms(delta=1.0, noise=0.5, seed=7)
    diff = np.subtract(favoured, baseline)
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    result = compare("paired", favoured, baseline)
    assert result.method == "paired t"
    assert result.ci95 == pytest.approx((diff.mean() - half, diff.mean() + half))
    welch = compare("welch", favoured, baseline, paired=False)
    assert welch.method == "Welch t"
    assert welch.ci95 == pytest.approx(stats.ttest_ind(favoured, baseline, equal_var=False).confidence_interval())
    # the seed effect both arms share cancels in the paired interval, not in Welch's
    assert result.ci95[1] - result.ci95[0] < welch.ci95[1] - welch.ci95[0]


def test_a_paired_test_needs_the_same_seeds_and_a_diverged_run_gives_no_interval():
    with pytest.raises(ValueError, match="same seeds"):
        compare("x", [1, 2, 3], [1, 2])
    diverged = compare("x", [0.9, math.nan, 0.91], [0.8, 0.82, 0.81])
    assert diverged.outcome == "unclear" and diverged.method.startswith("no interval")
    one_seed = compare("x", [0.9], [0.8])
    assert one_seed.outcome == "unclear" and "fewer than 2" in one_seed.method


def test_steps_to_target_interpolates_and_censors():
    steps, acc = [100, 200, 300, 400], [0.5, 0.9, 0.96, 0.98]
    assert steps_to_target(steps, acc, 0.95) == pytest.approx(200 + (0.95 - 0.9) / (0.96 - 0.9) * 100)
    assert steps_to_target(steps, acc, 0.4) == 100
    assert steps_to_target(steps, acc, 0.99) == math.inf


def test_censored_runs_allow_only_the_conclusions_their_bounds_support():
    fast, slow = [1000, 1100, 1050, 990, 1020], [3000, 3100, 2900, 3050, 2950]
    assert compare_steps("clear", fast, slow, budget=5000).outcome == "holds"
    # the baseline never gets there: its steps are lower bounds, a win by the paper's arm still holds
    censored_baseline = compare_steps("base censored", fast, [math.inf] * 5, budget=5000)
    assert censored_baseline.outcome == "holds" and "never reached" in censored_baseline.note
    # the paper's arm never gets there while the baseline does: contradicted
    assert compare_steps("favoured censored", [math.inf] * 5, fast, budget=5000).outcome == "contradicted"
    # neither ever gets there ("never < never"): nothing can be claimed
    neither = compare_steps("neither", [math.inf] * 5, [math.inf] * 5, budget=5000)
    assert neither.outcome == "unclear"
    # the paper's arm is censored in one seed: a 'holds' would rest on a bound in the wrong direction
    mixed = compare_steps("one censored", [1000, 1100, math.inf, 990, 1020], slow, budget=5000)
    assert mixed.outcome == "unclear"


def test_endpoint_averages_the_last_evaluations():
    assert endpoint([0.1, 0.5, 0.9, 0.8, 0.7], k=3) == pytest.approx(0.8)
    assert endpoint([0.5], k=5) == 0.5
    assert math.isnan(endpoint([]))


def test_equivalence_holds_inside_the_bounds_is_contradicted_outside_and_unclear_when_noisy():
    from normlab.protocol import equivalent

    base = [50.0, 52.0, 49.0, 51.0, 50.5]
    flat = equivalent("flat", [b + d for b, d in zip(base, (0.1, -0.1, 0.2, 0.0, -0.2), strict=True)], base, 1.0)
    assert flat.outcome == "holds" and -1 < flat.ci95[0] < flat.ci95[1] < 1
    moved = equivalent("moved", [b + 3 + d for b, d in zip(base, (0.1, -0.1, 0.2, 0, -0.2), strict=True)], base, 1.0)
    assert moved.outcome == "contradicted"
    noisy = equivalent("noisy", [b + d for b, d in zip(base, (2.0, -2.5, 1.5, -1.0, 0.5), strict=True)], base, 1.0)
    assert noisy.outcome == "unclear" and noisy.detectable > 1.0
    # the interval is the 90% paired t interval (two one-sided tests at 5%)
    low, high = stats.ttest_rel(noisy.favoured, noisy.baseline).confidence_interval(0.90)
    assert noisy.ci95 == pytest.approx((low, high))


def test_the_detectable_effect_is_the_one_detected_with_80_percent_power():
    """Simulated paired experiments with the true effect at the stated detectable size: about 80% hold."""
    rng = np.random.default_rng(0)
    sd, n = 1.0, 5
    sample = rng.normal(0, sd, n)
    quantiles = stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)
    detectable = compare("d", list(sample), [0.0] * n).detectable  # from the sample's own spread
    assert detectable == pytest.approx(quantiles * np.std(sample, ddof=1) / np.sqrt(n))
    expected = quantiles * sd / np.sqrt(n)
    holds = 0
    for _ in range(2000):
        diff = rng.normal(expected, sd, n)
        holds += compare("x", list(diff), [0.0] * n).outcome == "holds"
    assert 0.72 < holds / 2000 < 0.88


def test_a_failed_precondition_makes_the_verdict_not_testable_and_secondary_tests_never_decide():
    from normlab.protocol import precondition, verdict

    held = compare("a", [3.0, 3.1, 2.9, 3.2, 2.8], [0.0] * 5)
    against = compare("b", [-3.0, -3.1, -2.9, -3.2, -2.8], [0.0] * 5)
    assert verdict([held]) == "reproduced" and verdict([held, against]) == "not_reproduced"
    assert verdict([held, against.as_secondary()]) == "reproduced"
    gap = precondition("GN − BN at batch 32 (points)", -13.5, at_least=-2.0, need="a longer schedule")
    assert not gap.holds and gap.required == ">= -2"
    assert verdict([held], [gap]) == "not_testable"
    assert precondition("x", float("nan"), at_least=0).holds is False


def test_a_precondition_scoped_to_one_test_leaves_the_others_deciding():
    from normlab.protocol import NOT_TESTABLE, gate, precondition, verdict

    held = compare("mechanism", [3.0, 3.1, 2.9, 3.2, 2.8], [0.0] * 5)
    against = compare("mechanism", [-3.0, -3.1, -2.9, -3.2, -2.8], [0.0] * 5)
    outcome = compare("outcome", [1.0, 1.2, 0.9, 1.1, 1.0], [0.0] * 5)
    failed = precondition("gap", -13.5, at_least=-2.0, scope="outcome")
    met = precondition("gap", -0.5, at_least=-2.0, scope="outcome")
    gated = gate(outcome, failed)
    assert gated.outcome == NOT_TESTABLE and gated.estimate == outcome.estimate and "-13.50" in gated.note
    assert gate(outcome, met) == outcome
    assert verdict([held, gate(outcome, met)], [met]) == "reproduced"
    assert verdict([held, gated], [failed]) == "not_testable"  # the outcome is not testable, the rest holds
    assert verdict([against, gated], [failed]) == "not_reproduced"  # a tested part contradicted still decides
    assert verdict([held, gated.as_secondary()], [failed]) == "reproduced"
    with pytest.raises(ValueError, match="scoped to 'outcome', not 'mechanism'"):
        gate(held, failed)


STATEMENT = Statement("a_key", "the paper's sentence", "Fig. 1", "a − b > 0")


def test_a_statement_is_decided_by_its_own_tests_and_the_claim_by_its_statements():
    """decide(): the protocol's rule over one statement's tests (a failed precondition of the statement: not
    testable); claim_verdict(): not reproduced if any statement is, not testable if any is, reproduced if all are."""
    win = compare("win", [5.0, 5.2, 4.9, 5.1, 5.3], [0.0, 0.1, -0.1, 0.2, 0.0])
    loss = compare("loss", [0.0, 0.1, -0.1, 0.2, 0.0], [5.0, 5.2, 4.9, 5.1, 5.3])
    tie = compare("tie", [0.0, 1.0, -1.0, 0.5, -0.5], [0.1, -0.9, 1.0, -0.4, 0.3])
    assert decide(STATEMENT, [win]).verdict == "reproduced"
    assert decide(STATEMENT, [win, loss]).verdict == "not_reproduced"
    assert decide(STATEMENT, [win, tie]).verdict == "inconclusive"
    failed = precondition("GN competes", 1.44, at_most=1.25, scope="a_key")
    assert decide(STATEMENT, [win], [failed]).verdict == "not_testable"
    assert decide(STATEMENT, [win.as_secondary()]).tests[0].statement == "primary"
    with pytest.raises(ValueError, match="no test"):
        decide(STATEMENT, [])
    yes, no = decide(STATEMENT, [win]), decide(STATEMENT, [loss])
    untestable, unclear = decide(STATEMENT, [win], [failed]), decide(STATEMENT, [tie])
    assert claim_verdict([yes, yes]) == "reproduced"
    assert claim_verdict([yes, untestable, no]) == "not_reproduced"
    assert claim_verdict([yes, untestable, unclear]) == "not_testable"
    assert claim_verdict([yes, unclear]) == "inconclusive"
    assert claim_verdict([yes], [precondition("the baseline learns", 10, at_least=20)]) == "not_testable"
