"""The papers' claims, one module each: what the paper reports, our setup, the criterion, and `analyze(runs, out)`
which computes the table, the plots and the verdict from the runs. `write_report` turns that into
results/<claim>/README.md and summary.json; `write_index` into results/README.md."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from normlab.runlog import write_json
from normlab.runs import load_runs

VERDICTS = ("reproduced", "not_reproduced", "inconclusive")


@dataclass
class Analysis:
    table: str  # markdown
    numbers: dict  # what the verdict was computed from
    verdict: str
    reason: str  # one sentence: why this verdict, with the numbers
    plots: list[str] = field(default_factory=list)  # file names written into the output dir
    notes: str = ""


@dataclass(frozen=True)
class Claim:
    name: str
    title: str
    paper: str  # markdown: the paper's figure/table for the same quantity
    setup: str  # markdown: our setting and how it differs
    criterion: str
    analyze: object  # (runs, out_dir) -> Analysis


def registry() -> dict[str, Claim]:
    from normlab.claims import (
        bin_gates,
        bn_convergence,
        bn_learning_rate,
        bn_small_batch,
        in_contrast,
        ln_rnn,
        ln_small_batch,
        sn_switches,
        wn_meanbn,
    )

    modules = [
        bn_convergence,
        bn_learning_rate,
        bn_small_batch,
        ln_small_batch,
        ln_rnn,
        wn_meanbn,
        in_contrast,
        bin_gates,
        sn_switches,
    ]
    return {m.CLAIM.name: m.CLAIM for m in modules}


def experiment_name(claim: str, profile: str) -> str:
    return claim if profile == "quick" else f"{claim}_{profile}"


def results_dir(results: Path, claim: str, profile: str) -> Path:
    return results / claim if profile == "quick" else results / claim / profile


def longest_summary(results: Path, claim: str) -> tuple[dict | None, Path | None]:
    """A claim's summary.json from the longest profile run on this machine (cpu, else quick), and its directory."""
    for profile in ("cpu", "quick"):
        path = results_dir(results, claim, profile) / "summary.json"
        if path.exists():
            return json.loads(path.read_text()), path.parent
    return None, None


def write_report(claim: Claim, profile: str, runs_root: Path, results: Path) -> dict:
    """Analyze runs/<experiment>/ and write results/<claim>[/<profile>]/{README.md, summary.json, *.png}."""
    experiment = experiment_name(claim.name, profile)
    run_dir = runs_root / experiment
    runs = load_runs(run_dir)
    if not runs:
        raise SystemExit(f"error: no finished runs under {run_dir}; run `python scripts/reproduce.py {claim.name}`")
    out = results_dir(results, claim.name, profile)
    out.mkdir(parents=True, exist_ok=True)
    analysis = claim.analyze(runs, out)
    assert analysis.verdict in VERDICTS, analysis.verdict
    timing = json.loads((run_dir / "reproduce.json").read_text()) if (run_dir / "reproduce.json").exists() else {}
    wall_s = timing.get("wall_s", sum(r.summary.get("wall_s") or 0 for r in runs))
    statuses = {}
    for r in runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    summary = {
        "claim": claim.name,
        "title": claim.title,
        "profile": profile,
        "verdict": analysis.verdict,
        "reason": analysis.reason,
        "criterion": claim.criterion,
        "numbers": analysis.numbers,
        "runs": len(runs),
        "statuses": statuses,
        "wall_s": wall_s,
        # the code the runs were made with (each run records it), not the code writing this report
        "commit": ",".join(sorted({(r.summary.get("git_commit") or "unknown")[:7] for r in runs})) or "unknown",
        "date": datetime.date.today().isoformat(),
    }
    write_json(out / "summary.json", summary)
    command = f"python scripts/reproduce.py {claim.name} --profile {profile}"
    plots = "\n\n".join(f"![{p}]({p})" for p in analysis.plots)
    text = f"""# {claim.title}

**Verdict: {analysis.verdict.replace("_", " ")}** ({profile} profile). {analysis.reason}

## The paper

{claim.paper}

## Our setup

{claim.setup}

Made by `{command}` (it runs `python run.py -m experiment={experiment}` and then
`python scripts/report.py {claim.name} --profile {profile}`), {len(runs)} runs ({statuses}), {wall_s / 60:.1f} min of
wall time on {timing.get("machine", "this machine")}, commit {summary["commit"]}, {summary["date"]}.

## Results

{analysis.table}

{plots}

## Criterion

{claim.criterion}

Numbers the verdict was computed from: `{json.dumps(analysis.numbers)}`
{analysis.notes}
"""
    (out / "README.md").write_text(text)
    return summary


def write_index(results: Path) -> None:
    """results/README.md: every claim's verdict per profile, from the summaries on disk."""
    rows = []
    for claim in registry().values():
        for path in sorted((results / claim.name).glob("**/summary.json")):
            s = json.loads(path.read_text())
            link = path.parent.relative_to(results).as_posix() + "/README.md"
            rows.append(
                f"| [{claim.name}]({link}) | {s['profile']} | **{s['verdict'].replace('_', ' ')}** | "
                f"{s['reason']} | {s['wall_s'] / 60:.1f} |"
            )
    total = sum(
        json.loads(p.read_text())["wall_s"]
        for claim in registry()
        for p in [results / claim / "summary.json"]
        if p.exists()
    )
    from normlab.claims.answers import answers

    text = f"""# Reproductions

Each row links to a report written by `scripts/report.py` from real runs (`python scripts/reproduce.py all`
runs every quick profile; `make reproduce` does the same). Verdicts are computed by the criterion stated in each
report, never by hand. Our setting is small on purpose: CIFAR-10 / MNIST and small nets on a 2-core CPU in
minutes, where the papers use ImageNet, ResNet-50 / Inception and days of GPU time.

| claim | profile | verdict | why | wall min |
|---|---|---|---|---|
{chr(10).join(rows)}

All quick profiles together took {total / 60:.1f} min of wall time here (2 CPU cores).

{answers(results)}
"""
    (results / "README.md").write_text(text)
