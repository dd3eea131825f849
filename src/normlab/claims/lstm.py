"""What the two LSTM claims (ln_rnn, bn_lstm) show alike: how the runs read MNIST, a table per norm, the
validation curves. Their tests, margins and preconditions stay in each claim's own module."""

from pathlib import Path

from normlab.claims.plots import curves
from normlab.runs import Run, fmt_steps, mean, mean_std

TARGET = 0.90  # validation accuracy whose steps-to are reported


def sequence_name(runs: list[Run]) -> str:
    """How the runs read MNIST: `rows`, `pixels`, `permuted 14x14 pixels`, ..."""
    model = runs[0].config["model"] if runs else {}
    name = "rows" if model.get("sequence", "rows") == "rows" else "pixels"
    if model.get("downsample", 1) > 1:
        name = f"{28 // model['downsample']}x{28 // model['downsample']} {name}"
    return f"permuted {name}" if model.get("permute") else name


def table(groups: dict[str, list[Run]], grid: list[float], paper: dict[str, str], paper_header: str):
    """The numbers per norm (steps to TARGET, mean validation accuracy over the run, final test accuracy) and the
    markdown table of them beside the paper's."""
    numbers, rows = {}, []
    for norm, rs in groups.items():
        steps = [r.steps_to(TARGET) for r in rs]
        numbers[norm] = {
            "steps_to_target": [None if v == float("inf") else v for v in steps],
            "curve_mean": mean(r.curve_mean("val_acc", grid) for r in rs),
            "final_acc": mean(r.endpoint("test_acc") for r in rs),
        }
        rows.append(
            f"| {norm} | {fmt_steps(mean(steps))} | {mean_std([r.curve_mean('val_acc', grid) for r in rs])} | "
            f"{mean_std([r.endpoint('test_acc') for r in rs])} | {paper.get(norm, '—')} | {len(rs)} |"
        )
    text = (
        f"| norm | steps to {TARGET:.0%} (val) | mean val acc over the run % | final test acc % | {paper_header} | "
        "seeds |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    return numbers, text


def validation_plot(groups: dict[str, list[Run]], out: Path, runs: list[Run]) -> str:
    return curves(
        groups,
        out / "val_accuracy.png",
        f"LSTM on MNIST {sequence_name(runs)}: validation accuracy",
        key="val_acc",
        ylabel="validation accuracy",
    )
