"""results/README.md's answers to "which normalization, at which batch size, at what cost?", written from the
claims' reference summary.json files (their tests, with 95% intervals) and results/bench, so that every number
in them comes from a run; each answer says what the evidence does not show."""

import json
from pathlib import Path

from normlab.claims.base import (
    Claim,
    fmt_test,
    label,
    reference_summary,
    report_summaries,
    results_dir,
    verdict_words,
)
from normlab.claims.data_parallel import CRITERION


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _cite(results: Path, claim: str, claims: dict[str, Claim]) -> tuple[dict | None, str]:
    """A claim's reference summary and a markdown link to its report with its verdict and seeds; a report made
    under a criterion the claim no longer states is cited as such."""
    summary, directory = reference_summary(results, claim, claims[claim].reference)
    if summary is None or directory is None:
        return None, f"{claim}: not run"
    link = (directory / "README.md").relative_to(results).as_posix()
    verdict = verdict_words(claims[claim], summary["verdict"])
    if summary.get("criterion", claims[claim].criterion) != claims[claim].criterion:
        verdict += ", made under an earlier criterion: its reference under the current tests is not made yet"
    return summary, f"[{claim}]({link}) ({label(summary)} profile, {summary.get('seeds', '?')} seeds: {verdict})"


def _figure(results: Path, claim: str, claims: dict[str, Claim], name: str, caption: str) -> str:
    """A link to a figure of the claim's reference report, where that report drew it."""
    _, directory = reference_summary(results, claim, claims[claim].reference)
    if directory is None or not (directory / name).exists():
        return ""
    return f" Figure: [{caption}]({(directory / name).relative_to(results).as_posix()})."


def _tests(summary: dict | None, *words: str, reported: bool = True) -> str:
    """The summary's tests (and reported intervals) whose names contain all `words`, formatted with intervals."""
    if summary is None:
        return ""
    found = [*summary.get("tests", []), *(summary.get("reported", []) if reported else [])]
    return "; ".join(fmt_test(t) for t in found if all(w in t["name"] for w in words))


def _statements(summary: dict | None, *keys: str) -> str:
    """The summary's statements (those of `keys`; all by default) with their verdicts and tests:
    `key (verdict): test; test`."""
    if summary is None or not summary.get("statements"):
        return ""
    tests = {t["name"]: t for t in summary.get("tests", [])}
    return "; ".join(
        f"*{st['key']}* **{st['verdict'].replace('_', ' ')}** ({', '.join(fmt_test(tests[n]) for n in st['tests'])})"
        for st in summary["statements"]
        if not keys or st["key"] in keys
    )


def _plain_end(smooth: dict | None) -> str:
    """Where bn_smoothness's plain net ended near chance: a dead net's landscape is flat, which the tests leave out."""
    final = ((smooth or {}).get("numbers", {}).get("none") or {}).get("final_acc")
    if not isinstance(final, (int, float)) or final > 20:
        return ""
    return (
        f" The plain net ended at {final:.1f}% test accuracy: it collapsed to chance partway (the report's setup), "
        "and a dead net's gradient hardly changes along itself, so the landscapes are compared only at the "
        "evaluations at which every arm still learns."
    )


def _collapsed(regular: dict | None) -> str:
    """Where bn_regularization's plain net ended below 90% on its own training images on average: some of its runs
    collapsed to chance, and a collapsed run's gap (about 0) is counted as the tests were stated."""
    fit = ((regular or {}).get("numbers", {}).get("none@64") or {}).get("trainset_acc")
    if not isinstance(fit, (int, float)) or fit >= 90:
        return ""
    return (
        f" Read with care: the plain net's training-image accuracy at batch 64 averages {fit:.1f}%, as some of its "
        "runs collapsed to chance (the report's setup), and a collapsed run's gap of about 0 is counted."
    )


def _small_batch_answer(small: dict | None) -> str:
    """At which batch size BN breaks, and which norm to use at batch 2, from bn_small_batch's reference."""
    if not small or "batch" not in small.get("numbers", {}):
        return ""
    numbers = small["numbers"]
    errors = " / ".join(f"{v:.1f}" for k, v in numbers["batch"].items() if k.startswith("err_bs"))
    batches = " / ".join(k.removeprefix("err_bs") for k in numbers["batch"] if k.startswith("err_bs"))
    where = numbers.get("bn_breaks_at")
    found = [t for t in small.get("tests", []) if t["name"].startswith("at batch 2: GN − BN")]
    others = [t for t in small.get("reported", []) if t["name"].startswith("at batch 2:") and "− BN" in t["name"]]
    at_two = "; ".join(fmt_test(t) for t in [*found, *others])
    high = found[0]["ci95"][1] if found else None
    use = "use BN" if high is not None and high < 0 else "no norm is separable from BN"
    breaks = f"; it breaks at batch {where} (its error there above 1.1x its batch-32 error)" if where else ""
    return (
        f" BN's test error here at batch {batches}: {errors}%{breaks}. **At batch 2 on our CNN, {use}** (in points "
        f"of accuracy: {at_two}); the GN paper's win for GN at batch 2 needs a regime where GN competes at batch "
        "32, which ours does not (see the pilots). On your own net: `python run.py -m norm=batch,group,layer "
        "batch_size=2,32 seed=1,2,3 epochs=1 model=...`, then `normlab compare <its sweep folder> --by batch_size`."
    )


