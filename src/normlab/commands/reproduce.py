"""Run a claim's sweep (`normlab train -m experiment=<claim>[_<profile>]`), then its report.

    normlab reproduce bn_convergence                 # quick profile (this CPU)
    normlab reproduce all --profile quick            # every claim (= make reproduce)
    normlab reproduce bn_small_batch --profile cpu   # longer CPU run; --profile full for a GPU
    normlab reproduce bn_small_batch --tune          # + each arm at its own tuned learning rate

Finished runs are skipped, so an interrupted reproduction resumes where it stopped. Sweeps run --jobs runs at
once (default: one per CPU core) through Hydra's joblib launcher, each with cores / jobs threads (one thread per
job by default, so that the results do not depend on how many cores the next machine has).
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

from normlab.argtypes import command_parser, existing_dir, non_negative_int, positive_int
from normlab.claims import PROFILES, experiment_name, profile_jobs, registry, write_index, write_report
from normlab.claims.base import sweep_lines
from normlab.cli import CONF, SWEEPS_EXTRA, installed
from normlab.commands import normlab_command, shown
from normlab.config import Config


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def usable_cores() -> int:
    """The cores this process may run on (`taskset` and container limits included), where os.cpu_count() counts
    the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sweep(
    claim: str, profile: str, extra: list[str], jobs: int, work: Path, record: bool = True, sweeps=([],)
) -> float:
    """`normlab train -m experiment=<claim>_<profile> <sweep> <extra>` for each of `sweeps` (the profile's: its grid and
    the claim's further sweeps, `sweep_lines`); with `record`, their summed wall time goes into
    runs/<experiment>/reproduce.json."""
    experiment = experiment_name(claim, profile)
    if jobs > 1 and not installed(SWEEPS_EXTRA[("hydra/launcher", "parallel")]):
        print(f"note: --jobs {jobs} needs normlab's `sweeps` extra (pip install 'normlab[sweeps]'): one job at a time")
        jobs = 1
    threads = max(1, usable_cores() // jobs)
    parallel = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    wall, commands = 0.0, []
    for sweep in sweeps:
        command = [*normlab_command("train"), "-m", f"experiment={experiment}", "progress=false", *parallel]
        command += [*sweep, *extra]
        print(f"+ OMP_NUM_THREADS={threads}", shown(command), flush=True)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall += time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"error: the sweep for {claim} exited with {result.returncode}")
        commands.append(f"OMP_NUM_THREADS={threads} {shown(command)}")
    path = work / "runs" / experiment / "reproduce.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    if record and wall > previous.get("wall_s", 0):  # the time of the run that did the work, not of a resume
        path.write_text(
            json.dumps(
                {
                    "wall_s": wall,
                    "machine": machine(),
                    "jobs": jobs,
                    "threads_per_job": threads,
                    "command": " && ".join(commands),
                },
                indent=2,
            )
        )
    return wall


TUNE_GRID = "1/3,1,3"  # multiples of the profile's lr: log-spaced, the same budget for every arm
EXTEND = 2  # steps an arm's lr grid grows beyond an edge selection, by default


def parse_grid(text: str) -> tuple[float, ...]:
    """`--grid 1/9,1/3,1,3,9`: the lr multiples every arm tries (fractions allowed; 1 = the profile's lr)."""
    try:
        grid = tuple(float(Fraction(part)) for part in text.split(","))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 1/3,1,3") from None
    if 1.0 not in grid or any(m <= 0 for m in grid):
        raise argparse.ArgumentTypeError(f"{text!r}: the multiples must be positive and include 1 (the fixed lr)")
    return tuple(sorted(set(grid)))


def tune_flags(grid: tuple[float, ...], extend: int = EXTEND, seed: int | None = None) -> str:
    """The flags that repeat this tuning, for the report's command: `--tune`, and `--grid` / `--extend` /
    `--tune-seed` where not the default."""
    flags = " --tune"
    if grid != parse_grid(TUNE_GRID):
        flags += " --grid " + ",".join(str(Fraction(m).limit_denominator(1000)) for m in grid)
    flags += f" --extend {extend}" if extend != EXTEND else ""
    return flags + (f" --tune-seed {seed}" if seed is not None else "")


