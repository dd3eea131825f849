"""The statistical protocol every claim's verdict goes through, written once (results/README.md states it).

A claim is a list of tests. Each test is a difference in the paper's direction (positive = what the paper claims),
e.g. accuracy of the paper's method minus the baseline's, over seeds; its 95% interval comes from scipy.stats: a
paired t interval where both arms ran the same seeds, else Welch's. It is compared with a margin stated before
running: the test **holds** if the interval's low end is above the margin, is **contradicted** if its high end is
below it, and is **unclear** otherwise. A claim is **reproduced** if all its tests hold, **not reproduced** if any
is contradicted, **inconclusive** otherwise.

Where the hypothesis is equality ("flat", "the same"), a test is an **equivalence** test (`equivalent`): two
one-sided tests against a bound ±δ stated in the claim's code, i.e. the 90% interval inside [−δ, +δ]. Every
test reports the smallest effect its seeds could detect (`detectable`: 80% power at the 5% level, from the spread
of the paired differences and the t quantiles), and a claim declares **preconditions** (`Precondition`): the
conditions under which its tests can speak at all. A failed precondition makes the verdict **not testable
here**, whatever the tests say; one scoped to a single test (`gate`) makes that test **not testable**, and the
others still decide (a contradicted one still gives "not reproduced"). Tests are primary (they decide) or
secondary (shown with their own outcome, never deciding).

A claim is the paper's **statements** (`Statement`: its sentence, quoted, with the figure or table it comes from),
each decided by its own primary tests and preconditions (`decide`: the rule above, per statement). The claim's one
word follows from its statements' verdicts by the same rule (`claim_verdict`): not reproduced if any statement is
not reproduced, not testable here if any is not testable, reproduced if all are reproduced, inconclusive otherwise;
a failed precondition of the whole claim makes it not testable here. Reports show the statements first.

Multiplicity, stated once: a statement reads **reproduced** only if every one of its primary tests holds, an
intersection-union test whose error rate is each test's 2.5% (one-sided) with no adjustment (Berger 1982). It reads
**not reproduced** if any test is contradicted: with k primary tests, each of whose true effects sits exactly at
its margin, that fires by chance with probability up to k x 2.5% (7.5% for a statement of three tests, as
bn_learning_rate's). No adjustment is made (a Holm step-down on the contradicting side is the next step); reports
show every test's interval, so a contradiction carried by one test near its margin can be read as such.

Endpoints are read off whole curves, not one evaluation: the mean of the last k evaluations (`endpoint`), and
steps-to-target interpolated between evaluations (`steps_to_target`), with runs that never reach the target
censored explicitly (`compare_steps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
OUTCOMES = ("holds", "contradicted", "unclear")
NOT_TESTABLE = "not testable"  # the outcome of a test whose precondition failed (`gate`)
VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_testable")
POWER = 0.80  # the power at which a test's `detectable` effect is stated


@dataclass(frozen=True)
class TestResult:
    name: str
    estimate: float  # mean difference in the paper's direction
    ci95: tuple[float, float]
    margin: float
    outcome: str  # holds | contradicted | unclear
    method: str  # "paired t" | "Welch t" | why no interval
    favoured: list[float]  # per-seed values of the arm the paper favours
    baseline: list[float]
    note: str = ""
    detectable: float = math.inf  # the smallest true effect beyond the margin these seeds detect with 80% power
    statement: str = "primary"  # primary: decides the verdict; secondary: shown with its own outcome

    def to_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95)}

    def as_secondary(self) -> TestResult:
        return replace(self, statement="secondary")


@dataclass(frozen=True)
class Precondition:
    """A condition under which a claim's tests can speak, computed from the same runs: e.g. GN within 2 points of
    BN at the largest batch, the baseline learning at all. `need` says what would make it hold."""

    name: str
    value: float
    required: str  # e.g. ">= 20", "<= 2"
    holds: bool
    need: str = ""
    scope: str = ""  # "": the whole claim; else the name of the one test it conditions (`gate`)

    def to_dict(self) -> dict:
        return asdict(self)


def precondition(
    name: str,
    value: float,
    at_least: float | None = None,
    at_most: float | None = None,
    need: str = "",
    scope: str = "",
) -> Precondition:
    """`value` against its bounds, stated in the claim's code before the runs; `scope`: the one test it conditions
    (see `gate`), or the whole claim."""
    holds = math.isfinite(value)
    holds = holds and (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
    bounds = ((">=", at_least), ("<=", at_most))
    required = " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)
    return Precondition(name, float(value), required, bool(holds), need, scope)


def gate(test: TestResult, condition: Precondition) -> TestResult:
    """`test` conditioned on a precondition scoped to it: where that fails, the test's outcome is **not testable**
    (its estimate and interval kept, to read, never deciding), e.g. "GN beats BN at batch 2" in a setup where GN
    is far behind BN at every batch."""
    if condition.scope != test.name:
        raise ValueError(f"the precondition {condition.name!r} is scoped to {condition.scope!r}, not {test.name!r}")
    if condition.holds:
        return test
    return replace(
        test,
        outcome=NOT_TESTABLE,
        note=f"not testable here: {condition.name} is {condition.value:.2f}, needs {condition.required}",
    )


@dataclass(frozen=True)
class Statement:
    """One statement of a paper, in its own words, with where it says it; `key` is its stable id (reports, the
    index and the answers cite it), `test` says in one line how normlab decides it (direction, margin, bound)."""

    key: str
    quote: str
    source: str  # e.g. "GN paper, abstract; Table 2"
    test: str


@dataclass(frozen=True)
class Finding:
    """A statement decided: its primary tests, the preconditions under which they speak, and its verdict."""

    statement: Statement
    tests: tuple[TestResult, ...]
    preconditions: tuple[Precondition, ...]
    verdict: str

    def to_dict(self) -> dict:
        return {
            **asdict(self.statement),
            "verdict": self.verdict,
            "tests": [t.name for t in self.tests],
            "preconditions": [p.to_dict() for p in self.preconditions],
        }


def decide(statement: Statement, tests: Sequence[TestResult], preconditions: Sequence[Precondition] = ()) -> Finding:
    """`statement`'s verdict from its primary tests (`verdict`'s rule); a failed precondition of the statement makes
    it not testable here. Its tests are marked primary: the claim's verdict reads them through its statements."""
    tests = tuple(replace(t, statement="primary") for t in tests)
    if not tests:
        raise ValueError(f"the statement {statement.key!r} has no test")
    whole = [replace(p, scope="") for p in preconditions]
    return Finding(statement, tests, tuple(preconditions), verdict(tests, whole))


