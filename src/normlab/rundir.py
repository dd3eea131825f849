"""A run's own directory: what identifies a run (its config, less what a resume may change), what the directory
already holds (skip, resume or start; the intact-checkpoint search), the checkpoint saved and loaded side by side,
and the lock that keeps two processes from writing one run."""

from __future__ import annotations

import fcntl
import os
import platform
import random
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from normlab.config import Config, ConfigError, comparable
from normlab.runlog import (
    DamagedCheckpoint,
    read_checkpoint,
    read_json,
    read_summary,
    remove_empty_folders,
    save_checkpoint,
)

CHECKPOINT = "last.pt"
PREVIOUS = "prev.pt"  # the checkpoint before last.pt, kept to resume from if last.pt is damaged
SUMMARY = "summary.json"
RUN_FILES = (CHECKPOINT, PREVIOUS, SUMMARY, "metrics.jsonl", "train.log")  # what a run writes beside its events


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one): float results may differ on another one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def config_differences(saved, current, key: str = "") -> list[str]:
    """Where a saved config differs from the run `current` asks for, as "key=old there, new now" (empty: the same
    run). A key the saved one lacks is a difference too: normlab cannot tell what a run saved before the key
    existed meant by it (`normlab migrate` says, for the keys added so far); a key since removed is not."""
    if isinstance(saved, dict) and isinstance(current, dict):
        missing = [
            f"{key}{k} missing there (saved by an earlier normlab: `normlab migrate <folder>`), {v} now"
            for k, v in current.items()
            if k not in saved
        ]
        nested = (config_differences(v, current[k], f"{key}{k}.") for k, v in saved.items() if k in current)
        return [*missing, *(d for differences in nested for d in differences)]
    return [] if saved == current else [f"{key.rstrip('.')}={saved} there, {current} now"]


def check_same_run(saved: dict, cfg: Config, run_dir: Path) -> None:
    differs = config_differences(comparable(saved), comparable(cfg.to_dict()))
    if differs:
        raise ConfigError(
            f"{run_dir} holds a run with another config ({'; '.join(differs[:3])}); use overwrite=true to replace it"
        )


def newest_intact_checkpoint(run_dir: Path, speak: bool = True) -> dict | None:
    """The state of last.pt, or of prev.pt where last.pt is missing or damaged (saying so); None where there is
    neither. A ConfigError naming the file where every checkpoint there is damaged."""
    damaged = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.exists():
            continue
        try:
            state = read_checkpoint(path)
        except DamagedCheckpoint as e:
            damaged.append(f"{path} is damaged ({e})")
            continue
        if path.name == PREVIOUS and speak:
            why = damaged[0] if damaged else f"{run_dir / CHECKPOINT} is missing (killed while saving)"
            print(f"warning: {why}; resuming from {path} (step {state['step']})", file=sys.stderr, flush=True)
        return state
    if damaged:
        raise ConfigError(f"{damaged[0]} and no earlier checkpoint is intact; use overwrite=true to start the run over")
    return None


def check_world_size(saved: dict, world_size: int, run_dir: Path) -> None:
    """A run continues (or is skipped) only with the number of processes it was made with: a resume never changes
    the world size, and a finished 1-process run is never reported for a 2-process command."""
    made = saved.get("world_size", 1)
    if made != world_size:
        raise ConfigError(
            f"{run_dir} holds a run made with {made} process(es), not {world_size}; run it with "
            f"{made}, use overwrite=true to replace it, or another hydra.run.dir"
        )


OWN_ENTRIES = (*RUN_FILES, ".hydra", "contrast.json")  # and events.out.tfevents.*, *.tmp (an interrupted write)


def check_own_folder(run_dir: Path, overwrite: bool) -> None:
    """A run folder holds only what normlab writes: a symbolic link where normlab writes (a file of the run, .hydra
    or what it holds) would lead its writes out of the folder, and is refused; a file normlab did not make (another
    tool's summary.json or notes) is refused unless overwrite=true, which writes normlab's files beside them."""
    if not run_dir.is_dir():
        return
    hydra = run_dir / ".hydra"
    written = [run_dir / name for name in OWN_ENTRIES] + [hydra / "config.yaml", hydra / "overrides.yaml"]
    for path in [*written, *run_dir.glob("events.out.tfevents.*")]:
        if path.is_symlink():
            raise ConfigError(
                f"{path} is a symbolic link: normlab never writes through a link out of a run folder; remove it"
            )
    if overwrite:
        return
    foreign = [
        p.name
        for p in run_dir.iterdir()
        if p.name not in OWN_ENTRIES and not p.name.startswith("events.out.tfevents.") and not p.name.endswith(".tmp")
    ]
    summary = read_json(run_dir / SUMMARY)
    # another tool's summary: an object with no normlab config (a damaged one is normlab's, handled as damaged)
    if isinstance(summary, dict) and not isinstance(summary.get("config"), dict) and summary.get("status") != "failed":
        foreign.append(f"{SUMMARY} (not a normlab run's)")
    if foreign:
        raise ConfigError(
            f"{run_dir} holds files normlab did not write ({', '.join(sorted(foreign)[:5])}); choose another folder, "
            "or overwrite=true to write this run's files beside them"
        )


