"""The reproduction pipeline: every experiment config composes and validates for every job of its sweep, and a
real (tiny) sweep goes through the report into README.md, plots and a summary whose verdict follows its numbers."""

import json

import pytest

from normlab.claims import registry, write_index, write_report
from normlab.cli import precheck
from normlab.protocol import VERDICTS

from conftest import CONF, ROOT, TINY, call_cli, call_script, run_cli

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_profile_validates(experiment):
    precheck(["-m", f"experiment={experiment}"], CONF)  # exits 2 on the first bad job


def test_every_pilot_is_a_claims_and_composes():
    """scripts/pilots.py's pilots: each on its claim's pilot experiment, at seed 0 only (never a reported seed)."""
    from normlab.claims.pilots import PILOTS

    for name, pilots in PILOTS.items():
        assert pilots.claim_of(name) in registry()
        for line in pilots.lines:
            jobs = precheck(["-m", f"experiment={pilots.experiment_of(name)}", *line.split()], CONF)
            assert jobs and {config.seed for _, config in jobs} == {0}


def test_every_claim_has_its_profiles():
    for claim in registry():
        assert {claim, f"{claim}_full"} <= set(EXPERIMENTS)


def test_tiny_bn_convergence_sweep_through_the_report(tmp_path):
    args = ["-m", "experiment=bn_convergence", *TINY, "max_steps=300", "eval_every=100", "seed=0,1"]
    result = call_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = write_report(registry()["bn_convergence"], "quick", tmp_path / "runs", tmp_path / "results")
    out = tmp_path / "results" / "bn_convergence"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["claim"] == "bn_convergence" and on_disk["verdict"] in VERDICTS and on_disk["runs"] == 4
    assert {"criterion", "profile", "numbers", "wall_s"} <= set(on_disk) and on_disk == json.loads(json.dumps(summary))
    readme = (out / "README.md").read_text()
    assert "## Criterion" in readme and "normlab reproduce bn_convergence" in readme
    assert (out / "fig1a_test_accuracy.png").stat().st_size > 1000
    # the verdict follows from the tests it reports, each with its interval and per-seed values
    outcomes = [t["outcome"] for t in on_disk["tests"]]
    expected = (
        "reproduced"
        if all(o == "holds" for o in outcomes)
        else "not_reproduced"
        if "contradicted" in outcomes
        else "inconclusive"
    )
    assert on_disk["verdict"] == expected and on_disk["seeds"] == 2
    assert all(len(t["favoured"]) == len(t["baseline"]) == 2 for t in on_disk["tests"])
    write_index(tmp_path / "results")
    assert "[bn_convergence](bn_convergence/README.md)" in (tmp_path / "results" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("claim", sorted(registry()))
def test_every_claim_end_to_end_on_tiny_data(tmp_path, claim):
    tiny = [a for a in TINY if not a.startswith("data.test_subset=")]
    args = ["-m", f"experiment={claim}", *tiny, "max_steps=20", "eval_every=10", "data.test_subset=200"]
    result = run_cli(*args, cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = write_report(registry()[claim], "quick", tmp_path / "runs", tmp_path / "results")
    assert summary["verdict"] in VERDICTS


@pytest.mark.parametrize("grid", ["1/3,3", "0,1,3", "1,x"])
def test_a_tuning_grid_without_1_or_with_a_bad_multiple_is_one_line_and_exit_2(grid, tmp_path):
    from conftest import call_script

    result = call_script("reproduce.py", "bn_convergence", "--tune", "--grid", grid, cwd=tmp_path)
    assert result.returncode == 2 and f"'{grid}'" in result.stderr and "Traceback" not in result.stderr


def test_a_tuning_seed_the_profile_reports_is_one_line_and_exit_2(tmp_path):
    from conftest import call_script

    result = call_script("reproduce.py", "sn_switches", "--profile", "cpu", "--tune", "--tune-seed", "7", cwd=tmp_path)
    assert result.returncode == 2 and "--tune-seed 7" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # 14 tiny runs through reproduce.py (~90 s); the fast suite's sweep-to-report test is below
def test_tuning_selects_each_arms_lr_on_validation_extends_an_edge_and_reports_beside_the_fixed_one(tmp_path):
    """reproduce.py --tune --grid 1/100,1 --extend 1 on tiny data: each arm runs its lr × 1/100 and 1 at a seed that
    is not reported (3, named by --tune-seed); at lr=1e-4 the larger lr wins after 40 steps in both arms (an edge),
    so each arm tries one step more (100x) and records the extension. The best validation endpoint is run with
    every reported seed, and the tuned report sits beside the fixed-lr one; the index lists both, and says that
    bn_convergence's reference (paper_full, tuned) is not made. Overridden runs never touch results/: both reports go
    beside the runs."""
    from conftest import call_script

    overrides = [*TINY, "max_steps=40", "eval_every=20", "seed=0,1", "lr=0.0001"]
    command = [
        "bn_convergence",
        "--tune",
        "--grid",
        "1/100,1",
        "--extend",
        "1",
        "--tune-seed",
        "3",
        "--jobs",
        "1",
        "--workdir",
        str(tmp_path),
        *overrides,
    ]
    result = call_script("reproduce.py", *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = tmp_path / "runs" / "bn_convergence" / "report" / "bn_convergence"
    fixed, tuned = (json.loads((report / d / "summary.json").read_text()) for d in (".", "tuned"))
    assert fixed["runs"] == 4 and fixed["variant"] == "fixed lr" and fixed["overrides"] == overrides
    assert tuned["variant"] == "tuned" and tuned["runs"] == 4 and tuned["seeds"] == 2
    record = json.loads((tmp_path / "runs" / "bn_convergence" / "tuned.json").read_text())["arms"]
    assert len(record) == 2
    for arm in record.values():
        scores = {float(lr): v for lr, v in arm["val_endpoint_by_lr"].items()}
        assert len(scores) == 3 and arm["selected"] == max(scores, key=scores.get) and arm["extended"] == 1
        assert sorted(scores) == pytest.approx([1e-6, 1e-4, 1e-2]) and arm["fixed_lr"] == pytest.approx(1e-4)
    assert (report / "tuned" / "lr_sensitivity.png").stat().st_size > 1000
    assert "(grid extended by 1)" in (report / "tuned" / "README.md").read_text()
    # each selection beside the tuning's own noise: its lead over the runner-up lr, and the arm's spread over seeds
    text = (report / "tuned" / "README.md").read_text()
    assert "| lead over the runner-up (points) | seeds' sd at the fixed lr |" in text
    for name, arm in record.items():
        best, runner_up = sorted(arm["val_endpoint_by_lr"].values(), reverse=True)[:2]
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {best - runner_up:.2f}" in row and ("within noise" in row) == (
            best - runner_up < float(row.rstrip(" |").rsplit("| ", 1)[1])
        )
    flags = "--tune --grid 1/100,1 --extend 1 --tune-seed 3"
    made_by = f"`normlab reproduce bn_convergence --profile quick {' '.join(overrides)} {flags}`"
    assert made_by in (report / "tuned" / "README.md").read_text()  # the command repeats the tuning
    index = (report.parent / "README.md").read_text()
    # the reference (paper_full, tuned: the paper's setup at 50,000 steps) is not made here: the index says so, quick
    # stands in
    assert "| [bn_convergence](bn_convergence/tuned/README.md) | quick, tuned |" in index
    assert "| [bn_convergence](bn_convergence/README.md) | **quick** (reference) |" in index
    assert "- bn_convergence: paper_full, tuned is its reference, not made yet" in index
    assert not (tmp_path / "results").exists()
    # the fixed-lr report made again counts exactly its 4 runs and leaves out the 6 tuning runs (seed 3) and the
    # 2 runs of each arm whose selected lr is not the fixed one
    again = call_script(
        "report.py",
        "bn_convergence",
        "--runs",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "again"),
        *overrides,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads((tmp_path / "again" / "bn_convergence" / "summary.json").read_text())
    moved = sum(arm["selected"] != arm["fixed_lr"] for arm in record.values())
    assert summary["runs"] == 4 and summary["left_out"] == 6 + 2 * moved
    # the tuning's cost survives a resumed tuning: its runs beyond the fixed-lr ones, their own times summed
    (fixed_lr,) = {arm["fixed_lr"] for arm in record.values()}  # both arms: the profile's lr
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "bn_convergence").glob("*/summary.json")]
    assert {s["config"]["seed"] for s in summaries} == {0, 1, 3}
    tried = sorted({s["config"]["lr"] for s in summaries if s["config"]["seed"] == 3})
    assert tried == pytest.approx([fixed_lr / 100, fixed_lr, 100 * fixed_lr])
    beyond = [s["wall_s"] for s in summaries if s["config"]["lr"] != fixed_lr or s["config"]["seed"] == 3]
    assert len(beyond) == 6 + 2 * moved
    assert (
        f"its {6 + 2 * moved} runs beyond the fixed-lr ones trained {sum(beyond) / 60:.1f} min"
        in (report / "tuned" / "README.md").read_text()
    )
    # the same call again, reports elsewhere (--results): every run is found, and the tuning keeps its own time
    tuned_json = tmp_path / "runs" / "bn_convergence" / "tuned.json"
    before = json.loads(tuned_json.read_text())
    report_only = ["--report-only", "--results", str(tmp_path / "elsewhere")]
    result = call_script("reproduce.py", *command, *report_only, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(tuned_json.read_text()) == before
    elsewhere = json.loads((tmp_path / "elsewhere" / "bn_convergence" / "tuned" / "summary.json").read_text())
    assert elsewhere["tests"] == tuned["tests"] and elsewhere["runs"] == 4


def test_a_profile_runs_its_claims_further_sweeps_and_its_report_counts_them():
    """bn_small_batch's cpu profile: the grid (BN, GN x 5 batch sizes) and the claim's further sweeps (BN with
    population statistics at every batch size, LN and IN at 32 and 2), 5 seeds each, seed 0 never among them."""
    from normlab.claims import profile_jobs

    jobs = profile_jobs(registry()["bn_small_batch"], "cpu", [], CONF)
    arms = {(c.norm.name, c.norm.bn_stats, c.batch_size) for _, c in jobs}
    assert len(jobs) == 5 * len(arms) == 5 * (10 + 5 + 4)
    assert {(n, b) for n, s, b in arms if n in ("layer", "instance")} == {
        (n, b) for n in ("layer", "instance") for b in (32, 2)
    }
    assert {b for n, s, b in arms if s == "batch_average"} == {32, 16, 8, 4, 2}
    assert {c.seed for _, c in jobs} == {1, 2, 3, 4, 5}


def test_finished_runs_are_archived_restored_skipped_and_reported(tmp_path):
    """archive_runs.py: save keeps the records of finished runs only; restore puts them back where a sweep finds
    them, so re-running it trains nothing; report.py reads the archive as a runs/ folder."""
    from conftest import call_script

    args = ["-m", "experiment=bn_small_batch", *TINY, "max_steps=3", "norm=batch,group", "batch_size=32", "seed=1,2"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "runs" / "bn_small_batch"
    (sweep / "killed-run").mkdir()
    (sweep / "killed-run" / "metrics.jsonl").write_text("{}\n")  # no summary: never finished

    def script(*argv):
        return call_script("archive_runs.py", *argv, cwd=tmp_path)

    first = next(p.parent for p in sweep.glob("*/summary.json"))
    (first / "contrast.json").write_text("{}")  # in_contrast's cached evaluations: its report reads them
    saved = script("save", str(sweep), "archive")
    assert saved.returncode == 0 and "saved 4 finished runs" in saved.stdout, saved.stderr
    kept = sorted(p.name for p in (tmp_path / "archive" / "bn_small_batch").iterdir())
    assert len(kept) == 4 and "killed-run" not in kept
    files = {p.relative_to(tmp_path / "archive" / "bn_small_batch") for p in (tmp_path / "archive").glob("*/*/*")}
    assert {f.name for f in files} == {"summary.json", "metrics.jsonl", "contrast.json"}
    assert [f.parent.name for f in files if f.name == "contrast.json"] == [first.name]  # no checkpoint, no events
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    restored = script("restore", "archive", str(fresh / "runs"))
    assert "restored 4 runs" in restored.stdout
    again = script("restore", "archive", str(fresh / "runs"))
    assert "restored 0 runs" in again.stdout and "4 run dirs already there" in again.stdout
    rerun = run_cli(*args, cwd=fresh)
    assert rerun.returncode == 0 and rerun.stdout.count("skipped (already completed") == 4, rerun.stdout[-2000:]
    summary = write_report(registry()["bn_small_batch"], "quick", tmp_path / "archive", tmp_path / "results")
    assert summary["runs"] == 4 and summary["seeds"] == 2
    assert script("save", str(tmp_path / "missing"), "archive").returncode == 2


@pytest.mark.slow
def test_verify_re_makes_a_reference_seed_and_catches_a_changed_record(tmp_path):
    """`normlab verify ln_rnn`: seed 0 of the cpu reference re-made at this commit agrees with its archived records
    evaluation by evaluation; an archived record changed by one evaluation's accuracy is caught (exit 1)."""
    import json
    import shutil

    from normlab.commands.verify import main

    archive = tmp_path / "results" / "ln_rnn" / "cpu" / "runs"
    shutil.copytree(ROOT / "results" / "ln_rnn" / "cpu" / "runs", archive)
    doctored = archive / "ln_rnn_cpu" / "mnist-lstm-none-bs64-lr0.001-s0" / "metrics.jsonl"
    rows = [json.loads(line) for line in doctored.read_text().splitlines()]
    rows[3]["val_acc"] += 0.01
    doctored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = call_script("verify.py", "ln_rnn", "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mnist-lstm-layer-bs64-lr0.001-s0: agrees, largest |difference| 0.0000 points" in result.stdout
    assert "mnist-lstm-none-bs64-lr0.001-s0: DIFFERS, largest |difference| 1.0000 points" in result.stdout
    assert "NOT verified (1 of 2 runs) against runs made at c968b9d" in result.stdout
    assert main(["ln_rnn", "--seed", "99", "--results", str(tmp_path / "results")]) == 2


def test_report_finds_the_committed_archive_and_never_rewrites_results_unless_told(tmp_path):
    """`normlab report <claim> --profile P` in a fresh clone (no runs/): it reads the runs archived beside the
    committed report and writes under runs/<experiment>/report/; results/ only with --in-place; with neither runs
    nor archive, one line naming the command that makes them and its time."""
    import shutil

    from conftest import call_script

    shutil.copytree(ROOT / "results" / "ln_rnn", tmp_path / "results" / "ln_rnn")
    before = (tmp_path / "results" / "ln_rnn" / "cpu" / "README.md").read_text()
    result = call_script("report.py", "ln_rnn", "--profile", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "from results/ln_rnn/cpu/runs/ln_rnn_cpu" in result.stdout
    assert (tmp_path / "runs" / "ln_rnn_cpu" / "report" / "ln_rnn" / "cpu" / "README.md").is_file()
    assert (tmp_path / "results" / "ln_rnn" / "cpu" / "README.md").read_text() == before
    in_place = call_script("report.py", "ln_rnn", "--profile", "cpu", "--in-place", cwd=tmp_path)
    assert in_place.returncode == 0 and "wrote results/ln_rnn/cpu/README.md" in in_place.stdout
    missing = call_script("report.py", "bn_lstm", "--profile", "full", cwd=tmp_path)
    assert missing.returncode == 2 and "make them with `normlab reproduce bn_lstm --profile full`" in missing.stderr