def reported_seeds(claim: str, profile: str, extra: list[str]) -> set[int]:
    """The seeds the profile's sweeps report (a tuning seed must be none of them)."""
    return {cfg.seed for _, cfg in profile_jobs(registry()[claim], profile, extra, CONF)}


def sweep_jobs(experiment: str, overrides: list[str]) -> list[tuple[tuple[str, ...], Config]]:
    """Every job of `normlab train -m experiment=<experiment> <overrides>`: its overrides and typed config."""
    from normlab.cli import precheck

    return precheck(["-m", f"experiment={experiment}", *overrides], CONF)


def sweeps_lr(claim: str, profile: str, extra: list[str]) -> bool:
    """Whether the claim's sweep varies the learning rate itself (bn_learning_rate): tuning it means nothing."""
    jobs = profile_jobs(registry()[claim], profile, extra, CONF)
    return any(o.startswith("lr=") and o not in extra for job, _ in jobs for o in job)


def edge_side(best: float, lrs: list[float]) -> int:
    """-1 if `best` is the lowest of `lrs`, +1 if the highest, 0 inside (a grid of one lr: 0)."""
    low, high = min(lrs), max(lrs)
    if low == high:
        return 0
    return -1 if math.isclose(best, low) else 1 if math.isclose(best, high) else 0


def arm_of(job: tuple[str, ...]) -> tuple[str, ...]:
    """A job's arm: its overrides less the seed, the experiment and the lr (what tuning chooses)."""
    return tuple(o for o in job if not o.startswith(("seed=", "experiment=", "lr=")))


