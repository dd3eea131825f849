"""Runs never mix and refused commands change nothing: the run-dir lock between two real processes, a refused run
against a finished run's directory (byte for byte), atomic writes with unique temporary names, a full disk."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normlab.runlog import SCALAR_TAGS, DiskFull, atomic_write_bytes, save_checkpoint

from conftest import DATA_ROOT, ROOT, TINY, call_cli, call_script, last_wins, run_cli, scalar_points

VAL_ACC = SCALAR_TAGS["val_acc"]
RUN = ["data.train_subset=600", "data.test_subset=200", "model.hidden=[16]", "eval_every=5", "checkpoint_every=5"]


def run_dir_of(cwd: Path) -> Path:
    (summary,) = list((cwd / "runs").rglob("summary.json")) or [None]
    return summary.parent


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_second_process_on_a_locked_run_dir_is_refused_and_a_killed_owner_never_blocks(tmp_path):
    """Two launches of the same command at once: the second gets one error line, exit 2, and touches nothing;
    the first, SIGKILLed, leaves no lock behind."""
    args = last_wins([*TINY, *RUN, "max_steps=100000", "progress=false"])
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore"}
    owner = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "runs").rglob("last.pt")):  # the owner is training, holding the lock
            assert owner.poll() is None and time.time() < deadline, "the first process did not start training"
            time.sleep(0.2)
        run_dir = next((tmp_path / "runs").rglob("last.pt")).parent
        second = run_cli(*args, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("error: ") and "being written by another process" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # the second wrote no event file
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    # the SIGKILLed owner's lock went with it (resuming after SIGKILL: tests/test_train.py)
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert again.stdout.strip() == "free", again.stderr


@pytest.mark.parametrize("refusal", ["another config", "finished, identical"])
def test_a_refused_or_skipped_run_leaves_a_finished_run_byte_for_byte_unchanged(tmp_path, refusal):
    done = call_cli(*TINY, *RUN, "max_steps=10", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = run_dir_of(tmp_path)
    assert (run_dir / ".hydra" / "config.yaml").exists()  # the record of the accepted run
    before = snapshot(run_dir)
    if refusal == "another config":  # the same dir named by hand, another run
        out = call_cli(*TINY, *RUN, "max_steps=10", "eval_every=7", f"hydra.run.dir='{run_dir}'", cwd=tmp_path)
        assert out.returncode == 2 and "holds a run with another config (eval_every=5 there, 7 now)" in out.stderr
    else:
        out = call_cli(*TINY, *RUN, "max_steps=10", cwd=tmp_path)
        assert out.returncode == 0 and "skipped" in out.stdout
    assert snapshot(run_dir) == before


def test_atomic_writes_use_unique_temporary_files(tmp_path, monkeypatch):
    names = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (names.append(Path(src).name), real(src, dst)))
    for i in range(2):
        atomic_write_bytes(tmp_path / "summary.json", b"{}")
        save_checkpoint(tmp_path / "last.pt", {"step": i})
    assert len(set(names)) == 4 and all(n.endswith(".tmp") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "summary.json"]


def test_a_full_disk_keeps_the_last_good_checkpoint_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The disk fills up halfway through writing the file, as the OS reports it (ENOSPC from write): the error
    is DiskFull whatever torch.save would have made of it, since the checkpoint is serialized in memory first."""
    import normlab.runlog

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 5})
    good = path.read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(normlab.runlog.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(DiskFull, match="no space left on the device while writing .*last.pt"):
        save_checkpoint(path, {"step": 10})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_disk_that_fills_under_tensorboards_writer_ends_in_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    """The event file's writer thread meets ENOSPC (its error surfaces in the loop at the next event or flush):
    one error line, exit 2, no traceback, as for a checkpoint; with space again, the same command resumes the run
    to its end, each TensorBoard point once."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    real_write, written = RecordWriter.write, []

    def write(self, data):
        written.append(len(data))
        if len(written) > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    args = [*TINY, *RUN, "max_steps=40", "progress=false"]
    monkeypatch.setattr(RecordWriter, "write", write)
    full = call_cli(*args, cwd=tmp_path)
    assert full.returncode == 2, full.stderr
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("error: no space left on the device while writing into ") and "re-run to resume" in line
    run_dir = next(tmp_path.rglob("last.pt")).parent
    assert not (run_dir / "summary.json").exists()  # not marked finished
    monkeypatch.setattr(RecordWriter, "write", real_write)
    again = call_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    points = [(tag, step) for tag, step, _ in scalar_points(run_dir)]
    assert len(points) == len(set(points))  # each point once
    assert sorted(step for tag, step in points if tag == VAL_ACC) == list(range(5, 45, 5))


def start_run(cwd, *args) -> subprocess.Popen:
    """`python run.py ARGS` in the background, as from a terminal: a test run in the background (`pytest &`) would
    pass SIGINT on ignored."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env={**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_in_one_line_with_exit_130_and_keeps_the_checkpoint(tmp_path, signum):
    process = start_run(tmp_path, *TINY, "max_steps=100000", "eval_every=50", "checkpoint_every=50")
    deadline = time.time() + 120
    while not list(tmp_path.rglob("last.pt")) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in stderr
    assert list(tmp_path.rglob("last.pt"))  # the work so far is kept for the resume


@pytest.mark.parametrize("after_s", [0.3, 1.0, 2.5])
def test_ctrl_c_while_starting_ends_in_one_line_with_exit_130(tmp_path, after_s):
    """At any moment before training: the imports (about 2 s here) and the checks of a 3,000-job sweep."""
    process = start_run(tmp_path, *TINY, "-m", "seed=range(0,3000)", "max_steps=100000")
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in stderr, stderr


@pytest.mark.slow  # two compiles in fresh processes; test_norms checks one build and the fallback
def test_an_empty_or_damaged_cached_kernel_library_is_rebuilt(tmp_path):
    """Each case in a new process, as a user meets it (a process's dlopen keeps the library it loaded)."""
    code = "from normlab.norms import native; print(native.library() is not None)"
    env = {**os.environ, "NORMLAB_CACHE": str(tmp_path)}
    where = "from normlab.norms import native; print(native.library_path())"
    target = Path(subprocess.run([sys.executable, "-c", where], env=env, capture_output=True, text=True).stdout.strip())
    for damage in (b"", b"not a shared library"):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(damage)
        loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert loaded.stdout.strip() == "True", loaded.stderr
        assert target.stat().st_size > 1000  # rebuilt
    target.unlink()
    fake = tmp_path / "bin"  # a PATH whose only compiler "succeeds" without writing anything
    fake.mkdir()
    (fake / "cc").write_text("#!/bin/sh\nexit 0\n")
    (fake / "cc").chmod(0o755)
    env["PATH"] = str(fake)
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (
        loaded.stdout.strip() == "False" and "wrote an empty library" in loaded.stderr
    )  # a "compiler" writing nothing
    assert not list(tmp_path.glob("*.so"))  # and no empty library cached for the next process


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # in the serialized state, far from the container's headers
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [flip_a_byte, truncate])
def test_a_damaged_checkpoint_is_found_out_and_the_previous_one_resumed(tmp_path, damage, config, capsys):
    from normlab.trainer import train

    cfg = config(*RUN, "max_steps=20", "eval_every=10", "checkpoint_every=10")
    first = train(cfg, tmp_path / "whole")
    run_dir = tmp_path / "damaged"
    train(cfg, run_dir)
    assert (run_dir / "prev.pt").exists()  # the checkpoint of step 10, kept beside last.pt (step 20)
    (run_dir / "summary.json").unlink()  # as if killed after saving last.pt
    damage(run_dir / "last.pt")
    resumed = train(cfg, run_dir)
    err = capsys.readouterr().err
    assert f"warning: {run_dir / 'last.pt'} is damaged (" in err and "resuming from" in err and "(step 10)" in err
    assert resumed["test_acc"] == first["test_acc"] and resumed["train_loss"] == first["train_loss"]


