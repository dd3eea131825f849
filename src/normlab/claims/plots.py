"""Plot helpers shared by the claim reports (matplotlib, headless)."""

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def mean_curve(runs, key: str = "test_acc"):
    """Steps and the mean of `key` over runs at the steps all of them measured it (`Run.curve`)."""
    measured = [dict(zip(*run.curve(key), strict=True)) for run in runs]
    common = sorted(set.intersection(*[set(m) for m in measured])) if runs else []
    return common, [sum(m[s] for m in measured) / len(measured) for s in common]


LINE_STYLES = ("-", "--", ":", "-.")


def norm_color(label: str) -> str | None:
    """A norm's own colour, the same in every figure (matplotlib's C0..C8 in the zoo's order), for a label that is a
    norm's name or holds `norm.name=<norm>`; None for a label without a norm."""
    from normlab.norms import NORMS

    names = list(NORMS)
    for part in label.split(", "):
        key, _, value = part.rpartition("=")
        if key in ("", "norm.name") and value in names:
            return f"C{names.index(value) % 10}"
    return None


def curves(groups: dict, path: Path, title: str, key: str = "test_acc", ylabel: str = "test accuracy") -> str:
    """One line per group (label -> runs), the mean over its seeds; marked, so that a group with one evaluation
    shows as a point. A norm keeps its colour (norm_color), the groups that share one differ by line style, and the
    legend sits beside the axes, never over the data."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    shared: dict[str | None, int] = {}
    for label, runs in groups.items():
        steps, values = mean_curve(runs, key)
        color = norm_color(label)
        style = LINE_STYLES[shared.get(color, 0) % len(LINE_STYLES)] if color else "-"
        shared[color] = shared.get(color, 0) + 1
        ax.plot(steps, values, style, color=color, marker="o", markersize=3, label=f"{label} (n={len(runs)})")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.wrap(title, 64)), fontsize=10)  # (the legend beside takes the width)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def lines(
    xs,
    series: dict,
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    log2_reversed: bool = False,
    intervals: dict | None = None,
) -> str:
    """One marked line per label over the same x values (e.g. error vs batch size, accuracy vs contrast); with
    `intervals` (label -> [(low, high)] per x), each point's interval as an error bar."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        bounds = (intervals or {}).get(label)
        if bounds is None:
            ax.plot(xs, values, marker="o", label=label)
            continue
        below = [v - low if abs(low) < float("inf") else 0 for v, (low, _) in zip(values, bounds, strict=True)]
        above = [high - v if abs(high) < float("inf") else 0 for v, (_, high) in zip(values, bounds, strict=True)]
        ax.errorbar(xs, values, yerr=[below, above], marker="o", capsize=3, label=label)
    if log2_reversed:  # batch sizes: powers of two, largest first as in the GN paper
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.invert_xaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def new_figure(*args, **kwargs):
    return plt.subplots(*args, **kwargs)


def save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
