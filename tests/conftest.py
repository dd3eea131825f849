"""Shared fixtures: the data root, composing conf/ into a typed Config, running the real command line (as a
process, or called in this one where only what it says is under test), and comparing a module's compiled kernels
with its Python code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA_ROOT = str(Path(os.environ.get("NORMLAB_DATA", ROOT.parent / "shared" / "data")).resolve())
# tiny and fast: every test run shrinks the data and the steps
TINY = [
    "data.train_subset=1000",
    "data.test_subset=500",
    "data.val_size=500",
    "progress=false",
    f"data.root={DATA_ROOT}",
]


def assert_native_matches_python(module, x, upstream) -> None:
    """A module with compiled kernels (norms.native; `use_native`) gives the same output, gradients of the input
    and of every parameter, and buffers after the call, on its compiled path as on its Python one."""
    import torch

    results = []
    for use_native in (True, False):
        module.use_native = use_native
        before = {k: v.clone() for k, v in module.state_dict().items()}
        xi = x.clone().requires_grad_()
        out = module(xi)
        grads = torch.autograd.grad(out, [xi, *module.parameters()], upstream)
        results.append([out, *grads, *module.state_dict().values()])
        module.load_state_dict(before)
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref)


def compose_config(*overrides: str):
    """conf/ composed with `overrides` (as the command line would), as a validated normlab Config."""
    from normlab.api import compose
    from normlab.checks import load_config

    return load_config(compose([*TINY, *overrides]))


def linked_dataset(root: Path, name: str) -> Path:
    """A data root `root` whose files of dataset `name` link to the real ones (replace one to damage it); returns
    the folder holding them."""
    folder = {"mnist": ("MNIST", "raw"), "cifar10": ("cifar-10-batches-py",)}[name]
    source, target = Path(DATA_ROOT).joinpath(*folder), root.joinpath(*folder)
    target.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        (target / file.name).symlink_to(file)
    return target


def last_wins(args) -> list[str]:
    """The command line with each key once, the last value kept (a test adds its own value to TINY's; normlab
    refuses a key given twice with two values)."""
    keys = [a.split("=", 1)[0] if "=" in a and not a.startswith("-") else None for a in args]
    return [a for i, (a, k) in enumerate(zip(args, keys, strict=True)) if k is None or k not in keys[i + 1 :]]


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in `cwd` (so runs/ lands there), with the test data root (and `env` added); a key
    given twice keeps its last value, as Hydra would (`last_wins`)."""
    args = last_wins(args)
    env = {**os.environ, "NORMLAB_DATA": DATA_ROOT, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def call_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python run.py ARGS` called in this process (no interpreter start, no second torch import, ~3 s less a
    call): for the tests where the process itself is not under test (refusals, --help, what a run or a sweep
    writes). Signals, locks held by another process and exit codes of a real interpreter use `run_cli`. The working
    dir, environment, sys.path, sys.argv and SIGTERM handler are restored; warnings are off, as in `run_cli`."""
    from normlab.cli import train_command

    return _in_process(lambda: train_command(last_wins(args)), cwd, env)


def call_script(script: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python scripts/SCRIPT ARGS` called in this process (each script runs its command's `main`), as `call_cli`."""
    import runpy

    path = str(ROOT / "scripts" / script)

    def call():
        sys.argv = [path, *args]
        runpy.run_path(path, run_name="__main__")

    return _in_process(call, cwd, env)


def _in_process(call, cwd: Path, env: dict | None) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import signal
    import traceback
    import warnings

    out, err = io.StringIO(), io.StringIO()
    saved = os.getcwd(), dict(os.environ), list(sys.argv), signal.getsignal(signal.SIGTERM), list(sys.path)
    os.environ.update({"NORMLAB_DATA": DATA_ROOT, **(env or {})})
    sys.path[:0] = [p for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep) if p]  # as the interpreter would
    os.chdir(cwd)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                call()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - what the interpreter would print, and its exit code
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.argv[:] = saved[2]
        signal.signal(signal.SIGTERM, saved[3])
        sys.path[:] = saved[4]
    return subprocess.CompletedProcess(["in-process"], code, out.getvalue(), err.getvalue())


def scalar_points(run_dir: Path) -> list[tuple[str, int, float]]:
    """Every scalar point the run's event files hold, read from the files themselves (no purge applied), the
    timing-dependent samples_per_s left out: a killed and resumed run must hold each point once."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag != "samples_per_s" and value.metadata.plugin_data.plugin_name == "scalars":
                    points.append((value.tag, event.step, float(value.tensor.float_val[0])))
    return sorted(points)


@pytest.fixture
def config():
    return compose_config