def claim_verdict(findings: Sequence[Finding], preconditions: Sequence[Precondition] = ()) -> str:
    """The claim's one word from its statements' verdicts: not_testable if a precondition of the whole claim
    fails; else not_reproduced if any statement is, not_testable if any is, reproduced if all are, inconclusive
    otherwise."""
    if any(not p.holds for p in preconditions if not p.scope):
        return "not_testable"
    verdicts = [f.verdict for f in findings]
    for word in ("not_reproduced", "not_testable"):
        if word in verdicts:
            return word
    return "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else "inconclusive"


def log_ratio(a: float, b: float) -> float:
    """log(a / b) of two errors (or any positive quantities): a margin on it means the same at 1% and at 40%
    error (log 1.10: a tenth higher)."""
    return math.log(max(a, 1e-9) / max(b, 1e-9))


def detectable_effect(se: float, df: float, alpha: float = 1 - CONFIDENCE, power: float = POWER) -> float:
    """The smallest true difference (beyond the margin) that a test with this standard error and degrees of
    freedom detects with `power` at level `alpha`: (t_{1-alpha/2} + t_{power}) · se."""
    if not (df >= 1 and math.isfinite(se)):
        return math.inf
    df = min(df, 1e9)  # (a zero spread: the normal quantiles)
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def paired_se(diff: np.ndarray) -> tuple[float, float]:
    """(standard error of the mean difference, degrees of freedom) of paired differences."""
    return float(np.std(diff, ddof=1) / math.sqrt(len(diff))), len(diff) - 1


def welch_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(standard error of the difference of means, Welch–Satterthwaite degrees of freedom) of two arms."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        return 0.0, math.inf
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(math.sqrt(va + vb)), float(df)


def outcome(low: float, high: float, margin: float) -> str:
    if low > margin:
        return "holds"
    if high < margin:
        return "contradicted"
    return "unclear"


def compare(
    name: str, favoured: Sequence[float], baseline: Sequence[float], margin: float = 0.0, paired: bool = True
) -> TestResult:
    """favoured − baseline over seeds, with its 95% interval: paired (seed i of one arm with seed i of the other,
    both arms having run the same seeds, in the same order) or Welch's for independent arms."""
    # to 1e-9: float rounding (a measure computed two ways) is not a difference
    a, b = np.round(np.asarray(favoured, dtype=float), 9), np.round(np.asarray(baseline, dtype=float), 9)
    if paired and len(a) != len(b):
        raise ValueError(f"{name}: a paired test needs the same seeds in both arms, got {len(a)} and {len(b)} runs")
    estimate = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if min(len(a), len(b)) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        why = "fewer than 2 runs in an arm" if min(len(a), len(b)) < 2 else "a non-finite value"
        return TestResult(
            name, estimate, (-math.inf, math.inf), margin, "unclear", f"no interval: {why}", a.tolist(), b.tolist()
        )
    if paired:
        diff = a - b
        if np.ptp(diff) <= 1e-9 * max(1.0, float(np.abs(diff).max())):  # the same difference at every seed (up
            # to rounding): the interval is that point (scipy's t interval would divide by a zero spread)
            low = high = estimate
        else:
            low, high = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
        method = "paired t"
    else:
        low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
        method = "Welch t"
    low, high = float(low), float(high)
    detectable = detectable_effect(*(paired_se(a - b) if paired else welch_se(a, b)))
    return TestResult(
        name,
        estimate,
        (low, high),
        margin,
        outcome(low, high, margin),
        method,
        a.tolist(),
        b.tolist(),
        detectable=detectable,
    )


