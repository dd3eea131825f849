"""Data-parallel training under torchrun (2 processes, gloo on CPU): it matches single-process training on the
same global batch where the math says it must, and only rank 0 writes files."""

import json
import os
import subprocess
import sys

import pytest
import torch

from normlab.config import ConfigError
from normlab.distributed import setup

from conftest import DATA_ROOT, ROOT, TINY, call_script, run_cli

# the CPU path (gloo, all-reduced moments): on a GPU machine device=auto would start NCCL, one GPU per process
COMMON = [
    *TINY,
    "device=cpu",
    *["model=cnn", "model.width=8", "batch_size=16", "max_steps=12", "eval_every=6", "data.augment=true"],
    "channels_last=false",  # one layout on both sides: NHWC's kernels sum in another order (2e-4 apart by step 12)
]


def torchrun(*args, cwd, nproc=2):
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(
        [*command, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def metrics(cwd):
    (path,) = list((cwd / "runs").rglob("metrics.jsonl"))
    return [
        {k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in path.read_text().splitlines()
    ]


def close(a, b, tol=1e-4):
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    return len(a) == len(b) and all(abs(x[k] - y[k]) <= tol for x, y in zip(a, b) for k in keys)


def single_and_ddp(tmp_path, *args):
    (tmp_path / "single").mkdir()
    (tmp_path / "ddp").mkdir()
    # norm.sync=true is refused in one process (it would change nothing): one process sees the global batch
    # the single run at torch's threads on 2 cores, whatever the test process has (`make test` runs 1): at one
    # thread synced BN's sums land more than 1e-4 from the 2-process run's by step 12
    single = run_cli(
        *COMMON, *(a for a in args if a != "norm.sync=true"), cwd=tmp_path / "single", env={"OMP_NUM_THREADS": "2"}
    )
    ddp = torchrun(*COMMON, *args, cwd=tmp_path / "ddp")
    assert single.returncode == 0, single.stderr
    assert ddp.returncode == 0, ddp.stderr
    return metrics(tmp_path / "single"), metrics(tmp_path / "ddp"), ddp


@pytest.mark.parametrize(
    "args",
    [
        ["norm=group"],
        ["norm=batch", "norm.sync=true"],
        pytest.param(["norm=switchable", "norm.sync=true"], marks=pytest.mark.slow),  # one synced path in the fast
        pytest.param(["norm=batch_instance", "norm.sync=true"], marks=pytest.mark.slow),  # suite: BN's (batch-sync)
    ],
    ids=["group", "batch-sync", "switchable-sync", "batch_instance-sync"],
)
def test_ddp_matches_single_process_on_the_same_global_batch(tmp_path, args):
    single, ddp, result = single_and_ddp(tmp_path, *args)
    assert close(single, ddp), (single, ddp)
    assert result.stdout.count("normlab: completed") == 1  # rank 0 alone reports
    assert "deprecated" not in result.stderr  # the synced norms' all-reduce is on the supported API


@pytest.mark.slow  # the control of the test above: 2 x 2 processes
def test_local_batch_norm_differs_from_the_global_batch(tmp_path):
    single, ddp, _ = single_and_ddp(tmp_path, "norm=batch")
    assert not close(single, ddp)


@pytest.mark.slow  # torchrun twice (~30 s): the fast suite's DDP checks are the ones above
def test_only_rank_zero_writes_and_resume_skips(tmp_path):
    first = torchrun(*COMMON, "norm=group", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("summary.json")]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        list(run_dir.glob("events*"))[0].name,
        "last.pt",
        "metrics.jsonl",
        "summary.json",
        "train.log",
    ]
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    again = torchrun(*COMMON, "norm=group", cwd=tmp_path)
    assert again.returncode == 0 and "skipped" in again.stdout


@pytest.mark.slow  # torchrun (~15 s); `normlab train --nproc` below refuses the same
def test_global_batch_must_divide_by_world_size(tmp_path):
    result = torchrun(*TINY, "norm=group", "batch_size=15", "max_steps=2", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("error: batch_size=15 is not allowed with 2 processes") == 1


def normlab_nproc(*args, cwd):
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "normlab", "train", "--nproc", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two launches, one a DDP run (~45 s)
def test_normlab_train_nproc_runs_ddp_and_a_refusal_is_one_line_not_torchruns_report(tmp_path):
    """`normlab train --nproc 2`: torchrun's launcher in process. A refusal is rank 0's one line and exit 2 (torchrun
    adds ~60 lines of ChildFailedError); a run completes as under torchrun."""
    refused = normlab_nproc(*TINY, "norm=group", "batch_size=15", "max_steps=2", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines == ["error: batch_size=15 is not allowed with 2 processes" + lines[0].split("processes", 1)[1]]
    assert not (tmp_path / "runs").exists()
    done = normlab_nproc(*COMMON, "norm=group", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("normlab: completed") == 1, done.stderr
    assert "ChildFailedError" not in done.stderr + refused.stderr
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    assert json.loads(summary.read_text())["world_size"] == 2


@pytest.mark.parametrize("arg", [["--nproc", "0"], ["--nproc=x"], ["--nproc"]])
def test_a_bad_nproc_is_one_line(tmp_path, arg):
    result = subprocess.run(
        [sys.executable, "-m", "normlab", "train", *arg], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (
        result.returncode == 2 and result.stderr.startswith("error: --nproc") and len(result.stderr.splitlines()) == 1
    )


def test_more_processes_than_gpus_is_refused_before_nccl_starts(monkeypatch):
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"^2 processes per node are not allowed on 1 visible CUDA device\(s\)"):
        setup(torch.device("cuda"))


def test_the_study_refuses_bad_seeds_in_one_line_before_any_run(tmp_path):
    result = call_script("distributed_study.py", "--workdir", str(tmp_path), "--seeds", "0,x", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --seeds '0,x' is not a comma-separated list of integers, e.g. 0,1,2"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_study_runs_every_variant_per_seed_reports_beside_the_runs_and_resumes(tmp_path):
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore"}
    tiny = [
        "max_steps=4",
        "eval_every=2",
        "data.train_subset=256",
        "data.test_subset=128",
        "data.val_size=128",
        "model.width=8",
        "device=cpu",
    ]
    study = [sys.executable, str(ROOT / "scripts" / "distributed_study.py"), "--workdir", str(tmp_path)]
    first = subprocess.run([*study, "--seeds", "0,1", *tiny], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    report = tmp_path / "runs" / "distributed" / "report"  # overridden runs: never the committed results/
    summary = json.loads((report / "summary.json").read_text())
    assert summary["seeds"] == 2 and len(summary["tests"]) == 1 and len(summary["reported"]) == 5
    assert len(list((tmp_path / "runs" / "distributed").glob("*/s*/summary.json"))) == 12
    again = subprocess.run([*study, "--seeds", "0,1", *tiny], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("normlab: skipped") == 12, again.stdout
    # archived (nested run dirs), the report is rebuilt from the archive alone, the same
    archive = tmp_path / "archive"
    keep = [sys.executable, str(ROOT / "scripts" / "archive_runs.py"), "save", str(tmp_path / "runs" / "distributed")]
    assert subprocess.run([*keep, str(archive)], env=env, capture_output=True, timeout=120).returncode == 0
    assert len(list((archive / "distributed").glob("*/s*/summary.json"))) == 12
    made = (report / "README.md").read_text()
    (report / "README.md").unlink()
    rebuild = [*study, "--seeds", "0,1", "--report", "--runs", str(archive), *tiny]
    rebuilt = subprocess.run(rebuild, env=env, capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (report / "README.md").read_text().split("## Results")[1] == made.split("## Results")[1]
