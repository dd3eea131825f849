"""The real command line, as a user runs it: sweeps, bad input (exit 2, one line), kill and resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DATA_ROOT, ROOT, TINY, call_cli, call_script, run_cli, scalar_points


def run_dirs(cwd):
    return sorted(p.parent for p in (cwd / "runs").rglob("summary.json"))


def test_single_run_prints_a_summary_line(tmp_path):
    result = call_cli(*TINY, "max_steps=20", "eval_every=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("normlab: completed · val_acc ") and " · test_acc " in line and "20 steps" in line
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.parent.name == "default"
    assert line.endswith(f" · logs: {run_dir.relative_to(tmp_path)}")  # what to type next, from where the user is
    assert run_dir.name.startswith("mnist-mlp-batch-bs60-lr0.1-s0,")
    assert (run_dir / ".hydra" / "config.yaml").exists() and list(run_dir.glob("events.out.tfevents.*"))


def test_a_run_is_named_by_the_learning_rate_it_trains_at(tmp_path):
    """lr=0.1 lr_batch_size=60 at batch 30 trains at 0.05: the name says lr0.05 (and keeps lr_batch_size, so that
    it is never the run given lr=0.05 directly)."""
    result = call_cli(*TINY, "batch_size=30", "lr=0.1", "lr_batch_size=60", "max_steps=4", "eval_every=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.startswith("mnist-mlp-batch-bs30-lr0.05-s0,") and "lr_batch_size=60" in run_dir.name
    assert json.loads((run_dir / "summary.json").read_text())["config"]["lr"] == 0.1


def test_the_name_of_a_scaled_lr_has_no_float_noise():
    from normlab.cli import lr_used

    assert lr_used(0.1, 6, 32) == 0.01875 and str(0.1 * 6 / 32) != "0.01875"
    assert lr_used(0.1, 6, None) == 0.1 and lr_used("1e-3", 2, None) == "1e-3"  # as given, without lr_batch_size


def test_two_job_multirun_gives_two_run_dirs_in_a_folder_named_by_the_sweep(tmp_path):
    result = call_cli("-m", *TINY, "norm=none,batch", "max_steps=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path)
    assert [d.name.split("-")[2] for d in dirs] == ["batch", "none"]
    assert all(json.loads((d / "summary.json").read_text())["status"] == "completed" for d in dirs)
    assert {d.parent for d in dirs} == {tmp_path / "runs" / "default" / "norm=none,batch"}
    again = call_cli("-m", *TINY, "norm=none,batch", "max_steps=10", cwd=tmp_path)  # the same sweep finds its runs
    assert again.returncode == 0 and again.stdout.count("skipped") == 2, again.stderr
    other = call_cli("-m", *TINY, "norm=none", "seed=1,2", "max_steps=10", cwd=tmp_path)  # another sweep: apart
    assert other.returncode == 0, other.stderr
    assert len(list((tmp_path / "runs" / "default" / "seed=1,2").iterdir())) == 2


def test_sweep_goes_on_past_a_diverging_job(tmp_path):
    args = (
        "-m",
        *TINY,
        "norm=none",
        "model.activation=relu",
        "lr=0.05,1e10",
        "max_steps=20",
        "eval_every=10",
    )
    result = call_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    statuses = {
        d.name.split("-")[4]: json.loads((d / "summary.json").read_text())["status"] for d in run_dirs(tmp_path)
    }
    assert statuses == {"lr0.05": "completed", "lr10000000000.0": "diverged"}

    table = call_script("summarize.py", str(tmp_path / "runs"), "--csv", cwd=tmp_path).stdout.splitlines()
    assert table[0] == "run,lr,status,best_val_acc,val_acc,test_acc,steps,wall_s"  # a column per swept key
    rows = list(csv.DictReader(table))
    assert sorted((r["lr"], r["status"]) for r in rows) == [("0.05", "completed"), ("10000000000.0", "diverged")]


def test_sweep_records_a_crashing_job_as_failed_and_goes_on(tmp_path, monkeypatch):
    import normlab.trainer as trainer

    real = trainer.train

    def crash_for_none(cfg, run_dir, data=None, **options):
        if cfg.norm.name == "none":
            raise RuntimeError("simulated crash")
        return real(cfg, run_dir, data, **options)

    monkeypatch.setattr(trainer, "train", crash_for_none)
    result = call_cli("-m", *TINY, "norm=none,batch", "max_steps=5", cwd=tmp_path)
    assert result.returncode == 1 and "error: 1 job(s) of the sweep failed" in result.stderr, result.stderr
    statuses = {d.name.split("-")[2]: json.loads((d / "summary.json").read_text()) for d in run_dirs(tmp_path)}
    assert statuses["none"]["status"] == "failed" and "simulated crash" in statuses["none"]["error"]
    assert statuses["batch"]["status"] == "completed"
    assert "normlab: failed · RuntimeError: simulated crash" in result.stderr


BAD_INPUTS = [
    (["norm=bogus"], "norm=bogus is not allowed; choose from"),
    (["model=mlp", "norm=instance"], "norm=instance is not defined for model=mlp"),
    (["model=mlp", "norm=batch_instance"], "norm=batch_instance is not defined for model=mlp"),
    (["batch_size=0"], "batch_size=0 is not allowed"),
    (["lr=0"], "lr=0.0 is not allowed"),
    (["lr=-0.1"], "lr=-0.1 is not allowed"),
    (["norm=group", "norm.num_groups=0"], "norm.num_groups=0 is not allowed"),
    (["max_steps=-5"], "max_steps=-5 is not allowed"),
    (["bogus_key=3"], "unknown config key 'bogus_key'"),
    (["batch_size=1"], "batch_size=1 is not allowed with norm=batch"),
    (["model=cnn", "norm=switchable", "batch_size=1"], "batch_size=1 is not allowed with norm=switchable"),
    (["-m", "norm=batch,bogus"], "norm=bogus is not allowed"),
    (
        ["data.root=/nonexistent/normlab", "data.download=false"],
        "mnist not found: missing train-images-idx3-ubyte",
    ),
    (["data.root=/nonexistent/normlab", "data.download=false"], "or run with data.download=true and a network"),
    (
        ["data.train_subset=10", "batch_size=64"],
        "batch_size=64 is not allowed: the training set has only 10 images",
    ),
    (["seed=-1"], "seed=-1 is not allowed"),
    (["optimizer=adam", "optimizer.betas=[1.5,0.9]"], "optimizer.betas=[1.5, 0.9] is not allowed"),
    (["lr=${oc.env:NORMLAB_SURELY_UNSET}"], "cannot resolve the config"),
    (["lr=${no.such.key}"], "cannot resolve the config"),
    (["batch_size=60,120"], "batch_size=60,120 is a sweep (several values) without -m"),
    (["lr=inf"], "lr=inf is not allowed; expected a finite number"),
    (["lr=nan"], "lr=nan is not allowed; expected a finite number"),
    (["scheduler=cosine", "scheduler.final_fraction=-2"], "scheduler.final_fraction=-2.0 is not allowed"),
    (["max_steps=0"], "max_steps=0 is not allowed"),
    (["data.train_subset=70000"], "data.train_subset=70000 is not allowed: mnist has 59500 training images"),
    (["scheduler.warmup_steps=10"], "scheduler.warmup_steps=10 is not allowed: the run has only 3 steps"),
    (["optimizer.nesterov=true", "optimizer.momentum=0"], "optimizer.nesterov=true is not allowed"),
    (["optimizer.momentum=1.5"], "optimizer.momentum=1.5 is not allowed"),
    (["model=cnn", "norm=group", "norm.num_groups=32"], "norm.num_groups=32 is not allowed for a layer of 32"),
    # a later job of a sweep is checked before the first one starts: nothing is created
    (["-m", "batch_size=32,2000"], "batch_size=2000 is not allowed: the training set has only 1000 images"),
    *([(["device=cuda"], "device=cuda is not allowed here")] if not torch.cuda.is_available() else []),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tmp_path, args, message):
    base = [a for a in [*TINY, "max_steps=3"] if not any(a.startswith(b.split("=")[0] + "=") for b in args)]
    result = call_cli(*base, *args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert run_dirs(tmp_path) == [] and not list((tmp_path / "runs").rglob("mnist-*")), "half-made run dir left"


def test_unwritable_output_dir_exits_2(tmp_path):
    """In a process of its own (the refusals above are called in the test's): exit code 2 and one line from the
    real interpreter."""
    (tmp_path / "blocker").write_text("a file where a directory should be")
    result = run_cli(*TINY, "max_steps=2", "hydra.run.dir=blocker/run", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("blocker is not a writable directory")


def test_missing_data_is_refused_before_anything_is_made(tmp_path):
    """No dataset under data.root, and a download that fails (here: no network, or a root that is a file): one
    line naming the files, exit 2, and neither a run dir nor the folders a failed download makes are left."""
    (tmp_path / "blocked").write_text("")  # a download into blocked/... fails at once
    args = ["-m", f"data.root={tmp_path / 'blocked' / 'data'}", "seed=0,1", "max_steps=2"]
    result = call_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: mnist not found: missing train-images-idx3-ubyte")
    assert "; a download was tried and did not fetch them (" in line and "data.download=true" not in line  # (it was)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_mnist_file_is_a_clear_error(tmp_path, damage):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in os.listdir(os.path.join(DATA_ROOT, "MNIST", "raw")):
        original = Path(DATA_ROOT, "MNIST", "raw", name).read_bytes()
        (raw / name).write_bytes(b"\x00\x00\x08\x03garbage" if damage == "garbage" else original[:1000])
    result = call_cli(f"data.root={tmp_path / 'data'}", "data.download=false", "max_steps=2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train-images-idx3-ubyte" in result.stderr and "corrupt" in result.stderr


def test_corrupt_cifar_batch_is_a_clear_error(tmp_path):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in os.listdir(os.path.join(DATA_ROOT, "cifar-10-batches-py")):
        (folder / name).write_bytes(Path(DATA_ROOT, "cifar-10-batches-py", name).read_bytes()[:5000])
    args = (
        "dataset=cifar10",
        "model=cnn",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
        "max_steps=2",
    )
    result = call_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data_batch_1 is not a CIFAR-10 python batch" in result.stderr


@pytest.mark.slow  # 3 x 1500 steps in real processes; the fast suite kills and resumes in process (test_reliability)
def test_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    args = [*TINY, "max_steps=1500", "eval_every=250", "checkpoint_every=100"]
    whole = tmp_path / "whole"
    whole.mkdir()
    assert call_cli(*args, cwd=whole).returncode == 0

    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=killed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list((killed / "runs").rglob("last.pt")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere past the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = [p.parent for p in (killed / "runs").rglob("last.pt")]
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"

    resumed = run_cli(*args, cwd=killed)
    assert resumed.returncode == 0, resumed.stderr

    def result(cwd):
        (d,) = run_dirs(cwd)
        records = [
            {k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
            for line in (d / "metrics.jsonl").read_text().splitlines()
        ]
        summary = json.loads((d / "summary.json").read_text())
        return records, {k: summary[k] for k in ("status", "steps", "test_acc", "test_loss", "train_loss")}

    assert result(killed) == result(whole)
    assert scalar_points(run_dirs(killed)[0]) == scalar_points(run_dirs(whole)[0])  # TensorBoard's points, once each
    assert [r["step"] for r in result(killed)[0]] == [250, 500, 750, 1000, 1250, 1500]


def test_help_is_normlabs_own(tmp_path):
    result = call_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("normlab: train, sweep and compare")
    for words in (
        "norm: batch, batch_instance, batch_noisy, group",
        "data.val_size",
        "python run.py -m norm=batch,group",
    ):
        assert words in result.stdout
    assert not (tmp_path / "runs").exists()


def test_a_job_is_checked_once_in_a_process(tmp_path, monkeypatch):
    """precheck validates the job (a meta-device model build included); run_job, in the same process, reuses it."""
    import normlab.cli as cli

    calls = []
    real = cli.load_config
    monkeypatch.setattr(cli, "load_config", lambda values: calls.append(1) or real(values))
    monkeypatch.setattr(cli, "CHECKED", {})
    monkeypatch.chdir(tmp_path)
    cli.train_command([*TINY, "max_steps=2", "eval_every=2"])
    assert len(calls) == 1 and len(run_dirs(tmp_path)) == 1