def equivalent(name: str, first: Sequence[float], second: Sequence[float], delta: float) -> TestResult:
    """first − second is within ±`delta` (two one-sided tests at 5% each: the 90% paired interval inside
    [−delta, +delta]): **holds** if it is, **contradicted** if the interval lies wholly outside the bounds,
    **unclear** otherwise. For hypotheses of equality ("GN's error stays flat"), where a difference test with
    margin 0 would read "no evidence of a difference" as a finding."""
    a, b = np.round(np.asarray(first, dtype=float), 9), np.round(np.asarray(second, dtype=float), 9)
    if len(a) != len(b):
        raise ValueError(f"{name}: an equivalence test pairs seeds, got {len(a)} and {len(b)} runs")
    diff = a - b
    estimate = float(diff.mean()) if len(diff) else math.nan
    method = "paired TOST (90% interval within ±δ)"
    if len(diff) < 2 or not np.isfinite(diff).all():
        return TestResult(
            name,
            estimate,
            (-math.inf, math.inf),
            delta,
            "unclear",
            "no interval: fewer than 2 runs",
            a.tolist(),
            b.tolist(),
        )
    if np.ptp(diff) <= 1e-9 * max(1.0, float(np.abs(diff).max())):
        low = high = estimate
    else:
        low, high = (float(v) for v in stats.ttest_rel(a, b).confidence_interval(1 - 2 * (1 - CONFIDENCE)))
    if -delta < low and high < delta:
        result = "holds"
    elif low > delta or high < -delta:
        result = "contradicted"
    else:
        result = "unclear"
    detectable = detectable_effect(*paired_se(diff), alpha=2 * (1 - CONFIDENCE))
    return TestResult(name, estimate, (low, high), delta, result, method, a.tolist(), b.tolist(), detectable=detectable)


def compare_steps(
    name: str, favoured: Sequence[float], baseline: Sequence[float], budget: float, margin: float = 0.0, paired=True
) -> TestResult:
    """Steps-to-target, the paper's arm faster: baseline − favoured steps. A run that never reached the target
    (math.inf) is censored at `budget`, its steps a lower bound. So the difference is a lower bound where only the
    baseline arm has censored runs (a 'holds' stands, a 'contradicted' cannot be claimed), an upper bound where
    only the favoured arm has (the reverse), and where both have, nothing can be claimed."""
    a = [min(v, budget) for v in favoured]
    b = [min(v, budget) for v in baseline]
    result = compare(name, b, a, margin, paired)  # baseline − favoured: positive = the paper's arm is faster
    censored_f, censored_b = any(math.isinf(v) for v in favoured), any(math.isinf(v) for v in baseline)
    result = TestResult(**{**asdict(result), "favoured": a, "baseline": b})
    keep = {(False, False): OUTCOMES, (False, True): ("holds", "unclear"), (True, False): ("contradicted", "unclear")}
    allowed = keep.get((censored_f, censored_b), ("unclear",))
    if result.outcome not in allowed:
        result = TestResult(**{**asdict(result), "outcome": "unclear"})
    if censored_f or censored_b:
        arms = [arm for arm, c in (("the paper's arm", censored_f), ("the baseline", censored_b)) if c]
        result = TestResult(
            **{
                **asdict(result),
                "note": f"{' and '.join(arms)}: runs that never reached the target, "
                f"counted as {budget:g} steps (a lower bound)",
            }
        )
    return result


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """The mean over seeds and its 95% t interval (scipy.stats); an infinite interval for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), -math.inf, math.inf
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0]), float(v[0])
    low, high = stats.t.interval(CONFIDENCE, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    return float(v.mean()), float(low), float(high)


def verdict(tests: Sequence[TestResult], preconditions: Sequence[Precondition] = ()) -> str:
    """not_testable if a precondition of the whole claim fails; else, over the primary tests: not_reproduced if
    any is contradicted, not_testable if any is not testable (its own precondition failed), reproduced if every
    one holds, inconclusive otherwise. Secondary tests never decide."""
    if any(not p.holds for p in preconditions if not p.scope):
        return "not_testable"
    outcomes = [t.outcome for t in tests if t.statement == "primary"]
    if "contradicted" in outcomes:
        return "not_reproduced"
    if NOT_TESTABLE in outcomes:
        return "not_testable"
    if outcomes and all(o == "holds" for o in outcomes):
        return "reproduced"
    return "inconclusive"


def endpoint(values: Sequence[float], k: int = 5) -> float:
    """A run's endpoint: the mean of its last k evaluations (one evaluation moves by points between neighbours)."""
    if not len(values):
        return math.nan
    return float(np.mean(values[-k:]))


def steps_to_target(steps: Sequence[float], values: Sequence[float], target: float) -> float:
    """The step at which a curve first reaches `target`, linearly interpolated between the evaluation before and
    the one at which it is reached; math.inf if it never is (a censored run)."""
    previous = (0.0, -math.inf)
    for step, value in zip(steps, values, strict=True):
        if value >= target:
            s0, v0 = previous
            if not math.isfinite(v0):
                return float(step)
            return float(s0 + (target - v0) / (value - v0) * (step - s0))
        previous = (step, value)
    return math.inf