def test_no_intact_checkpoint_is_one_error_line_naming_the_file(tmp_path):
    result = call_cli(*TINY, *RUN, "max_steps=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(tmp_path)
    (run_dir / "summary.json").unlink()
    for name in ("last.pt", "prev.pt"):
        if (run_dir / name).exists():
            truncate(run_dir / name)
    before = snapshot(run_dir)
    again = call_cli(*TINY, *RUN, "max_steps=10", cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.startswith(f"error: {run_dir / 'last.pt'} is damaged (its bytes do not match the checksum")
    assert "use overwrite=true to start the run over" in again.stderr and len(again.stderr.splitlines()) == 1
    assert snapshot(run_dir) == before


def test_a_damaged_metrics_line_keeps_the_intact_lines_after_it(tmp_path, capsys):
    from normlab.runlog import RunLog, read_metrics

    lines = [
        '{"step": 10, "epoch": 1, "train_loss": 1.0}',
        '{"step": 2\x00, "trai',
        '{"step": 20, "epoch": 2, "train_loss": 0.5}',
        '{"step": 30, "epoch": 3, "train_loss": 0.4}',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [10, 20, 30]
    log = RunLog(tmp_path, start_step=20)  # a resume from step 20
    log.close()
    assert [r["step"] for r in log.records] == [10, 20]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [10, 20]
    assert "1 damaged line(s) dropped" in capsys.readouterr().err


def test_a_run_never_continues_or_skips_under_another_world_size(tmp_path, config, monkeypatch):
    from normlab.cli import world_suffix
    from normlab.config import ConfigError
    from normlab.rundir import prepare_run_dir
    from normlab.trainer import train

    cfg = config(*RUN, "max_steps=5")
    train(cfg, tmp_path)
    assert prepare_run_dir(cfg, tmp_path)[0] == "skip"
    with pytest.raises(ConfigError, match="holds a run made with 1 process\\(es\\), not 2"):
        prepare_run_dir(cfg, tmp_path, world_size=2)
    (tmp_path / "summary.json").unlink()  # a checkpoint to resume: the same refusal
    with pytest.raises(ConfigError, match="made with 1 process"):
        prepare_run_dir(cfg, tmp_path, world_size=2)
    assert world_suffix() == ""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert world_suffix() == ",world_size=2"  # and so a torchrun run has its own run dir


def test_eval_every_is_part_of_the_run_dir_so_a_sweep_over_it_never_collides(tmp_path):
    result = call_cli("-m", *TINY, "eval_every=5,10", "seed=0,1", "max_steps=10", "model.hidden=[16]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    dirs = sorted(p.parent.name for p in (tmp_path / "runs").rglob("summary.json"))
    assert len(dirs) == 4 and len({d.split(",eval_every=")[1] for d in dirs}) == 2


def drop_last_checkpoint(run_dir: Path) -> None:
    """As a process killed just before its last checkpoint: every event of the run written, the checkpoint
    before it (prev.pt) the newest one."""
    (run_dir / "summary.json").unlink()
    (run_dir / "last.pt").unlink()


def killed_before_any_checkpoint(run_dir: Path) -> None:
    """As a process killed before its first checkpoint: events written, nothing to resume from."""
    for name in ("summary.json", "last.pt", "prev.pt", "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)


def damaged_summary(run_dir: Path) -> None:
    """A finished run whose summary.json is damaged: re-running it resumes at its last step."""
    (run_dir / "summary.json").write_text('{"status": "compl')


@pytest.mark.parametrize("interruption", [drop_last_checkpoint, killed_before_any_checkpoint, damaged_summary])
def test_tensorboard_events_are_exact_after_a_kill_resume_or_rerun(tmp_path, config, interruption, capsys):
    from normlab.trainer import train

    cfg = config(*RUN, "max_steps=20", "eval_every=5", "log_every=1", "checkpoint_every=10")
    train(cfg, tmp_path / "whole")
    expected = scalar_points(tmp_path / "whole")
    assert {step for _, step, _ in expected} == set(range(1, 21))
    run_dir = tmp_path / "interrupted"
    train(cfg, run_dir)
    interruption(run_dir)
    train(cfg, run_dir)
    assert scalar_points(run_dir) == expected


@pytest.mark.parametrize(
    "damage",
    [
        "summary is a number",
        "summary lacks its status",
        "summary's config is empty",
        "last.pt is a directory",
        "metrics.jsonl is a directory",
    ],
)
def test_a_damaged_run_dir_is_resumed_or_refused_in_one_line_and_overwrite_clears_it(tmp_path, config, damage):
    import json

    from normlab.config import ConfigError
    from normlab.trainer import train

    cfg = config(*RUN, "max_steps=10")
    done = train(cfg, tmp_path)
    summary = tmp_path / "summary.json"
    if damage == "summary is a number":
        summary.write_text("5")
    elif damage == "summary lacks its status":
        summary.write_text(json.dumps({k: v for k, v in json.loads(summary.read_text()).items() if k != "status"}))
    elif damage == "summary's config is empty":
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "config": {}}))
    if damage.startswith("summary"):  # a read-only tool over the damaged dir: a row, not a traceback
        summarized = call_script("summarize.py", str(tmp_path), cwd=tmp_path)
        assert summarized.returncode == 0 and "Traceback" not in summarized.stderr, summarized.stderr
        assert "incomplete" in summarized.stdout or damage == "summary's config is empty"
    else:
        name = damage.split()[0]
        (tmp_path / name).unlink()
        (tmp_path / name).mkdir()
        with pytest.raises(ConfigError, match=f"{name} is not a file .*use overwrite=true"):
            train(cfg, tmp_path)
        cfg = config(*RUN, "max_steps=10", "overwrite=true")
    again = train(cfg, tmp_path)  # resumed from the final checkpoint, or started over
    assert again["status"] == "completed" and again["test_acc"] == done["test_acc"]


def session_statuses(run_dir: Path) -> list[str]:
    """The HPARAMS session-end statuses a run's event files hold."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    statuses = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_END_INFO_TAG:
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    statuses.append(api_pb2.Status.Name(data.session_end_info.status))
    return statuses


@pytest.mark.parametrize(
    ("status", "shown"), [("completed", ["STATUS_SUCCESS"]), ("diverged", ["STATUS_FAILURE"]), (None, [])]
)
def test_a_runs_hparams_session_ends_only_when_the_run_does(tmp_path, status, shown):
    """TensorBoard's Status filter: a stopped run (no log_end) is not shown as finished."""
    from normlab.runlog import RunLog

    log = RunLog(tmp_path)
    log.log_config({"norm": {"name": "batch"}, "batch_size": 2, "lr": 0.1, "seed": 0}, chosen=["norm"])
    if status:
        log.log_end(status)
    log.close()
    assert session_statuses(tmp_path) == shown


def test_a_runs_files_follow_the_umask_so_a_colleague_can_read_them(tmp_path):
    """Every file a run writes through atomic_write was 0600 whatever the umask (mkstemp's): a colleague's compare
    said 'no finished runs'. They are 0666 less the umask now, as open() makes them."""
    from normlab.runlog import UMASK

    atomic_write_bytes(tmp_path / "summary.json", b"{}")
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o666 & ~UMASK