def _disagrees(results: Path, claim: Claim, summary: dict | None) -> str:
    """A note where another profile (or the fixed-lr / tuned variant) of the claim reached another verdict, saying
    whether it was judged by today's tests or by an earlier criterion (which no longer decides anything)."""
    if summary is None:
        return ""
    others = []
    for path in report_summaries(results, claim.name):
        other = _load(path)
        if label(other) != label(summary) and other["verdict"] != summary["verdict"]:
            made = (
                "under the current tests"
                if other.get("criterion", claim.criterion) == claim.criterion
                else "under an earlier criterion"
                if "tests" in other
                else "before the protocol"
            )
            others.append(
                f"the {label(other)} profile ({other.get('seeds', 'fewer')} seeds, made {made}) said "
                f"{other['verdict'].replace('_', ' ')}"
            )
    return f" Profiles of {claim.name} disagree: {'; '.join(others)}." if others else ""


def _equal_steps(results: Path) -> str:
    """The equal-steps control (the `steps` profiles), where it was run."""
    small = _load(results_dir(results, "bn_small_batch", "steps") / "summary.json")
    ln = _load(results_dir(results, "ln_small_batch", "steps") / "summary.json")
    if not small or not ln:
        return " The equal-steps control was not run."
    return (
        f" At equal steps (the `steps` profiles: every batch size as many updates as the largest): "
        f"[bn_small_batch](bn_small_batch/steps/README.md) {_small_tests(small)}, "
        f"[ln_small_batch](ln_small_batch/steps/README.md) {_ln_tests(ln)}."
    )


def _small_tests(summary: dict | None) -> str:
    """bn_small_batch's batch-size tests: each norm against itself."""
    return _tests(summary, "error at batch", reported=False)


def _ln_tests(summary: dict | None) -> str:
    """ln_small_batch's batch-size tests: each norm against itself."""
    return _tests(summary, "test accuracy at batch", reported=False)


