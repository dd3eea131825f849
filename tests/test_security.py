"""Nothing read from a run dir or a data file runs code: crafted checkpoints (every format normlab has written,
their checksums made right by the attacker) and a crafted CIFAR-10 batch are refused, and the code they carry
never runs, from the library, the trainer's resume and the read-only scripts."""

import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from normlab.runlog import CHECKPOINT_MAGIC, DamagedCheckpoint, read_checkpoint, save_checkpoint

from conftest import ROOT, TINY, linked_dataset

RUN = ["data.train_subset=600", "data.test_subset=200", "model.hidden=[16]", "eval_every=5", "checkpoint_every=5"]


class Payload:
    """Unpickling it calls os.system: it touches `marker`, the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def crafted_state(marker: Path) -> dict:
    return {"config": {"seed": 0}, "step": 5, "model": {}, "evil": Payload(marker)}


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def crafted_checkpoints(marker: Path) -> dict[str, bytes]:
    """A checkpoint of each format normlab reads, each carrying the payload, each checksum correct."""
    payload = torch_bytes(crafted_state(marker))
    digest = hashlib.sha256(payload).hexdigest()
    return {
        "current format": CHECKPOINT_MAGIC + digest.encode() + b"\n" + payload,
        "format 1": torch_bytes({"format": "normlab-checkpoint/1", "sha256": digest, "payload": payload}),
        "plain state": payload,
        "a bare pickle": pickle.dumps(Payload(marker), protocol=2),
    }


@pytest.mark.parametrize("kind", ["current format", "format 1", "plain state", "a bare pickle"])
def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path, kind):
    marker = tmp_path / "ran"
    path = tmp_path / "last.pt"
    path.write_bytes(crafted_checkpoints(marker)[kind])
    with pytest.raises(DamagedCheckpoint):
        read_checkpoint(path)
    assert not marker.exists(), "the checkpoint ran code"


def test_the_checksum_is_checked_before_anything_is_unpickled(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", {"config": {"seed": 0}, "step": 1, "model": {}})
    data = bytearray((tmp_path / "last.pt").read_bytes())
    data[-10] ^= 0x01
    (tmp_path / "last.pt").write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("unpickled before the checksum was checked"))
    with pytest.raises(DamagedCheckpoint, match="do not match the checksum"):
        read_checkpoint(tmp_path / "last.pt")


def test_a_checkpoint_without_a_config_is_not_taken_for_the_same_run(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"config": {}, "step": 5, "model": {}})
    with pytest.raises(DamagedCheckpoint, match="not a normlab checkpoint"):
        read_checkpoint(tmp_path / "last.pt")


def test_resuming_and_summarizing_a_run_dir_with_a_crafted_checkpoint_run_no_code(tmp_path, config):
    from normlab.config import ConfigError
    from normlab.trainer import train

    marker = tmp_path / "ran"
    run_dir = tmp_path / "runs" / "crafted"
    (run_dir / ".hydra").mkdir(parents=True)  # as a killed run leaves it
    (run_dir / "last.pt").write_bytes(crafted_checkpoints(marker)["current format"])
    with pytest.raises(ConfigError, match="last.pt is damaged .*no earlier checkpoint is intact"):
        train(config(*RUN, "max_steps=5"), run_dir)
    summarized = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert summarized.returncode == 0, summarized.stderr
    assert "incomplete (damaged last.pt)" in summarized.stdout
    assert not marker.exists(), "a crafted checkpoint ran code"


def test_a_crafted_cifar_batch_is_refused_without_running_its_code(tmp_path):
    from normlab.config import DataConfig
    from normlab.data import DataError, load_arrays

    folder = linked_dataset(tmp_path, "cifar10")
    marker = tmp_path / "ran"
    (folder / "data_batch_1").unlink()
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    with pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 python batch .*posix.system"):
        load_arrays("cifar10", DataConfig(root=str(tmp_path), download=False))
    assert not marker.exists(), "a data file ran code"


def test_a_resumed_run_reads_back_its_own_checkpoint_with_weights_only(tmp_path, config):
    """The trainer's own checkpoints hold only what weights_only admits (the RNG states included)."""
    from normlab.trainer import train

    train(config(*TINY, *RUN, "max_steps=5"), tmp_path)
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 5 and set(state["rng"]) == {"torch", "numpy", "python"}
    raw = (tmp_path / "last.pt").read_bytes()
    payload = raw[len(CHECKPOINT_MAGIC) + 65 :]
    assert torch.load(io.BytesIO(payload), weights_only=True)["step"] == 5