def tune(
    claim: str,
    profile: str,
    extra: list[str],
    jobs: int,
    work: Path,
    results: Path,
    grid: tuple[float, ...],
    extend: int = EXTEND,
    tuning_seed: int | None = None,
) -> tuple[list[dict], str]:
    """Per-arm learning-rate tuning on the validation split: every arm of the profile (its sweep without the seed)
    runs `grid` × its lr at a tuning seed that is not among the reported ones (`tuning_seed`, else the lowest free
    one: 0 where the profile reports 1-5); an arm whose best lr is at the grid's edge tries one more step beyond
    it, up to `extend` steps; the lr with the best validation endpoint is selected, then run with every reported seed
    (those at the profile's own lr are its fixed-lr runs: found, not run again). Returns the configs of the tuned
    runs and a markdown note (selection table, sensitivity plot)."""
    from normlab.claims import experiment_name, matching, results_dir
    from normlab.claims.plots import new_figure, save
    from normlab.runs import Run, load_runs

    experiment = experiment_name(claim, profile)
    base = profile_jobs(registry()[claim], profile, extra, CONF)  # every sweep's arms
    arms: dict[tuple[str, ...], Config] = {}
    for job, cfg in base:
        arms.setdefault(arm_of(job), cfg)  # the arm's first seed
    seeds = {cfg.seed for _, cfg in base}
    if tuning_seed is None:
        tuning_seed = next(s for s in range(len(seeds) + 1) if s not in seeds)
    assert tuning_seed not in seeds, "a tuning seed is never a reported one (main refuses it)"
    rest = [o for o in extra if not o.startswith(("seed=", "lr="))]  # the arm's seed and lr are set here
    start = time.perf_counter()
    selected: dict[tuple[str, ...], float] = {}
    record: dict[str, dict] = {}
    extra_runs: dict[Path, Run] = {}
    for arm, cfg in arms.items():
        multiples = list(grid)
        while True:  # an edge selection extends the arm's grid by one step on that side, up to `extend` steps
            grid_lrs = ",".join(repr(cfg.lr * m) for m in multiples)
            command = [*arm, f"seed={tuning_seed}", f"lr={grid_lrs}", *rest]
            run_sweep(claim, profile, command, jobs, work, record=False)
            tuning_jobs = [c.to_dict() for _, c in sweep_jobs(experiment, command)]
            runs, _ = matching(load_runs(work / "runs" / experiment), tuning_jobs)
            scores = {r.config["lr"]: r.endpoint("val_acc") for r in runs}
            extra_runs.update({r.path: r for r in runs})  # the tuning seed's runs: none is a fixed-lr run
            best = max(scores, key=lambda lr: scores[lr])
            side = edge_side(best, [cfg.lr * m for m in multiples])
            if side == 0 or len(multiples) - len(grid) >= extend or len(grid) < 2:
                break
            step = grid[1] / grid[0] if side < 0 else grid[-1] / grid[-2]
            multiples = [multiples[0] / step, *multiples] if side < 0 else [*multiples, multiples[-1] * step]
        selected[arm] = best
        record[" ".join(arm) or "(one arm)"] = {
            "fixed_lr": cfg.lr,
            "val_endpoint_by_lr": scores,
            "selected": best,
            "extended": len(multiples) - len(grid),  # steps added beyond --grid
            "at_edge": side != 0,  # still at the (extended) grid's edge: its best lr may lie beyond
        }
    # the selection against the tuning's own noise: the best lr's lead over the runner-up at the tuning seed, beside
    # the spread of the arm's validation endpoint over the reported seeds at its fixed lr (one seed's ranking of
    # two lrs closer than that is a coin toss)
    runs_now = load_runs(work / "runs" / experiment)
    lead_and_spread = {}
    for arm in arms:
        ranked = sorted(record[" ".join(arm) or "(one arm)"]["val_endpoint_by_lr"].values(), reverse=True)
        fixed_runs = matching(runs_now, [c.to_dict() for job, c in base if arm_of(job) == arm])[0]
        spread = [r.endpoint("val_acc") for r in fixed_runs]
        lead = ranked[0] - ranked[1] if len(ranked) > 1 else math.nan
        sd = statistics.stdev(spread) if len(spread) > 1 else math.nan
        lead_and_spread[" ".join(arm) or "(one arm)"] = (lead, sd)
    tuned_jobs = []
    for arm, lr in selected.items():
        command = [*arm, f"lr={lr!r}", *(o for o in extra if not o.startswith("lr="))]
        run_sweep(claim, profile, command, jobs, work, record=False)
        jobs_of_arm = [c.to_dict() for _, c in sweep_jobs(experiment, command)]
        tuned_jobs += jobs_of_arm
        runs, _ = matching(load_runs(work / "runs" / experiment), jobs_of_arm)
        extra_runs.update({r.path: r for r in runs if r.config["lr"] != arms[arm].lr})
    wall = time.perf_counter() - start
    # a tuning resumed across calls is timed by its runs' own training time too: the call's wall misses earlier calls
    trained = sum(r.summary.get("wall_s") or 0 for r in extra_runs.values())
    path = work / "runs" / experiment / "tuned.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    if previous.get("arms") == json.loads(json.dumps(record)):  # the same tuning again: keep the time of the call
        wall = previous.get("wall_s", wall)  # that finished it (this one found every run made; its wall is not it)
    path.write_text(json.dumps({"wall_s": wall, "grid": grid, "arms": record}, indent=2))
    out = results_dir(results, claim, profile) / "tuned"
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = new_figure(figsize=(6, 4))
    for name, r in record.items():
        lrs = sorted(r["val_endpoint_by_lr"])
        ax.plot(lrs, [r["val_endpoint_by_lr"][lr] for lr in lrs], marker="o", label=name)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="validation accuracy % (endpoint, seed 0)", title="lr sensitivity per arm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    plot = save(fig, out / "lr_sensitivity.png")
    rows = []
    for name, r in record.items():
        by_lr = ", ".join(f"{lr:.4g}: {v:.2f}" for lr, v in sorted(r["val_endpoint_by_lr"].items()))
        edge = f" (grid extended by {r['extended']})" if r["extended"] else ""
        edge += " (still at the grid's edge)" if r["at_edge"] else ""
        lead, sd = lead_and_spread[name]
        noise = " (within noise: one seed cannot rank these lrs)" if lead < sd else ""
        rows.append(
            f"| {name} | {r['fixed_lr']:.4g} | {by_lr} | **{r['selected']:.4g}**{edge} | {lead:.2f}{noise} | {sd:.2f} |"
        )
    scaled = sorted({c.lr_batch_size for c in arms.values() if c.lr_batch_size is not None})
    given_for = (
        f" Its lrs are given for batch {scaled[0]}: a run trains at lr · batch_size / {scaled[0]}." if scaled else ""
    )
    note = (
        f"\n**Tuning** ({wall / 60:.1f} min of wall time, the call that finished it; its {len(extra_runs)} runs "
        f"beyond the fixed-lr ones trained {trained / 60:.1f} min, summed over the runs): every arm ran its fixed lr × "
        f"{', '.join(f'{m:.3g}' for m in grid)} "
        f"at seed {tuning_seed}, which is not a reported seed (an arm whose best lr was at the grid's edge tried "
        f"up to {extend} more steps beyond it); the lr with the best validation endpoint was run "
        "with every reported seed (the test set was not read). The fixed-lr report is the profile's own (one "
        f"directory up).{given_for}\n\n"
        "| arm | fixed lr | validation endpoint % by lr | selected | lead over the runner-up (points) | seeds' sd "
        "at the fixed lr |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + f"\n\n![{plot}]({plot})\n"
    )
    return tuned_jobs, note


