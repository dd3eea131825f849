"""One row per run under a runs/ or sweep directory: overrides, status, best validation accuracy (model
selection), final validation and test accuracy, steps, wall time.

    python scripts/summarize.py runs/default                 # aligned table, sorted by run name
    python scripts/summarize.py runs --sort best_val_acc     # any column; --reverse for descending
    python scripts/summarize.py runs --csv > runs.csv        # or --markdown

Runs without a summary.json (killed, or still running) are listed as `incomplete` with their checkpoint step.
"""

import argparse
import csv
import io
import json
import signal
import sys
from pathlib import Path

import yaml

COLUMNS = ["run", "overrides", "status", "best_val_acc", "val_acc", "test_acc", "steps", "wall_s"]


def find_runs(root: Path) -> list[Path]:
    """Run dirs: those holding Hydra's .hydra/ or a summary.json."""
    dirs = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")}
    return sorted(dirs)


def run_row(run_dir: Path, root: Path) -> dict:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    row = {"run": str(run_dir.relative_to(root)) or ".", "overrides": " ".join(overrides or [])}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        summary = {"status": "incomplete"}
        if (run_dir / "last.pt").exists():
            from normlab.runlog import DamagedCheckpoint, read_checkpoint

            try:
                summary["steps"] = read_checkpoint(run_dir / "last.pt")["step"]
            except DamagedCheckpoint:
                summary["status"] = "incomplete (damaged last.pt)"
    for key in COLUMNS[2:]:
        row[key] = summary.get(key)
    if summary.get("status") == "failed":
        row["status"] = f"failed: {summary.get('error', '')}"[:80]
    return row


def fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if key == "wall_s" else f"{value:.4f}"
    return str(value)


def render(rows: list[dict], style: str) -> str:
    if style == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    cells = [[fmt(c, r[c]) for c in COLUMNS] for r in rows]
    if style == "markdown":
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths)) for c in cells]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a runs/ or sweep directory")
    parser.add_argument("--sort", default="run", choices=COLUMNS, help="column to sort by (default: run)")
    parser.add_argument("--reverse", action="store_true", help="sort descending")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--csv", action="store_true")
    group.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends quietly
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    rows = [run_row(d, args.root) for d in find_runs(args.root)]
    if not rows:
        print(f"error: no runs under {args.root}", file=sys.stderr)
        return 2
    rows.sort(
        key=lambda r: (r[args.sort] is None, r[args.sort] if r[args.sort] is not None else 0), reverse=args.reverse
    )
    print(render(rows, "csv" if args.csv else "markdown" if args.markdown else "table"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
