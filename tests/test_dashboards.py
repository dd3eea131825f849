"""What a person looks at: TensorBoard serving a finished sweep (read over its HTTP API), the summarize and plot
scripts, the joblib launcher, the SLURM launcher's config, and a 3-trial Optuna search."""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CONF, ROOT, TINY, call_cli, call_script, run_cli

SWEEP = ["-m", *TINY, "norm=none,batch", "max_steps=10", "eval_every=5"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    result = call_cli(*SWEEP, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "runs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-XSRF-Protected": "1", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def test_tensorboard_serves_every_run_scalar_and_hparam(sweep):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(sweep),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast=false",
        "--reload_interval",
        "1",
    ]
    tb = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        runs, tags, deadline = [], {}, time.time() + 90
        # bounded: TensorBoard starts, lists the runs, then loads each one's events (a loaded machine: seconds)
        while not (len(runs) == 2 and all("acc/test" in tags.get(r, {}) for r in runs)) and time.time() < deadline:
            time.sleep(1)
            try:
                runs, tags = get(f"{base}/data/runs"), get(f"{base}/data/plugin/scalars/tags")
            except OSError:
                continue
        assert sorted(r.split("/")[-1].split("-")[2] for r in runs) == ["batch", "none"]
        for run in runs:
            assert {
                "loss/train",
                "acc/train",
                "loss/val",
                "acc/val",
                "loss/test",
                "acc/test",
                "lr",
                "samples_per_s",
            } <= set(tags[run])
        experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        # norm, batch size and lr, then what the command chose; no constant left at its default, no operational key
        assert hparams == {
            "norm.name",
            "batch_size",
            "lr",
            "max_steps",
            "data.train_subset",
            "data.test_subset",
            "data.val_size",
        }
        first = experiment["hparamInfos"][0]  # the swept key leads the HPARAMS table
        assert first["name"] == "norm.name" and first.get("differs") is True
        assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"acc/val", "acc/test", "loss/test"}
        groups = get(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        assert sorted(g["hparams"]["norm.name"] for g in groups) == ["batch", "none"]
        assert [s["status"] for g in groups for s in g["sessions"]] == ["STATUS_SUCCESS"] * 2  # ended by log_end
        for g in groups:  # each run's final metrics sit beside its config: the sortable table of the HPARAMS tab
            values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
            summary = json.loads(next(sweep.rglob(f"*-{g['hparams']['norm.name']}-*/summary.json")).read_text())
            assert values["acc/test"] == pytest.approx(summary["test_acc"])
        assert "custom_scalars" in get(f"{base}/data/plugins_listing")
    finally:
        tb.terminate()
        tb.wait(timeout=30)


def script(name, *args):
    return call_script(name, *map(str, args), cwd=Path.cwd())


def test_summarize_lists_sorts_and_exports(sweep):
    table = script("summarize.py", sweep, "--sort", "best_val_acc", "--reverse")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["run", "norm.name", "status", "best_val_acc", "val_acc", "test_acc", "steps", "wall_s"]
    assert "-batch-" in lines[1] and "-none-" in lines[2]  # BN first: higher accuracy after 10 steps
    markdown = script("summarize.py", sweep, "--markdown").stdout.splitlines()
    assert markdown[0].startswith("| run |") and len(markdown) == 4
    assert script("summarize.py", sweep / "nothing").returncode == 2
    assert script("summarize.py", sweep, "--sort", "nope").returncode == 2


def test_summarize_aggregates_over_seeds_with_intervals(tmp_path):
    from normlab.protocol import mean_interval

    accs = {("batch", 0): 0.50, ("batch", 1): 0.60, ("batch", 2): 0.55, ("none", 0): 0.30, ("none", 1): 0.32}
    for (norm, seed), acc in accs.items():
        run = tmp_path / f"{norm}-s{seed}"
        run.mkdir()
        config = {"norm": {"name": norm}, "batch_size": 8, "seed": seed}
        summary = {"status": "completed", "best_val_acc": acc, "val_acc": acc, "test_acc": acc - 0.01, "config": config}
        (run / "summary.json").write_text(json.dumps(summary))
    out = script("summarize.py", tmp_path, "--seeds", "--csv")
    assert out.returncode == 0, out.stderr
    rows = {r["norm.name"]: r for r in csv.DictReader(out.stdout.splitlines())}
    assert set(rows) == {"batch", "none"} and rows["batch"]["seeds"] == "0,1,2" and rows["none"]["runs"] == "2"
    mean, low, high = mean_interval([0.50, 0.60, 0.55])
    assert rows["batch"]["best_val_acc"] == f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def test_plot_groups_runs_by_a_config_key(sweep, tmp_path):
    out = tmp_path / "plot.png"
    result = script("plot.py", sweep, "--group", "norm.name", "--out", out)
    assert result.returncode == 0 and out.stat().st_size > 1000 and "2 groups" in result.stdout
    assert script("plot.py", sweep, "--group", "no.such.key", "--out", out).returncode == 2
    default = script("plot.py", sweep, "--out", out)  # grouped by every swept key (here: the norm)
    assert default.returncode == 0 and "2 groups by norm.name" in default.stdout and "note:" not in default.stdout
    one = script("plot.py", sweep, "--metric", "test_acc", "--filter", "norm.name=batch", "--out", out)
    assert one.returncode == 0


def test_plot_names_a_group_with_one_evaluation(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    config = {"norm": {"name": "batch"}, "batch_size": 8, "seed": 0}
    (run / "summary.json").write_text(json.dumps({"status": "completed", "config": config}))
    record = {"step": 10, "epoch": 1.0, "train_loss": 1.0, "test_acc": 0.5}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    result = script("plot.py", tmp_path, "--group", "norm.name", "--out", tmp_path / "p.png")
    assert result.returncode == 0 and "note: norm.name=batch has one evaluation: a point" in result.stdout


@pytest.mark.slow  # joblib's worker processes, each importing torch (~25 s)
def test_joblib_launcher_runs_a_sweep_in_parallel(tmp_path):
    result = run_cli("-m", "hydra/launcher=parallel", *TINY, "norm=none,batch", "max_steps=5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "runs").rglob("summary.json"))) == 2


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from normlab.cli import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 60


def test_optuna_search_runs_three_trials_and_reports_the_best(tmp_path):
    args = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY, "max_steps=10", "eval_every=5"]
    result = call_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import yaml

    best = yaml.safe_load((tmp_path / "runs" / "optimization_results.yaml").read_text())
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("summary.json")]
    assert len(summaries) == 3
    assert best["best_value"] == max(s["best_val_acc"] for s in summaries)
    assert 0.001 <= best["best_params"]["lr"] <= 1.0
    output = result.stdout + result.stderr
    assert "setup plugin" not in output and "Best value" in output  # alembic's lines gone, the sweeper's kept


def _fake_run(root, norm, batch_size, seed, acc, name="", **extra):
    """A finished run on disk: its summary and a metrics.jsonl whose validation curve ends at `acc`."""
    config = {
        "norm": {"name": norm},
        "batch_size": batch_size,
        "seed": seed,
        "lr": 0.1,
        "scheduler": {"name": "cosine"},
        **extra,
    }
    run = root / f"{norm}-bs{batch_size}-s{seed}{name}"
    run.mkdir(parents=True)
    summary = {"status": "completed", "config": config, "samples_per_s": 1000.0 * batch_size, "test_acc": acc}
    if "steps" in extra:
        summary["steps"] = config.pop("steps")
    (run / "summary.json").write_text(json.dumps(summary))
    records = [
        {"step": s, "val_acc": acc - 0.1 + 0.05 * i, "test_acc": acc - 0.1 + 0.05 * i}
        for i, s in enumerate((10, 20, 30))
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_compare_ranks_norms_per_batch_size_and_says_how_sure(tmp_path):
    noise = (0.0, 0.004, -0.004)
    for seed in range(3):
        for norm, bs, acc in (("batch", 32, 0.80), ("group", 32, 0.80), ("batch", 2, 0.60), ("group", 2, 0.78)):
            _fake_run(tmp_path / "sweep", norm, bs, seed, acc + noise[seed] * (norm == "group"))
    out = tmp_path / "plot.png"
    result = script("compare.py", tmp_path / "sweep", "--out", out)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    bs2, bs32 = text.split("### batch_size=32")[0], text.split("### batch_size=32")[1]
    assert "### batch_size=2" in bs2 and bs2.index("| 1 | group |") < bs2.index("| 2 | batch |")
    assert "**Recommendation: group** — ahead of every other arm; of the runner-up: group − batch" in bs2  # sure
    assert "**Recommendation: " in bs32 and " or " in bs32 and "not separable" in bs32  # a tie: says so
    assert out.stat().st_size > 1000
    assert script("compare.py", tmp_path / "sweep", "--by", "no.such.key").returncode == 2


def test_compare_writes_its_answer_into_the_sweeps_tensorboard_adding_a_step_per_run_count(tmp_path):
    """--tensorboard: the table (TEXT) and accuracy vs batch size (IMAGES) in <sweep>/compare's events, at step =
    the runs compared; a second compare after more runs finished adds a step beside the first."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for seed in range(2):
        for norm, bs, acc in (("batch", 32, 0.80), ("group", 32, 0.78), ("batch", 2, 0.60), ("group", 2, 0.75)):
            _fake_run(tmp_path / "sweep", norm, bs, seed, acc + 0.01 * seed)
    assert script("compare.py", tmp_path / "sweep", "--tensorboard").returncode == 0
    _fake_run(tmp_path / "sweep", "batch", 2, 2, 0.61)
    result = script("compare.py", tmp_path / "sweep", "--tensorboard")
    assert result.returncode == 0 and "tensorboard --logdir" in result.stdout, result.stderr
    events = EventAccumulator(str(tmp_path / "sweep" / "compare"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    (image_tag,) = events.Tags()["images"]
    assert image_tag == "compare/norm.name by batch_size"
    assert [e.step for e in events.Images(image_tag)] == [8, 9]
    assert all(e.width > 300 and e.encoded_image_string.startswith(b"\x89PNG") for e in events.Images(image_tag))
    (text_tag,) = [t for t in events.Tags()["tensors"] if t.startswith("compare/norm.name")]
    texts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors(text_tag)]
    assert [e.step for e in events.Tensors(text_tag)] == [8, 9] and "**Recommendation: group**" in texts[-1]


def test_compare_never_drops_a_tied_norm_keeps_intervals_in_0_100_and_orders_batch_sizes_as_numbers(tmp_path):
    """Three norms at three batch sizes: at batch 32 layer is a hair below group, which ties with batch, so all three
    are named; an arm near 100% gets an interval that stays below 100; batch sizes read 2, 8, 32 (not 2, 32, 8);
    arms that trained on different numbers of images are flagged."""
    noise = (0.0, 0.01, -0.01)
    for seed in range(3):
        for norm, bs, acc in (
            ("batch", 32, 0.80),
            ("group", 32, 0.80),
            ("layer", 32, 0.7998),
            ("batch", 8, 0.70),
            ("group", 8, 0.99),
            ("layer", 8, 0.60),
            ("batch", 2, 0.50),
            ("group", 2, 0.78),
            ("layer", 2, 0.60),
        ):
            sign = {"batch": 1, "group": -1, "layer": 0.5}[norm]
            _fake_run(tmp_path / "sweep", norm, bs, seed, acc + sign * noise[seed], steps=100)
    text = script("compare.py", tmp_path / "sweep", "--by", "batch_size").stdout
    assert text.index("batch_size=2\n") < text.index("batch_size=8\n") < text.index("batch_size=32\n")
    at_32 = text.split("### batch_size=32")[1]
    assert "**Recommendation: " in at_32 and all(n in at_32.split("**Recommendation: ")[1] for n in ("layer", "group"))
    bounds = [float(b) for pair in re.findall(r"\[([\d.]+), ([\d.]+)\]", text) for b in pair]
    assert len(bounds) == 2 * 2 * 9 and all(0 <= b <= 100 for b in bounds)
    assert "| 3,200 |" in at_32 and "| 200 |" in text and "different numbers of images" in text


def test_what_never_makes_two_arms_includes_every_run_invariant_key():
    from normlab.config import RUN_INVARIANT
    from normlab.runs import NOT_SWEPT

    assert set(RUN_INVARIANT) <= set(NOT_SWEPT)


def test_compare_and_summarize_never_show_more_certainty_than_the_runs_hold(tmp_path):
    """The new user's folder: two seed-0 sweeps of the card's command, one with lr_batch_size=32, and a copy of
    one run. Pooled, compare used to recommend batch with a zero-width interval over "2 seeds"."""
    sweep = tmp_path / "default"
    for lr_batch_size, accs in ((None, (0.80, 0.70)), (32, (0.82, 0.66))):
        for norm, acc in zip(("batch", "group"), accs, strict=True):
            for bs in (2, 32):
                _fake_run(
                    sweep,
                    norm,
                    bs,
                    0,
                    acc - (0.1 if bs == 2 and norm == "batch" else 0),
                    name=f"-lbs{lr_batch_size}",
                    lr_batch_size=lr_batch_size,
                )
    _fake_run(sweep, "batch", 2, 0, 0.70, name="-copy", lr_batch_size=None)  # the same run again
    pooled = script("compare.py", sweep, "--by", "batch_size")
    assert pooled.returncode == 2 and "also differ in lr_batch_size, which --by does not name" in pooled.stderr
    result = script("compare.py", sweep)
    assert result.returncode == 0, result.stderr
    assert "1 run(s) are copies of another run" in result.stdout
    assert "**No recommendation** — " in result.stdout and "at 1 seed: no interval" in result.stdout
    assert "**Recommendation: " not in result.stdout and "(1 seed)" in result.stdout
    seeds = script("summarize.py", sweep, "--seeds", "--csv")
    rows = list(csv.DictReader(seeds.stdout.splitlines()))
    assert seeds.returncode == 0 and all(r["completed"] == "1" and "[" not in r["best_val_acc"] for r in rows), rows


def test_the_hparams_row_leads_with_norm_batch_and_lr_then_what_the_command_chose():
    from normlab.runlog import hparams_shown

    config = {
        "norm": {"name": "group", "groups": 32},
        "batch_size": 2,
        "lr": 0.1,
        "lr_batch_size": None,
        "seed": 3,
        "device": "cpu",
        "model": {"name": "cnn", "width": 16},
        "max_steps": 5,
    }
    chosen = ["model", "seed", "device", "norm", "+model.width", "experiment"]
    assert hparams_shown(config, chosen) == {
        "norm.name": "group",
        "batch_size": 2,
        "lr": 0.1,
        "model.name": "cnn",
        "seed": 3,
        "model.width": 16,
    }
    assert list(hparams_shown(config)) == ["norm.name", "batch_size", "lr"]  # constants at their defaults: hidden
    scaled = hparams_shown({**config, "lr_batch_size": 32}, ["lr_batch_size"])
    assert scaled["lr"] == 0.1 and scaled["lr_batch_size"] == 32 and scaled["lr_used"] == pytest.approx(0.00625)


def test_a_norm_keeps_its_colour_in_every_plot():
    from normlab.claims.plots import norm_color

    assert (
        norm_color("batch")
        == norm_color("norm.name=batch, batch_size=2")
        == norm_color("batch_size=2, norm.name=batch")
    )
    assert len({norm_color(n) for n in ("none", "batch", "group", "layer", "instance", "switchable")}) == 6
    assert norm_color("batch_size=2") is None and norm_color("optimizer.name=batch") is None


def test_compare_and_summarize_never_hang_or_crash_on_what_a_received_folder_holds(tmp_path):
    """Named pipes in place of a run's files, a checkpoint that is a link to /dev/zero, 100,000 nested brackets, a
    5,001-digit integer, a metrics.jsonl that is a folder: each damaged run is skipped or read as far as it is
    intact, and both commands finish (real processes with a time limit: a pipe would block forever)."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        for norm in ("batch", "group"):
            _fake_run(sweep, norm, 32, seed, 0.8)
    damaged = {
        "pipe-summary": lambda d: os.mkfifo(d / "summary.json"),
        "pipe-metrics": lambda d: os.mkfifo(d / "metrics.jsonl"),
        "nested": lambda d: (d / "summary.json").write_text("[" * 100_000 + "]" * 100_000),
        "big-int": lambda d: (d / "summary.json").write_text('{"status": "completed", "x": ' + "9" * 5001 + "}"),
        "metrics-folder": lambda d: (d / "metrics.jsonl").mkdir(),
        "zero-checkpoint": lambda d: (d / "last.pt").symlink_to("/dev/zero"),
    }
    for name, damage in damaged.items():
        run = sweep / f"layer-bs32-s0-{name}"
        _fake_run(sweep, "layer", 32, 0, 0.7, name=f"-{name}")
        for f in ("summary.json", "metrics.jsonl"):
            if (
                name.startswith(("pipe", "nested", "big"))
                and f == "summary.json"
                or name == "metrics-folder"
                and (f == "metrics.jsonl")
                or name == "pipe-metrics"
                and f == "metrics.jsonl"
            ):
                (run / f).unlink()
        damage(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for command in (["compare", str(sweep), "--by", "batch_size"], ["summarize", str(sweep)]):
        result = subprocess.run(
            [sys.executable, "-m", "normlab", *command], capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode in (0, 2) and "Traceback" not in result.stderr, (command, result.stderr[-2000:])
        assert "batch" in result.stdout and "group" in result.stdout


@pytest.mark.parametrize(
    "edit",
    [
        {"val_acc": "high"},
        {"best_val_acc": [1]},
        {"test_acc": True},
        {"config": {"norm": "weird", "batch_size": 32, "seed": 0, "lr": 0.1}},
        {"config": {"norm": {"name": ["a"]}, "batch_size": 32, "seed": 0, "lr": 0.1}},
        {"config": {"norm": {"name": "layer"}, "batch_size": "sixty", "seed": 0, "lr": 0.1}},
        {"config": {"norm": {"name": "layer"}, "batch_size": 32, "seed": "x", "lr": 0.1}},
        {"status": 3},
    ],
    ids=["str-acc", "list-acc", "bool-acc", "str-norm", "list-name", "str-batch", "str-seed", "int-status"],
)
def test_a_summary_whose_fields_have_other_types_is_read_as_damaged_by_every_command(tmp_path, edit):
    """One reader (runlog.read_summary) for every command: a summary.json with a result that is not a number, or a
    config whose norm, batch size or seed has another type, is not normlab's record: summarize shows the run as
    incomplete, compare, plot and the claims leave it out; none crashes. Metrics rows likewise (parse_metrics)."""
    from normlab.runs import load_runs

    sweep = tmp_path / "sweep"
    for seed in range(2):
        for norm in ("batch", "group"):
            _fake_run(sweep, norm, 32, seed, 0.8 if norm == "batch" else 0.7)
    _fake_run(sweep, "layer", 32, 0, 0.6)
    summary = sweep / "layer-bs32-s0" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **edit}))
    with open(sweep / "batch-bs32-s0" / "metrics.jsonl", "a") as f:
        f.write(
            json.dumps({"step": 40, "val_acc": {"a": 1}}) + "\n" + json.dumps({"step": "50", "val_acc": 0.9}) + "\n"
        )
    assert sorted(r.config["norm"]["name"] for r in load_runs(sweep)) == ["batch", "batch", "group", "group"]
    assert [r.curve()[0] for r in load_runs(sweep) if r.path.name == "batch-bs32-s0"] == [[10, 20, 30]]
    for command in (["summarize.py", sweep], ["summarize.py", sweep, "--seeds"], ["compare.py", sweep]):
        result = script(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr[-2000:])
    seeds = script("summarize.py", sweep, "--seeds").stdout.splitlines()
    assert [line.split()[:3] for line in seeds[1:]] == [["-", "1", "0"], ["batch", "2", "2"], ["group", "2", "2"]]
    rows = script("summarize.py", sweep, "--csv").stdout
    assert "incomplete" in next(line for line in rows.splitlines() if "layer-bs32-s0" in line)
    plotted = script("plot.py", sweep, "--out", tmp_path / "p.png")
    assert plotted.returncode == 0 and "4 runs in 2 groups" in plotted.stdout, plotted.stderr
    (warning,) = [line for line in plotted.stderr.splitlines() if line.startswith("warning: ")]  # one, naming it
    assert "layer-bs32-s0" in warning and warning.endswith("is damaged or not normlab's; that run is left out")


def test_summarize_csv_never_writes_a_live_spreadsheet_formula(tmp_path):
    _fake_run(tmp_path / "sweep", '=HYPERLINK("http://x","y")', 32, 0, 0.8)
    _fake_run(tmp_path / "sweep", "batch", 32, 0, 0.7)
    rows = list(csv.DictReader(script("summarize.py", tmp_path / "sweep", "--csv").stdout.splitlines()))
    names = sorted(r["norm.name"] for r in rows)
    assert names == ['\'=HYPERLINK("http://x","y")', "batch"], names
