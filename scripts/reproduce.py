"""Run a claim's sweep (`python run.py -m experiment=<claim>[_<profile>]`), then its report.

    python scripts/reproduce.py bn_convergence                 # quick profile (this CPU)
    python scripts/reproduce.py all --profile quick            # every claim (= make reproduce)
    python scripts/reproduce.py bn_small_batch --profile cpu   # longer CPU run; --profile full for a GPU

Finished runs are skipped, so an interrupted reproduction resumes where it stopped.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from normlab.claims import experiment_name, registry

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def run_sweep(claim: str, profile: str, extra: list[str]) -> None:
    experiment = experiment_name(claim, profile)
    command = [sys.executable, str(ROOT / "run.py"), "-m", f"experiment={experiment}", "progress=false", *extra]
    print("+", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"error: the sweep for {claim} exited with {result.returncode}")
    record = ROOT / "runs" / experiment / "reproduce.json"
    previous = json.loads(record.read_text()) if record.exists() else {}
    if wall > previous.get("wall_s", 0):  # keep the time of the run that did the work, not of a resume that skipped
        record.write_text(
            json.dumps({"wall_s": wall, "machine": machine(), "command": " ".join(command[1:])}, indent=2)
        )


def main(argv=None) -> int:
    claims = registry()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claim", choices=[*claims, "all"])
    parser.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    parser.add_argument("--report-only", action="store_true", help="skip the sweeps, rebuild the reports")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the sweeps, e.g. device=cuda")
    args = parser.parse_args(argv)
    names = list(claims) if args.claim == "all" else [args.claim]
    failed = []
    for name in names:
        if not args.report_only:
            run_sweep(name, args.profile, args.overrides)
        report = [sys.executable, str(ROOT / "scripts" / "report.py"), name, "--profile", args.profile]
        if subprocess.run(report, cwd=ROOT).returncode != 0:
            failed.append(name)  # the runs are kept: fix the report, then --report-only
    if failed:
        print(f"error: the report failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
