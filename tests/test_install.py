"""`pip install .` (not editable) into a fresh virtualenv: the `normlab` command and `normlab.train` work from
another folder, Hydra's configs shipped inside the package (setup.py copies conf/ in; normlab.cli.CONF finds it).
The virtualenv borrows this one's dependencies through a .pth file: no download, no second torch."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import DATA_ROOT, ROOT

TINY = ["max_steps=2", "data.train_subset=600", "data.val_size=100", "data.test_subset=100"]


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow  # builds and installs a wheel into a new venv
def test_the_built_wheel_installs_and_trains_from_another_folder(tmp_path):
    source = tmp_path / "checkout"  # built from a copy: the build leaves build/ beside its sources
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        source,
        "-w",
        tmp_path / "wheels",
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("normlab-*.whl")

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore"}
    trained = run(venv / "bin" / "normlab", "train", *TINY, "progress=false", cwd=elsewhere, env=env)
    assert trained.returncode == 0, trained.stderr
    assert "normlab: completed" in trained.stdout
    (run_dir,) = (elsewhere / "runs" / "default").iterdir()
    assert (run_dir / "summary.json").is_file()

    code = f"import normlab; print(normlab.__file__); print(normlab.train('api_run', {TINY!r})['status'])"
    api = run(python, "-c", code, cwd=elsewhere, env=env)
    assert api.returncode == 0, api.stderr
    where, status = api.stdout.split()
    assert Path(where).is_relative_to(venv) and status == "completed"  # the installed copy, not the checkout
    assert (Path(where).parent / "conf" / "config.yaml").is_file()

    summary = run(venv / "bin" / "normlab", "summarize", elsewhere / "runs", cwd=elsewhere, env=env)
    assert summary.returncode == 0 and "completed" in summary.stdout, summary.stderr
    migrated = run(venv / "bin" / "normlab", "migrate", elsewhere / "runs", cwd=elsewhere, env=env)  # (its message's)
    assert migrated.returncode == 0 and ": 0 run records migrated, " in migrated.stdout, migrated.stderr
    unknown = run(venv / "bin" / "normlab", "nope", cwd=elsewhere, env=env)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'nope'; choose from train,")