def answers(results: Path, claims: dict[str, Claim]) -> str:
    """The answers, citing each claim's reference report (`Claim.reference`)."""
    convergence, convergence_ref = _cite(results, "bn_convergence", claims)
    rates, rates_ref = _cite(results, "bn_learning_rate", claims)
    smooth, smooth_ref = _cite(results, "bn_smoothness", claims)
    regular, regular_ref = _cite(results, "bn_regularization", claims)
    small, small_ref = _cite(results, "bn_small_batch", claims)
    rnn, rnn_ref = _cite(results, "ln_rnn", claims)
    bn_rnn, bn_rnn_ref = _cite(results, "bn_lstm", claims)
    contrast, contrast_ref = _cite(results, "in_contrast", claims)
    ln_batch, ln_batch_ref = _cite(results, "ln_small_batch", claims)
    sn, sn_ref = _cite(results, "sn_switches", claims)
    bin_, bin_ref = _cite(results, "bin_gates", claims)
    distributed = _load(results / "distributed" / "summary.json")
    # the cost ratios the tradeoff table shows: its own run (`bench.py --only tradeoff`) where it has one
    bench = _load(results / "bench" / "bench-tradeoff.json") or _load(results / "bench" / "bench.json")
    lines = [
        "## What the runs say",
        "",
        "Differences in points of accuracy unless stated, 95% intervals over seeds.",
        "",
    ]
    lines.append(
        f"- **Does BN train faster?** {convergence_ref}: "
        f"{_statements(convergence) or _tests(convergence, '', reported=False)}."
        + _figure(results, "bn_convergence", claims, "fig1a_test_accuracy.png", "test accuracy over steps (Fig. 1(a))")
        + _figure(
            results,
            "bn_convergence",
            claims,
            "fig1bc_sigmoid_input_percentiles.png",
            "a sigmoid's input percentiles (Fig. 1(b, c))",
        )
    )
    lines.append(
        "- **Why does BN help?** Two explanations, each tested on its own runs. Stable layer inputs (the BN "
        f"paper's internal covariate shift), {convergence_ref}: {_statements(convergence, 'b_stable_inputs')}. "
        f"A smoother landscape, {smooth_ref}: {_statements(smooth)}; its reason, that the smoothness survives "
        f"noise which moves the inputs every step (secondary): {_tests(smooth, 'noisy BN)', reported=False)}."
        + _plain_end(smooth)
        + _figure(results, "bn_smoothness", claims, "fig4_landscape.png", "the landscape along the gradient (Fig. 4)")
        + _disagrees(results, claims["bn_smoothness"], smooth)
    )
    lines.append(
        f"- **Does BN regularize?** {regular_ref}: {_statements(regular)}. What it buys in test accuracy "
        f"(secondary): {_tests(regular, 'test accuracy', reported=False)}. A 3×100 MLP on 5,000 MNIST images; no "
        "dropout arm was run." + _collapsed(regular) + _disagrees(results, claims["bn_regularization"], regular)
    )
    lines.append(
        f"- **Does BN allow higher learning rates?** {rates_ref}: "
        + (
            _statements(rates)
            or f"{_tests(rates, 'BN x', reported=False)}. BN is compared with itself at the base lr, as the paper's "
            "Fig. 3 does; what the same rates do without BN (secondary in this report, made before its statements): "
            f"{_tests(rates, 'no norm x1 −', reported=False)}"
        )
        + "."
        + _figure(results, "bn_learning_rate", claims, "steps_to_target.png", "steps to the target per lr (Fig. 3)")
    )
    lines.append(
        f"- **Which norm for CNNs?** {small_ref}: {_tests(small, 'GN − BN')}; {bin_ref}: {_tests(bin_, 'BIN')}. "
        "Not shown: ImageNet-scale nets, where GN is within 0.5 points of BN at batch 32 (a setup that leaves GN far "
        'behind at every batch cannot say whether GN beats BN at batch 2: "not testable" above).'
        + _disagrees(results, claims["bn_small_batch"], small)
    )
    lines.append(
        f"- **At which batch size does BN break, and what then?** {small_ref}, statement by statement: "
        f"{_statements(small)}.{_small_batch_answer(small)}"
    )
    lines.append(
        f"- **Every batch-size test** {small_ref}: {_small_tests(small)}; "
        f"{ln_batch_ref}: "
        f"{_ln_tests(ln_batch)}; {sn_ref}: {_statements(sn) or _tests(sn, 'importance')}; its finer point "
        f"(secondary): {_tests(sn, 'mean weight')}. These compare batch sizes at equal epochs (batch 2 takes 16x the "
        "steps of batch 32)."
        + _figure(results, "bn_small_batch", claims, "error_vs_batch.png", "error against batch size per norm")
        + _equal_steps(results)
        + _disagrees(results, claims["bn_small_batch"], small)
        + _disagrees(results, claims["ln_small_batch"], ln_batch)
    )
    lines.append(
        f"- **Which norm for RNNs?** {rnn_ref}"
        + (f": {_tests(rnn, 'LSTM −', reported=False)}" if rnn else "")
        + f", on MNIST read as 28 rows (a vector per step, as LN's input term needs); {bn_rnn_ref}"
        + (f": {_tests(bn_rnn, 'LSTM −', reported=False)}" if bn_rnn else "")
        + ", on the recurrent-BN paper's permuted pixel MNIST shortened to 196 pixels of the 14x14 pooled image (the "
        "paper: 784 pixels, to convergence). Two papers, two tasks: LN on single pixels (run before this claim "
        "moved to rows; those runs were not kept) did not beat the plain LSTM, where its input term sees only the "
        "pixel's sign against the mean."
        + _disagrees(results, claims["bn_lstm"], bn_rnn)
        + _disagrees(results, claims["ln_rnn"], rnn)
    )
    lines.append(
        f"- **Style / contrast-sensitive inputs?** {contrast_ref}: {_tests(contrast, 'BN − IN')}; the cost: "
        f"{_tests(contrast, 'cost')}. A mechanism check on classification: no style transfer was run, so nothing "
        "here says IN stylizes better."
    )
    if distributed and "tests" in distributed and distributed.get("criterion") != CRITERION:
        lines.append(
            f"- **Data-parallel training?** [distributed](distributed/README.md) ({distributed['seeds']} seeds, made "
            "under an earlier criterion, which tested the pairs that compute the same function for a difference; "
            f"not re-run under the equivalence tests yet): {_tests(distributed, '')}."
        )
    elif distributed and "tests" in distributed:
        lines.append(
            f"- **Data-parallel training?** [distributed](distributed/README.md) ({distributed['seeds']} seeds, 4 "
            f"processes × 4 images vs 1 × 16): {_tests(distributed, '')}. A CIFAR-10 CNN on CPU processes; "
            "the pairs that compute the same function show how far float summation order alone moves a run."
        )
    elif distributed:
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
