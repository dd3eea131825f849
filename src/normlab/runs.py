"""Reading finished runs back: a run directory's summary, metrics and config, grouped and summarized the way the
reports need them (mean ± std over seeds, steps to reach an accuracy)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from normlab.runlog import read_metrics


@dataclass
class Run:
    path: Path
    summary: dict
    metrics: list[dict]

    @property
    def config(self) -> dict:
        return self.summary["config"]

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def final_acc(self) -> float | None:
        return self.summary.get("test_acc")

    def steps_to(self, target: float) -> float:
        """First evaluated step with test accuracy >= target; inf when never reached."""
        return next((r["step"] for r in self.metrics if r["test_acc"] >= target), math.inf)


def load_runs(root: Path) -> list[Run]:
    """Every run under `root` that has a summary.json with a config (failed runs without one are skipped)."""
    runs = []
    for summary_path in sorted(root.rglob("summary.json")):
        summary = json.loads(summary_path.read_text())
        if "config" in summary:
            runs.append(Run(summary_path.parent, summary, read_metrics(summary_path.parent / "metrics.jsonl")))
    return runs


def group(runs: list[Run], key) -> dict:
    out: dict = {}
    for run in runs:
        out.setdefault(key(run), []).append(run)
    return out


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def std(values) -> float:
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {std(values):.{digits}f}"


def fmt_steps(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"
