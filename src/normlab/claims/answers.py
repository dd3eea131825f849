"""results/README.md's answers to "which normalization, at which batch size, at what cost?", written from the
claims' reference summary.json files (their tests, with 95% intervals) and results/bench, so that every number
in them comes from a run; each answer says what the evidence does not show."""

import json
from pathlib import Path

from normlab.claims.base import PROFILES, fmt_test, reference_summary, results_dir


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _cite(results: Path, claim: str) -> tuple[dict | None, str]:
    """A claim's reference summary and a markdown link to its report with its verdict and seeds."""
    summary, directory = reference_summary(results, claim)
    if summary is None:
        return None, f"{claim}: not run"
    link = (directory / "README.md").relative_to(results).as_posix()
    verdict = summary["verdict"].replace("_", " ")
    return summary, f"[{claim}]({link}) ({summary['profile']} profile, {summary.get('seeds', '?')} seeds: {verdict})"


def _tests(summary: dict | None, *words: str, reported: bool = True) -> str:
    """The summary's tests (and reported intervals) whose names contain all `words`, formatted with intervals."""
    if summary is None:
        return ""
    found = [*summary.get("tests", []), *(summary.get("reported", []) if reported else [])]
    return "; ".join(fmt_test(t) for t in found if all(w in t["name"] for w in words))


def _disagrees(results: Path, claim: str, summary: dict | None) -> str:
    """A note where another profile of the claim reached another verdict."""
    if summary is None:
        return ""
    others = []
    for profile in PROFILES:
        other = _load(results_dir(results, claim, profile) / "summary.json")
        if other and profile != summary["profile"] and other["verdict"] != summary["verdict"]:
            others.append(f"the {profile} profile ({other.get('seeds', 'fewer')} seeds, made "
                          f"{'under the protocol' if 'tests' in other else 'before the protocol'}) said "
                          f"{other['verdict'].replace('_', ' ')}")  # fmt: skip
    return f" Profiles of {claim} disagree: {'; '.join(others)}." if others else ""


def _equal_steps(results: Path) -> str:
    """The equal-steps control (the `steps` profiles), where it was run."""
    small = _load(results_dir(results, "bn_small_batch", "steps") / "summary.json")
    ln = _load(results_dir(results, "ln_small_batch", "steps") / "summary.json")
    if not small or not ln:
        return " The equal-steps control was not run."
    return (f" At equal steps (the `steps` profiles: every batch size as many updates as the largest): "
            f"[bn_small_batch](bn_small_batch/steps/README.md) {_tests(small, 'rise')}, "
            f"[ln_small_batch](ln_small_batch/steps/README.md) {_tests(ln, 'sensitivity')}.")  # fmt: skip


def answers(results: Path) -> str:
    small, small_ref = _cite(results, "bn_small_batch")
    rnn, rnn_ref = _cite(results, "ln_rnn")
    contrast, contrast_ref = _cite(results, "in_contrast")
    ln_batch, ln_batch_ref = _cite(results, "ln_small_batch")
    sn, sn_ref = _cite(results, "sn_switches")
    bin_, bin_ref = _cite(results, "bin_gates")
    distributed = _load(results / "distributed" / "summary.json")
    bench = _load(results / "bench" / "bench.json")
    lines = [
        "## What the runs say",
        "",
        "Differences in points of accuracy unless stated, 95% intervals over seeds.",
        "",
    ]
    lines.append(
        f"- **Which norm for CNNs?** {small_ref}: {_tests(small, 'GN − BN')}; {bin_ref}: {_tests(bin_, 'BIN')}. "
        "Not shown: ImageNet-scale nets, per-arm tuned learning rates (one lr per batch size for all norms)."
        + _disagrees(results, "bn_small_batch", small)
    )
    lines.append(
        f"- **At which batch size does BN break?** {small_ref}: {_tests(small, 'rise')}; {ln_batch_ref}: "
        f"{_tests(ln_batch, 'sensitivity')}; {sn_ref}: {_tests(sn, 'importance')}. These compare batch sizes at equal "
        "epochs (batch 2 takes 16x the steps of batch 32)."
        + _equal_steps(results)
        + _disagrees(results, "bn_small_batch", small)
        + _disagrees(results, "ln_small_batch", ln_batch)
    )
    lines.append(
        f"- **Which norm for RNNs?** {rnn_ref}: {_tests(rnn, 'LSTM −', reported=False)}. MNIST read as 28 rows, "
        "where the recurrent-BN paper itself expects no gain; pixel sequences (its setting) were not run at 5 seeds."
        + _disagrees(results, "ln_rnn", rnn)
    )
    lines.append(
        f"- **Style / contrast-sensitive inputs?** {contrast_ref}: {_tests(contrast, 'BN − IN')}; the cost: "
        f"{_tests(contrast, 'cost')}. A mechanism check on classification: no style transfer was run, so nothing "
        "here says IN stylizes better."
    )
    if distributed:
        lines.append(
            "- **Data-parallel training?** [distributed](distributed/README.md): one seed, 625 steps, made before "
            "the protocol; its own note says the differences are noise. Not re-run under the protocol: no answer yet."
        )
    rows = [r for r in (bench or {}).get("tradeoff", []) if r.get("ratio_to_bn") is not None]
    if rows:
        lines.append(
            "- **Cost vs accuracy** ([tradeoff](tradeoff/README.md)): time per training step of the CIFAR-10 CNN "
            "relative to BN: "
            + ", ".join(f"{r['norm']} {r['ratio_to_bn']:.2f}x" for r in rows)
            + ". One machine, one benchmark run; the accuracies to weigh them against are the intervals above."
        )
    return "\n".join(lines)