def test_a_checkpoint_of_the_earlier_format_still_resumes(tmp_path):
    """normlab-checkpoint/1 (a torch.save record holding the payload and its checksum, NumPy's RNG state as an
    array) reads back under weights_only, and its RNG state restores."""
    import numpy as np

    from normlab.rundir import set_rng_state

    np.random.seed(7)
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": __import__("random").getstate()}
    expected = np.random.rand()
    payload = torch_bytes({"config": {"seed": 0}, "step": 3, "model": {}, "rng": rng})
    record = {"format": "normlab-checkpoint/1", "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
    (tmp_path / "last.pt").write_bytes(torch_bytes(record))
    state = read_checkpoint(tmp_path / "last.pt")
    np.random.seed(0)
    set_rng_state(state["rng"])
    assert state["step"] == 3 and np.random.rand() == expected


@pytest.mark.parametrize("flag", ["--experimental-rerun=evil.pickle", "--experimental-rerun", "--exp=evil.pickle"])
def test_hydras_rerun_flag_which_unpickles_a_file_is_refused_in_every_spelling(tmp_path, flag):
    """`--experimental-rerun=FILE` makes Hydra unpickle FILE (any code); argparse also takes a prefix of the flag."""
    import pickle

    from conftest import call_cli

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(Evil()))
    result = call_cli(flag, *(["evil.pickle"] if "=" not in flag else []), cwd=tmp_path)
    assert result.returncode == 2 and "is not allowed: it loads a pickle" in result.stderr
    assert not (tmp_path / "pwned").exists() and result.stderr.count("\n") == 1


@pytest.mark.parametrize("override", ["hydra.run.dir=/", "hydra.sweep.dir=/", "hydra.run.dir=/etc", "hydra.run.dir=~"])
def test_an_output_folder_at_the_root_or_home_is_refused(tmp_path, override):
    from conftest import call_cli

    result = call_cli(override, "max_steps=1", cwd=tmp_path)
    assert result.returncode == 2 and "is not allowed: normlab writes a run's files into that folder" in result.stderr


def test_a_hydra_link_in_a_received_run_folder_is_refused_and_nothing_is_written_through_it(tmp_path):
    """A partly made run folder whose .hydra is a link to a folder outside: resuming wrote config.yaml and
    overrides.yaml through it. Refused in one line; the outside folder stays empty."""
    from conftest import call_cli

    outside, run = tmp_path / "outside", tmp_path / "run"
    outside.mkdir()
    run.mkdir()
    (run / ".hydra").symlink_to(outside)
    result = call_cli(*TINY, "max_steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2 and "is a symbolic link: normlab never writes through a link" in result.stderr
    assert not any(outside.iterdir())


def test_a_folder_holding_another_tools_files_is_not_overwritten_unless_told(tmp_path):
    """hydra.run.dir=<another tool's folder>: its metrics.jsonl, train.log and summary.json were replaced (rc 0).
    Refused in one line; overwrite=true writes the run beside its other files."""
    from conftest import call_cli

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "summary.json").write_text('{"accuracy": 0.9}')
    (theirs / "notes.txt").write_text("mine")
    result = call_cli(*TINY, "max_steps=2", f"hydra.run.dir={theirs}", cwd=tmp_path)
    assert result.returncode == 2 and "holds files normlab did not write (notes.txt, summary.json" in result.stderr
    assert (theirs / "summary.json").read_text() == '{"accuracy": 0.9}'
    forced = call_cli(*TINY, "max_steps=2", f"hydra.run.dir={theirs}", "overwrite=true", cwd=tmp_path)
    assert forced.returncode == 0 and (theirs / "notes.txt").read_text() == "mine"
