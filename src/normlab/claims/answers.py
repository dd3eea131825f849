"""results/README.md's answers to "which normalization, at which batch size, at what cost?", written from the
claims' summary.json files (and results/tradeoff), so that every number in them comes from a run."""

import json
from pathlib import Path

from normlab.claims import longest_summary


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"


def _longest(results: Path, claim: str) -> tuple[dict | None, str]:
    """`longest_summary`, with the link to its report relative to results/README.md."""
    summary, directory = longest_summary(results, claim)
    return summary, "" if directory is None else (directory / "README.md").relative_to(results).as_posix()


def answers(results: Path) -> str:
    small, small_link = _longest(results, "bn_small_batch")
    rnn, rnn_link = _longest(results, "ln_rnn")
    contrast, contrast_link = _longest(results, "in_contrast")
    ln_batch, ln_batch_link = _longest(results, "ln_small_batch")
    sn, sn_link = _longest(results, "sn_switches")
    tradeoff = _load(results / "bench" / "bench.json")
    lines = ["## What the runs say", ""]
    if small:
        n = small["numbers"]
        norms = [k for k in n if isinstance(n[k], dict) and "err_bs32" in n[k]]
        best32 = min(norms, key=lambda k: n[k]["err_bs32"])
        best2 = min(norms, key=lambda k: n[k]["err_bs2"])
        lines.append(
            f"- **CNNs** ([bn_small_batch, {small['profile']} profile]({small_link})): at batch 32 the lowest test "
            f"error was {best32}'s "
            f"({n[best32]['err_bs32']:.1f}%; BN {n['batch']['err_bs32']:.1f}%, GN {n['group']['err_bs32']:.1f}%); at "
            f"batch 2 it was {best2}'s ({n[best2]['err_bs2']:.1f}%; BN {n['batch']['err_bs2']:.1f}%, GN "
            f"{n['group']['err_bs2']:.1f}%)."
        )
        lines.append(
            f"- **When the batch shrinks** from 32 to 2, BN's error changed by {n['batch']['rise']:+.1f} points and "
            f"GN's by {n['group']['rise']:+.1f} (verdict: {small['verdict'].replace('_', ' ')})."
            + (
                f" On the MLP ([ln_small_batch]({ln_batch_link})), going from batch 128 to 4 moved LN's "
                f"accuracy by {100 * ln_batch['numbers']['layer']['change']:.2f} points and BN's by "
                f"{100 * ln_batch['numbers']['batch']['change']:.2f}."
                if ln_batch
                else ""
            )
            + (
                f" Switchable Norm's BN importance was {sn['numbers']['bs2']['bn_importance']:.3f} at batch 2 vs "
                f"{sn['numbers']['bs32']['bn_importance']:.3f} at 32 ([sn_switches]({sn_link}))."
                if sn
                else ""
            )
        )
    if rnn:
        n = rnn["numbers"]
        reached = {k: v["steps_to_target"] for k, v in n.items() if isinstance(v, dict) and "steps_to_target" in v}
        fastest = min(reached, key=lambda k: reached[k] if reached[k] is not None else float("inf"))
        lines.append(
            f"- **RNNs** ([ln_rnn]({rnn_link})): the fastest LSTM to the target accuracy was {fastest}; steps: "
            + ", ".join(f"{k} {'never' if v is None else f'{v:,.0f}'}" for k, v in reached.items())
            + "."
        )
    if contrast:
        n = contrast["numbers"]
        lines.append(
            f"- **Style/contrast-sensitive inputs** ([in_contrast]({contrast_link})): the accuracy varied least "
            f"across test-image contrast with {n['least_spread']} ("
            + ", ".join(f"{k} {100 * v['spread']:.1f}" for k, v in n.items() if isinstance(v, dict))
            + " points from the lowest to the highest)."
        )
    rows = [r for r in (tradeoff or {}).get("tradeoff", []) if r["test_acc_bs32"] is not None]
    if rows:
        lines.append(
            "- **Cost vs accuracy** ([tradeoff](tradeoff/README.md)): per training step of the CIFAR-10 CNN, "
            "relative to BN, with test accuracy at batch 32 / batch 2: "
            + ", ".join(
                f"{r['norm']} {r['ratio_to_bn']:.2f}x ({_pct(r['test_acc_bs32'])} / {_pct(r.get('test_acc_bs2'))})"
                for r in rows
            )
            + "."
        )
    return "\n".join(lines) if len(lines) > 2 else ""
