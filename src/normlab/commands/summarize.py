"""One row per run under a runs/ or sweep directory: a column per swept key (norm, batch size, ... whatever
differs between the runs), status, best validation accuracy (model selection), final validation and test
accuracy, steps, wall time; or, with --seeds, one row per arm with the mean over its seeds and a 95% interval.

    normlab summarize runs/default                 # aligned table, sorted by run name
    normlab summarize runs --sort best_val_acc     # any column; --reverse for descending
    normlab summarize runs --csv > runs.csv        # or --markdown
    normlab summarize runs/my_sweep --seeds        # arms: mean [95% interval] over seeds (normlab.protocol)

Runs without a summary.json (killed, or still running) are listed as `incomplete` with their checkpoint step.
"""

import csv
import io
import math
import signal
import sys
from pathlib import Path
from typing import Any

from normlab.argtypes import command_parser, existing_dir
from normlab.config import identity
from normlab.protocol import mean_interval
from normlab.runlog import flat_hparams, read_summary
from normlab.runs import swept_keys

COLUMNS = ["run", "status", "best_val_acc", "val_acc", "test_acc", "steps", "wall_s"]
MEASURES = ("best_val_acc", "val_acc", "test_acc")  # what --seeds averages


def find_runs(root: Path) -> list[Path]:
    """Run dirs: those holding Hydra's .hydra/ or a summary.json."""
    dirs = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")}
    return sorted(dirs)


def run_row(run_dir: Path, root: Path) -> dict:
    row: dict[str, Any] = {"run": str(run_dir.relative_to(root)) or "."}
    summary = read_summary(run_dir / "summary.json")  # None: missing, damaged or not normlab's
    if summary is None:
        summary = {"status": "incomplete"}
        if (run_dir / "last.pt").exists():
            from normlab.runlog import DamagedCheckpoint, read_checkpoint

            try:
                summary["steps"] = read_checkpoint(run_dir / "last.pt")["step"]
            except DamagedCheckpoint:
                summary["status"] = "incomplete (damaged last.pt)"
    for key in COLUMNS[1:]:
        row[key] = summary.get(key)
    config = summary.get("config")
    row["config"] = flat_hparams(config if isinstance(config, dict) else {})
    if summary.get("status") == "failed":
        row["status"] = f"failed: {summary.get('error', '')}"[:80]
    return row


def fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if key == "wall_s" else f"{value:.4f}"
    return str(value)


def inert(value):
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @, a tab or a carriage return (a
    formula: `=HYPERLINK(...)` as a norm name) gets a leading apostrophe (OWASP's CSV-injection advice); numbers
    stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render(rows: list[dict], columns: list[str], style: str) -> str:
    if style == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: inert(v) for k, v in row.items()} for row in rows)
        return out.getvalue().rstrip("\n")
    cells = [[fmt(c, r.get(c)) for c in columns] for r in rows]
    if style == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths)) for c in cells]
    return "\n".join(lines)


def natural(value) -> tuple:
    """Numbers in numeric order (batch 2 before 32), then everything else as text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def by_seeds(rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per arm (the runs equal in every swept key): runs, seeds, and each measure's mean over them with
    its 95% t interval. Diverged and unfinished runs are counted, not averaged."""
    arms: dict[tuple, list[dict]] = {}
    for row in rows:
        arms.setdefault(tuple("-" if row.get(k) is None else str(row.get(k)) for k in keys), []).append(row)
    out = []
    for where, members in arms.items():
        # a copy of a run (the same config and seed) counts once
        done = list({identity(r["config"]): r for r in members if r["status"] == "completed"}.values())
        arm = dict(zip(keys, where), runs=len(members), completed=len(done))
        arm["seeds"] = ",".join(sorted({str(r["config"].get("seed")) for r in done}, key=lambda v: (len(v), v)))
        for m in MEASURES:
            values = [r[m] for r in done if r.get(m) is not None]
            mean, low, high = mean_interval(values) if values else (None, None, None)
            arm[m] = (
                None if mean is None else (f"{mean:.4f}" if low == -math.inf else f"{mean:.4f} [{low:.4f}, {high:.4f}]")
            )
        out.append(arm)
    return out


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("root", type=existing_dir, help="a runs/ or sweep directory")
    parser.add_argument("--sort", default=None, help="column to sort by (default: run, or the swept keys)")
    parser.add_argument("--reverse", action="store_true", help="sort descending")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--csv", action="store_true")
    group.add_argument("--markdown", action="store_true")
    parser.add_argument("--seeds", action="store_true", help="one row per arm: mean and 95%% interval over seeds")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends quietly
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    rows = [run_row(d, args.root) for d in find_runs(args.root)]
    if not rows:
        print(f"error: no runs under {args.root}", file=sys.stderr)
        return 2
    keys = swept_keys([r["config"] for r in rows if r["config"]])
    for row in rows:
        row.update({k: None if row["config"].get(k) in (None, "None") else row["config"][k] for k in keys})
    if args.seeds:
        rows, columns = by_seeds(rows, keys), [*keys, "runs", "completed", "seeds", *MEASURES]
    else:
        columns = [COLUMNS[0], *keys, *COLUMNS[1:]]
    sort = args.sort or ("run" if not args.seeds else None)
    if sort is not None and sort not in columns:
        print(f"error: --sort {sort} is not a column; choose from {', '.join(columns)}", file=sys.stderr)
        return 2
    if sort is not None:
        rows.sort(
            key=lambda r: (r.get(sort) is None, r.get(sort) if r.get(sort) is not None else 0), reverse=args.reverse
        )
    else:
        rows.sort(key=lambda r: [natural(r.get(k)) for k in keys])
    print(render(rows, columns, "csv" if args.csv else "markdown" if args.markdown else "table"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
