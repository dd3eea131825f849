"""The papers' claims, one module each: what the paper reports, our setup, the criterion, and `analyze(runs, out)`
which computes the table, the plots and the protocol's tests (normlab.protocol) from the runs; the verdict
follows from the tests. `write_report` (claims.base) turns that into results/<claim>/README.md and summary.json;
`write_index` into results/README.md."""

from __future__ import annotations

import json
from pathlib import Path

from normlab.claims import (
    bin_gates,
    bn_convergence,
    bn_learning_rate,
    bn_lstm,
    bn_regularization,
    bn_small_batch,
    bn_smoothness,
    in_contrast,
    ln_rnn,
    ln_small_batch,
    sn_switches,
    wn_meanbn,
)
from normlab.claims.answers import answers
from normlab.claims.base import (
    PROFILES,
    Analysis,
    Claim,
    arms,
    experiment_name,
    fmt_interval,
    fmt_statements,
    fmt_test,
    label,
    matching,
    profile_jobs,
    reference_summary,
    report_summaries,
    results_dir,
    tests_table,
    verdict_words,
    write_report,
)

__all__ = [
    "PROFILES",
    "Analysis",
    "Claim",
    "arms",
    "experiment_name",
    "fmt_interval",
    "fmt_test",
    "matching",
    "profile_jobs",
    "reference_summary",
    "results_dir",
    "tests_table",
    "write_report",
    "registry",
    "write_index",
]


def registry() -> dict[str, Claim]:
    modules = [
        bn_convergence,
        bn_smoothness,
        bn_regularization,
        bn_learning_rate,
        bn_small_batch,
        ln_small_batch,
        ln_rnn,
        bn_lstm,
        wn_meanbn,
        in_contrast,
        bin_gates,
        sn_switches,
    ]
    return {m.CLAIM.name: m.CLAIM for m in modules}