def prepare_run_dir(cfg: Config, run_dir: Path, clear: bool = True, world_size: int = 1) -> tuple[str, dict | None]:
    """Decide what to do with what `run_dir` already holds: ("skip", summary) for a finished run of the same
    config and world size, ("resume", checkpoint), ("fresh", None); `overwrite=true` clears it first. A run dir
    holding another config's run is a ConfigError, never silently mixed."""
    if cfg.overwrite and not clear:  # another rank cleared it already
        return "fresh", None
    check_own_folder(run_dir, cfg.overwrite)
    run_files = [run_dir / name for name in RUN_FILES] + sorted(run_dir.glob("events.out.tfevents.*"))
    if cfg.overwrite:
        for path in run_files:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        return "fresh", None
    for path in run_files:
        if path.exists() and not path.is_file():
            raise ConfigError(
                f"{path} is not a file (a directory?); move it away, or use overwrite=true to start the run over"
            )
    summary = read_summary(run_dir / SUMMARY)  # (one that is not normlab's: the checkpoint decides)
    if summary is not None and isinstance(summary.get("config"), dict) and summary["config"]:
        check_same_run(summary["config"], cfg, run_dir)
        if summary.get("status") in ("completed", "diverged"):
            check_world_size(summary, world_size, run_dir)
            return "skip", summary  # no need to load the checkpoint
    ckpt = newest_intact_checkpoint(run_dir, speak=clear)
    if ckpt is not None:
        check_same_run(ckpt["config"], cfg, run_dir)
        check_world_size(ckpt, world_size, run_dir)
        if not cfg.resume:
            raise ConfigError(f"resume=false but {run_dir} holds a checkpoint; use overwrite=true to start over")
        return "resume", ckpt
    return "fresh", None


def rng_state() -> dict:
    """The three generators' states as tensors and plain values (a checkpoint holds nothing else: it is read
    back with weights_only=True); NumPy's MT19937 key becomes an int64 tensor."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # the legacy form: (name, key, pos, has_gauss, cached)
    name, key, pos, has_gauss, cached = state
    numpy = (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    return {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    name, key, *rest = rng["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.int64).astype(np.uint32), *rest))
    random.setstate(rng["python"])


def save_state(path: Path, cfg: Config, step: int, model, optimizer, scheduler, extra: dict) -> None:
    """A plain-dict checkpoint: everything needed to continue exactly where this step left off."""
    state = {
        "config": cfg.to_dict(),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        **extra,
    }
    save_checkpoint(path, state, previous=path.with_name(PREVIOUS))


def load_state(ckpt: dict, model, optimizer, scheduler) -> None:
    """save_state's inverse for the weights, the optimizer, the schedule and the three generators; the loop's own
    counters (step, best, times, statistics) the trainer reads from `ckpt` itself."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])


class RunLocked(ConfigError):
    """Another process is writing this run directory."""


@contextmanager
def run_lock(run_dir: Path, owner: bool):
    """Hold an exclusive OS lock on `run_dir` (flock on the directory itself: no lock file, and the OS releases
    it when the process dies, so a SIGKILLed owner never blocks a resume). `owner`: rank 0, the one that writes."""
    if not owner:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"{run_dir} is being written by another process (the same run launched twice, or two jobs of a "
                "sweep that map to one run dir); wait for it to finish, then re-run this command"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_if_empty(run_dir: Path, made: list[Path]) -> None:
    """Remove a run dir that holds no work (nothing, or only the .hydra/ record of a run that did not start), and
    the folders above it that this run `made` (e.g. runs/default/), where nothing else has gone into them."""
    if run_dir.is_dir() and all(p.name == ".hydra" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
    remove_empty_folders(made)