def main(argv=None) -> int:
    claims = registry()
    parser = command_parser(__doc__)
    parser.add_argument("claim", choices=[*claims, "all"])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--report-only", action="store_true", help="skip the sweeps, rebuild the reports")
    parser.add_argument(
        "--jobs", type=positive_int, default=os.cpu_count() or 1, help="runs at once (default: CPU cores)"
    )
    parser.add_argument("--tune", action="store_true", help="also tune each arm's lr on validation (--grid)")
    parser.add_argument(
        "--grid",
        type=parse_grid,
        default=parse_grid(TUNE_GRID),
        help=f"lr multiples each arm tries with --tune (default {TUNE_GRID})",
    )
    parser.add_argument(
        "--extend",
        type=non_negative_int,
        default=EXTEND,
        help=f"steps an arm's grid grows beyond an edge selection (default {EXTEND}; 0: never)",
    )
    parser.add_argument(
        "--tune-seed",
        type=non_negative_int,
        help="the seed --tune selects lrs on (default: the lowest seed the profile does not report)",
    )
    parser.add_argument(
        "--workdir", type=existing_dir, default=Path("."), help="where runs/ and results/ go (default: here)"
    )
    parser.add_argument("--results", type=Path, help="where the reports go (default: <workdir>/results)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the sweeps, e.g. device=cuda")
    args = parser.parse_intermixed_args(argv)
    names = list(claims) if args.claim == "all" else [args.claim]
    fixed_lr = {name for name in names if args.tune and sweeps_lr(name, args.profile, args.overrides)}
    if fixed_lr and args.claim != "all":  # refused before any sweep starts
        parser.error(f"--tune is not allowed for {args.claim}: it sweeps the learning rate itself")
    for name in names if args.tune_seed is not None else []:
        if args.tune_seed in reported_seeds(name, args.profile, args.overrides):
            parser.error(f"--tune-seed {args.tune_seed}: {name}'s {args.profile} profile reports that seed")
    failed = []
    work = args.workdir.resolve()
    for name in names:
        # a report of overridden runs never rewrites the committed results (report.py puts it beside the runs)
        experiment = experiment_name(name, args.profile)
        results = args.results or (work / "runs" / experiment / "report" if args.overrides else work / "results")
        if not args.report_only:
            sweeps = sweep_lines(claims[name], args.profile)
            run_sweep(name, args.profile, args.overrides, max(1, args.jobs), work, sweeps=sweeps)
        report = [*normlab_command("report"), name, "--profile", args.profile]
        report += ["--runs", str(work / "runs"), "--results", str(results), *args.overrides]
        if subprocess.run(report, cwd=work).returncode != 0:
            failed.append(name)  # the runs are kept: fix the report, then --report-only
        if args.tune and name not in fixed_lr:  # (`all --tune` tunes the claims that do not sweep the lr)
            jobs, note = tune(
                name,
                args.profile,
                args.overrides,
                max(1, args.jobs),
                work,
                results,
                args.grid,
                args.extend,
                args.tune_seed,
            )
            summary = write_report(
                claims[name],
                args.profile,
                work / "runs",
                results,
                jobs,
                tuple(args.overrides),
                variant="tuned",
                notes=note,
                flags=tune_flags(args.grid, args.extend, args.tune_seed),
            )
            print(f"{name} ({args.profile}, tuned): {summary['verdict']} — {summary['reason']}")
            write_index(results)
    if failed:
        print(f"error: the report failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