def write_index(results: Path) -> None:
    """results/README.md: every claim's verdict per profile, from the summaries on disk."""
    rows: dict[str, list[str]] = {"reproduction": [], "mechanism check": []}
    why = []
    for claim in registry().values():
        summary, reference = reference_summary(results, claim.name, claim.reference)
        if reference == results / claim.name / claim.reference:
            why.append(f"- {claim.name}: {label(summary or {})}, {claim.reference_why}")
        else:
            why.append(
                f"- {claim.name}: {(claim.reference or 'quick').replace('/', ', ')} is its reference, not made yet"
            )
        # quick first, then its tuned variant and the longer profiles; the reference in bold
        for path in report_summaries(results, claim.name):
            s = json.loads(path.read_text())
            link = path.parent.relative_to(results).as_posix() + "/README.md"
            tests = "<br>".join(fmt_test(t) for t in s.get("tests", [])) or "(made before the protocol)"
            statements = fmt_statements(s) or "(made before statements: its tests decide)"
            profile = f"**{label(s)}** (reference)" if path.parent == reference else label(s)
            # a report whose criterion is no longer the claim's: its runs judged by tests the code no longer states
            earlier = s.get("criterion", claim.criterion) != claim.criterion
            stale = " (made under an earlier criterion)" if earlier else ""
            if s.get("criteria_after_runs"):
                stale += " (re-analysed: criteria written after its runs were seen)"
            words = verdict_words(claim, s["verdict"])
            rows[claim.kind].append(
                f"| [{claim.name}]({link}) | {profile} | **{words}**{stale} | {statements} | {tests} | "
                f"{s.get('seeds', '?')} | {s['wall_s'] / 60:.1f} |"
            )
    total = sum(
        json.loads(p.read_text())["wall_s"]
        for claim in registry()
        for p in [results / claim / "summary.json"]
        if p.exists()
    )
    text = f"""# Reproductions

Each row links to a report written by `normlab report` from real runs (`normlab reproduce all` runs every
quick profile; `make reproduce` does the same). Verdicts are computed from the tests stated in each
report, never by hand. Our setting is small on purpose: CIFAR-10 / MNIST and small nets on a 2-core CPU in
minutes, where the papers use ImageNet, ResNet-50 / Inception and days of GPU time. Each claim has one
**reference** report (in bold in the table; results/README's answers cite it), run at 5 seeds under the
protocol below; the other rows are shorter or longer variants, some made before the protocol. The reference per
claim, and why:

{chr(10).join(why)}

## The protocol

Written once in `src/normlab/protocol.py`, used by every claim:

- Every arm of a reference profile runs the same seeds (its experiment config names them; a seed used to tune or
  pilot is never reported), so arms are compared **paired by seed**.
- A run's result (its **endpoint**) is the value after a decaying schedule ends, else the mean of its last 5
  evaluations; a diverged run counts as chance (10%). Curves are compared by their mean over the evaluations (the
  normalized area under the validation curve). Steps-to-target are interpolated between evaluations; a run that
  never reaches the target is **censored** at the run's length, and a difference with censored runs only counts
  in the direction it bounds.
- Model selection and steps-to-target read the **validation split** (5,000 training images held out, the same
  for every seed, `data.val_size`); the test set is only reported.
- Each test is a difference in the paper's direction (positive = as the paper says) with a **95% interval**: a
  paired t interval over seeds (`scipy.stats.ttest_rel`), or Welch's (`ttest_ind`) for arms without shared
  seeds. It is compared with a **margin stated in the claim's code before running** (0 for "better", a negative
  margin for "not worse by more than"): it **holds** if the interval's low end is above the margin, is
  **contradicted** if its high end is below the margin, and is **unclear** otherwise.
- Where the hypothesis is equality ("flat", "not worse"), the test is an equivalence or non-inferiority test
  against a bound δ stated in the claim's code (equivalence: the 90% interval inside ±δ, two one-sided tests).
  Every test states its **detectable** effect: the smallest true effect its seeds detect with 80% power.
- Each claim states **preconditions** in its code (e.g. the baseline learns at all): where one fails, the verdict
  is **not testable here**, naming what failed, by how much, and what would be needed, never "not reproduced". A
  precondition scoped to one test (e.g. "GN beats BN at batch 2" needs GN near BN at batch 32) makes only that
  test *not testable*; the other statements are still decided.
- A claim is the paper's **statements**, each quoted with its figure or table and decided on its own by its
  primary tests: a statement is **not reproduced** if any of its tests is contradicted, **not testable here** if
  any is not testable (or its precondition fails), **reproduced** if all hold, **inconclusive** otherwise. The
  claim's word follows from its statements by the same rule (`protocol.claim_verdict`). Secondary tests (finer
  points of the paper) and intervals marked *reported* are shown with their own outcomes without deciding it. A
  report whose criterion the claim's code no longer states says "made under an earlier criterion"; one whose
  criteria were written after its runs were seen says "re-analysed", and decides nothing until fresh seeds are
  run. Reports made before this round carry no preconditions and no detectable effects; they say so by
  omission, and are re-made as their references are re-run.

| claim | profile | verdict | the paper's statements | tests: estimate [95% interval] (outcome) | seeds | wall min |
|---|---|---|---|---|---|---|
{chr(10).join(rows["reproduction"])}

**Mechanism checks**: a property a norm has by construction, measured on our nets (not a paper's claimed result,
which is why they are not counted as reproductions): confirmed, not confirmed or inconclusive by the same tests.

| check | profile | outcome | statements | tests: estimate [95% interval] (outcome) | seeds | wall min |
|---|---|---|---|---|---|---|
{chr(10).join(rows["mechanism check"])}

The quick profiles in this table together took {total / 60:.1f} min here (2 CPU cores): the wall time of
`reproduce.py`, or for a sweep it did not time, its runs' training time summed (each report says which).

{answers(results, registry())}
"""
    (results / "README.md").write_text(text)
