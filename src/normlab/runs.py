"""Reading finished runs back: a run directory's summary, metrics and config, and the measures the claims test
(endpoints, whole-curve means, steps to a target: in percentage points and steps), paired by seed across arms
for the protocol (normlab.protocol)."""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from normlab import protocol
from normlab.config import RUN_INVARIANT, identity
from normlab.runlog import flat_hparams, read_json, read_metrics, read_summary

CHANCE = 0.1  # the accuracy a diverged run is counted at: it learned nothing usable
# what never makes two runs different arms: the seed, what a resumed run may change, where the data lives
NOT_SWEPT = ("seed", *RUN_INVARIANT)


def swept_keys(configs: list[dict]) -> list[str]:
    """The config keys (dotted) whose value differs between runs: what a sweep varied, seed and plumbing aside."""
    flats = [flat_hparams(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if k not in NOT_SWEPT and len({str(f.get(k)) for f in flats}) > 1]


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
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def final_acc(self) -> float | None:
        return self.summary.get("test_acc")

    def curve(self, key: str = "val_acc") -> tuple[list[float], list[float]]:
        """(steps, values) of `key` at the evaluations (val_acc falls back to test_acc for runs made before the
        validation split)."""
        if key == "val_acc" and not any(r.get("val_acc") is not None for r in self.metrics):
            key = "test_acc"
        rows = [r for r in self.metrics if r.get(key) is not None]
        return [r["step"] for r in rows], [r[key] for r in rows]

    def endpoint(self, key: str = "test_acc", k: int = 5) -> float:
        """The run's result in percentage points: the value after a decaying schedule ends, else the mean of the
        last k evaluations (neighbouring evaluations of a constant-lr run differ by points); a diverged or
        failed run counts as chance."""
        if self.status != "completed":
            return 100 * CHANCE
        values = [v for v in self.curve(key)[1] if isinstance(v, (int, float))]
        if not values:  # no readable evaluation (a damaged or foreign metrics.jsonl): no result, never a rank
            return math.nan
        decays = self.config.get("scheduler", {}).get("name", "constant") != "constant"
        return 100 * (values[-1] if decays else protocol.endpoint(values, k))

    def curve_mean(self, key: str = "val_acc", steps: list[float] | None = None) -> float:
        """The mean of the curve over evaluations at `steps` (default: its own), in points: the area under the
        accuracy curve over the run, normalized. Evaluations a diverged run never reached count as chance."""
        own = dict(zip(*self.curve(key), strict=True))
        steps = steps if steps is not None else list(own)
        return 100 * mean(own.get(s, CHANCE) for s in steps)

    def steps_to(self, target: float, key: str = "val_acc") -> float:
        """Steps to reach `target` accuracy on the validation split, interpolated between evaluations; inf when
        never reached (or the run diverged first)."""
        return protocol.steps_to_target(*self.curve(key), target)


def paired(favoured: list[Run], baseline: list[Run], measure) -> tuple[list[float], list[float], bool]:
    """`measure(run)` for each arm, matched by seed where both arms ran the same seeds (paired), else every run
    of each arm (independent). Returns (favoured values, baseline values, paired)."""
    a, b = {r.seed: r for r in favoured}, {r.seed: r for r in baseline}
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        return [measure(a[s]) for s in common], [measure(b[s]) for s in common], True
    return [measure(r) for r in favoured], [measure(r) for r in baseline], False


def seed_differences(first: list[Run], second: list[Run], measure) -> dict[int, float]:
    """measure(run of `first`) − measure(run of `second`) for each seed both ran (e.g. one norm at two batch
    sizes: how much the batch size moves it, seed by seed)."""
    other = {r.seed: r for r in second}
    return {r.seed: measure(r) - measure(other[r.seed]) for r in first if r.seed in other}


def arm_test(name: str, favoured: list[Run], baseline: list[Run], measure, margin: float = 0.0):
    """The protocol's test of favoured − baseline in `measure`, paired by seed where possible."""
    a, b, is_paired = paired(favoured, baseline, measure)
    return protocol.compare(name, a, b, margin, paired=is_paired)


def arm_equivalence(name: str, first: list[Run], second: list[Run], measure, delta: float):
    """The protocol's equivalence test (TOST, ±`delta`) of first − second in `measure`, paired by seed (without
    two common seeds: no interval)."""
    a, b, is_paired = paired(first, second, measure)
    return protocol.equivalent(name, a if is_paired else [], b if is_paired else [], delta)


def steps_test(name: str, favoured: list[Run], baseline: list[Run], target: float, budget: float, margin=0.0):
    """Steps to `target` (validation), the paper's arm faster by more than `margin` steps; censored runs as in
    protocol.compare_steps."""
    a, b, is_paired = paired(favoured, baseline, lambda r: r.steps_to(target))
    return protocol.compare_steps(name, a, b, budget, margin, paired=is_paired)


def common_steps(runs: list[Run], key: str = "val_acc") -> list[float]:
    """The evaluation steps of the longest run among `runs` (the grid whole-curve measures are read on)."""
    return max((run.curve(key)[0] for run in runs), key=len, default=[])


def load_runs(root: Path) -> list[Run]:
    """Every run under `root` that has a summary.json with a config (failed runs without one are skipped). A run
    whose summary is damaged or not normlab's by its types (runlog.read_summary) is left out with one warning line
    naming it; a JSON object with neither status nor config (a report's summary, another tool's) silently."""
    runs = []
    for summary_path in sorted(root.rglob("summary.json")):
        summary = read_summary(summary_path)
        if summary is None:
            other = read_json(summary_path)
            if other is None or "status" in other or "config" in other:
                print(f"warning: {summary_path} is damaged or not normlab's; that run is left out", file=sys.stderr)
        elif isinstance(summary.get("config"), dict):
            runs.append(Run(summary_path.parent, summary, read_metrics(summary_path.parent / "metrics.jsonl")))
    return runs


def distinct(runs: list[Run]) -> tuple[list[Run], int]:
    """`runs` with each run once (copies of one run, e.g. a sweep repeated into another folder, count once) and
    the number of copies dropped."""
    seen, out = set(), []
    for run in runs:
        key = identity(run.config)
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out, len(runs) - len(out)


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
    if not all(math.isfinite(v) for v in values):  # (statistics.stdev raises on NaN)
        return math.nan
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
