"""The one trainer: every dataset, model and norm goes through `train(cfg, run_dir)`.

Reads top to bottom: set up -> resume or start -> steps (forward, backward, step, constraints) -> at each
evaluation: test, log, checkpoint -> summary. The per-step loop keeps its statistics on the device and
reads them only at evaluations, so it never waits on the device in between.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from normlab.config import RESUMABLE_KEYS, Config, ConfigError, cadences
from normlab.data import InMemoryData, build_data
from normlab.datasets import DatasetSpec, dataset_spec
from normlab.distributed import Dist, env_world, sync_norms
from normlab.distributed import setup as setup_distributed
from normlab.models import build_model
from normlab.norms import (
    NORMS,
    BatchInstanceNorm,
    init_weight_norm_,
    norm_internals,
    recompute_batch_average_,
)
from normlab.optim import build_optimizer, build_scheduler
from normlab.runlog import (
    DamagedCheckpoint,
    RunLog,
    duration,
    eval_line,
    missing_folders,
    plan_line,
    read_checkpoint,
    read_json,
    remove_empty_folders,
    save_checkpoint,
    write_json,
)

CHECKPOINT = "last.pt"
PREVIOUS = "prev.pt"  # the checkpoint before last.pt, kept to resume from if last.pt is damaged
SUMMARY = "summary.json"
RUN_FILES = (CHECKPOINT, PREVIOUS, SUMMARY, "metrics.jsonl", "train.log")  # what a run writes beside its events
# keys added to normlab since runs were first saved, with the value that describes a run saved before them
LEGACY_VALUES = {
    "data": {"val_size": 0, "standardize": True},  # val_size: before the split, every training image trained
    # before model=resnet, model=custom, the lstm's pooling and init, the mlp's Gaussian init and norm on the logits
    "model": {
        "depth": 20,
        "target": None,
        "downsample": 1,
        "init_std": None,
        "norm_logits": False,
        "recurrent_init": "uniform",
    },
    "dataset": {"target": None},  # before dataset=custom
    "lr_batch_size": None,  # before the linear scaling option: lr as given
    "optimizer": {"decay_all": False},  # before optimizer.decay_all: norm parameters and biases never decayed
}
WN_INIT_SAMPLES = 500  # the WN paper's data-dependent init uses a minibatch of this size
SINGLE = Dist()  # one process


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda is not allowed here: no CUDA device is available; use device=auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: InMemoryData, dist: Dist = SINGLE, split: str = "test"
) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, "test" or "val" (each rank evaluates its part; sums
    all-reduced)."""
    model.eval()
    sums = torch.zeros(3, device=data.device)  # loss sum, correct, count
    for x, y in data.eval_batches(split, shard=(dist.rank, dist.world_size)):
        logits = model(x)
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
        sums[2] += len(y)
    loss_sum, correct, n = dist.all_reduce_(sums).tolist()
    return loss_sum / n, correct / n


def gather(stats: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Every rank's copy of `stats`, stacked on a new first dim, on the CPU (just `stats` without torchrun)."""
    if not dist.enabled:
        return stats.cpu()
    every = torch.zeros(dist.world_size, *stats.shape, device=stats.device)
    every[dist.rank] = stats
    return dist.all_reduce_(every).cpu()


PERCENTILES = (0.15, 0.50, 0.85)
PROBE_UNITS = 3


@torch.inference_mode()
def last_hidden_percentiles(model: torch.nn.Module, data: InMemoryData) -> dict[str, list[float]] | None:
    """15/50/85th percentiles over 1000 test images of the inputs to the first PROBE_UNITS sigmoids (or other
    nonlinearities) of the MLP's last hidden layer: the BN paper's Fig. 1(b, c). None for other models."""
    if not hasattr(model, "last_hidden_input"):
        return None
    model.eval()
    x, _ = next(data.eval_batches("test", 1000))
    z = model.last_hidden_input(x)[:, :PROBE_UNITS].float()  # type: ignore[operator]  # the MLP's method
    q = torch.quantile(z, torch.tensor(PERCENTILES, device=z.device), dim=0)
    return {f"p{round(p * 100)}": q[i].tolist() for i, p in enumerate(PERCENTILES)}


SMALL_BATCH = 8  # at or below it, a run that fails at an unscaled lr gets the linear scaling hint


def run_hint(cfg: Config, status: str, val_acc: float | None, num_classes: int) -> str | None:
    """What a user can do about a known cause of a failed run (diverged, or ended near chance), said where it
    happens: in the run's last line and its summary."""
    near_chance = val_acc is not None and val_acc < 1.5 / num_classes
    if status != "diverged" and not near_chance:
        return None
    if cfg.model.name == "lstm" and cfg.norm.name == "batch" and cfg.model.h0_noise == 0:
        return (
            "BN-LSTM with h_0 = 0: while the leading inputs are blank the recurrent term is the same for every "
            "sample, its batch variance is 0 and the backward multiplies by 1/sqrt(eps) per step; prime h_0 with "
            "noise as Cooijmans et al. do: model.h0_noise=0.1"
        )
    if cfg.lr_batch_size is None and cfg.batch_size <= SMALL_BATCH:
        return (
            f"batch {cfg.batch_size} at lr {cfg.lr:g} may be too large a step; lr_batch_size=32 scales lr with the "
            f"batch (the linear scaling rule: lr {cfg.lr:g} is for batch 32, batch {cfg.batch_size} runs lr "
            f"{cfg.lr * cfg.batch_size / 32:g})"
        )
    return None


def constrained_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Layers with a projection the papers apply after each optimizer step (BIN: gates clipped to [0, 1])."""
    return [m for m in model.modules() if isinstance(m, BatchInstanceNorm)]


def apply_constraints(layers: list[torch.nn.Module]) -> None:
    for layer in layers:
        layer.clamp_gate_()  # type: ignore[operator]  # (constrained_layers found the method)


def comparable(config: dict) -> dict:
    """A config as JSON sees it (tuples become lists), without what a resumed run may change (where the data
    lives, the progress bar, ...)."""
    config = json.loads(json.dumps({k: v for k, v in config.items() if k not in RESUMABLE_KEYS}))
    for key in ("root", "download"):
        config.get("data", {}).pop(key, None)
    return config


def with_legacy_values(saved: dict) -> dict:
    """A saved config with the LEGACY_VALUES of the keys it predates (a run saved before the validation split
    trained on every training image: it is not the run data.val_size=5000 asks for)."""
    saved = {**saved}
    for key, values in LEGACY_VALUES.items():
        if isinstance(values, dict) and isinstance(saved.get(key), dict):  # keys of a group
            saved[key] = {**values, **saved[key]}
        elif not isinstance(values, dict):  # a top-level key
            saved.setdefault(key, values)
    return saved


def config_differences(saved, current, key: str = "") -> list[str]:
    """Where a saved config differs from the run `current` asks for, as "key=old there, new now" (empty: the same
    run). Keys the saved one lacks (added to normlab since, without a LEGACY_VALUES entry: they do not change the
    run) are not compared."""
    if isinstance(saved, dict) and isinstance(current, dict):
        nested = (config_differences(v, current[k], f"{key}{k}.") for k, v in saved.items() if k in current)
        return [d for differences in nested for d in differences]
    return [] if saved == current else [f"{key.rstrip('.')}={saved} there, {current} now"]


def check_same_run(saved: dict, cfg: Config, run_dir: Path) -> None:
    differs = config_differences(comparable(with_legacy_values(saved)), comparable(cfg.to_dict()))
    if differs:
        raise ConfigError(f"{run_dir} holds a run with another config ({'; '.join(differs[:3])}); use "
                          "overwrite=true to replace it")  # fmt: skip


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
        raise ConfigError(f"{run_dir} holds a run made with {made} process(es), not {world_size}; run it with "
                          f"{made}, use overwrite=true to replace it, or another hydra.run.dir")  # fmt: skip


def prepare_run_dir(cfg: Config, run_dir: Path, clear: bool = True, world_size: int = 1) -> tuple[str, dict | None]:
    """Decide what to do with what `run_dir` already holds: ("skip", summary) for a finished run of the same
    config and world size, ("resume", checkpoint), ("fresh", None); `overwrite=true` clears it first. A run dir
    holding another config's run is a ConfigError, never silently mixed."""
    if cfg.overwrite and not clear:  # another rank cleared it already
        return "fresh", None
    run_files = [run_dir / name for name in RUN_FILES] + sorted(run_dir.glob("events.out.tfevents.*"))
    if cfg.overwrite:
        for path in run_files:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        return "fresh", None
    for path in run_files:
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path} is not a file (a directory?); move it away, or use overwrite=true to start the "
                              "run over")  # fmt: skip
    summary = read_json(run_dir / SUMMARY)
    if isinstance(summary, dict) and isinstance(summary.get("config"), dict) and summary["config"]:
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


def cudnn_algorithms(deterministic: bool):
    """cuDNN's deterministic algorithms (same seed, same numbers), or its autotuned fastest; the process's flags
    are restored on exit."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(cudnn.enabled, not deterministic, deterministic=deterministic, allow_tf32=cudnn.allow_tf32)


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


def train(
    cfg: Config,
    run_dir: Path,
    data: InMemoryData | DatasetSpec | None = None,
    on_start: Callable[[Path], None] | None = None,
    model: torch.nn.Module | Callable[..., torch.nn.Module] | None = None,
    chosen: Sequence[str] = (),
) -> dict:
    """Train one run in `run_dir` (resuming from its checkpoint, skipping it when finished); return its summary.
    Under torchrun every rank calls this; only rank 0 writes files, holding the run dir's lock throughout (a
    second process gets RunLocked and changes nothing). `data` reuses already loaded datasets (benchmarks,
    notebooks) or gives dataset=custom's spec; by default they are loaded from `cfg.dataset` and `cfg.data`.
    `model`: model=custom's module or factory (else model._target_). `on_start(run_dir)` runs on rank 0 once the
    run is accepted (fresh or resumed, not skipped or refused): the command line writes its .hydra/ record there.
    `chosen`: the config keys the command set (its overrides), shown in TensorBoard's HPARAMS after norm, batch
    size and lr (runlog.hparams_shown)."""
    owner = env_world().is_main
    made = missing_folders(run_dir)
    with cudnn_algorithms(cfg.deterministic), run_lock(run_dir, owner):
        try:
            return _train(cfg, run_dir, data, on_start, model, chosen)
        except ConfigError:
            if owner:
                remove_if_empty(run_dir, made)  # a refused fresh run leaves no dir behind
            raise


def _train(cfg: Config, run_dir: Path, data, on_start, module, chosen) -> dict:
    device = resolve_device(cfg.device)
    dist = setup_distributed(cfg.batch_size, device)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    shard = (dist.rank, dist.world_size)
    if dist.is_main:  # rank 0 (which made run_dir, holding its lock) decides what it holds before the others look
        action, previous = prepare_run_dir(cfg, run_dir, world_size=dist.world_size)
    dist.barrier()
    if not dist.is_main:
        action, previous = prepare_run_dir(cfg, run_dir, clear=False, world_size=dist.world_size)
    if action == "skip":
        dist.close()
        return {**(previous or {}), "skipped": True, "run_dir": str(run_dir)}
    ckpt = previous if action == "resume" else None
    if dist.is_main and on_start is not None:
        on_start(run_dir)

    seed_everything(cfg.seed)
    if not isinstance(data, InMemoryData):
        spec = data or dataset_spec(cfg.dataset.name, cfg.dataset.target)
        data = build_data(spec, cfg.data, cfg.seed, device, channels_last=cfg.channels_last)
    steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is not allowed: the training set has only {len(data.train.labels)} images"
        )
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    model = build_model(cfg.model, cfg.norm, data.shape, data.num_classes, cfg.seed, module).to(device)
    if cfg.norm.sync and dist.enabled:
        model = sync_norms(model, device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg.scheduler, total_steps)

    # model selection reads the validation split only: the best validation accuracy, and the test accuracy of
    # the evaluation that reached it (reported, never selected on)
    best: dict[str, Any] = {"val_acc": None, "step": None, "test_acc": None}
    step, train_time, prior_wall = 0, 0.0, 0.0
    # this rank's loss and number correct at each step since the last evaluation: written on the device every
    # step, read once per evaluation (no per-step sync)
    eval_every, log_every = cadences(cfg, total_steps, data.eval_images)
    stats = torch.zeros(2, min(eval_every, max(total_steps, 1)), device=device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        step, best = ckpt["step"], ckpt.get("best", best)  # (a val_size=0 run saved before the split)
        train_time, prior_wall = ckpt["train_time"], ckpt["wall_s"]
        stats.copy_(ckpt["train_stats"][dist.rank] if dist.enabled else ckpt["train_stats"])
        set_rng_state(ckpt["rng"])
    elif cfg.norm.init == "data" and NORMS[cfg.norm.name].weight_norm:
        init_weight_norm_(model, data.normalize(data.train.images[:WN_INIT_SAMPLES]))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net: Any = DistributedDataParallel(model) if dist.enabled else model  # `model` stays the plain module
    if cfg.compile:
        net = torch.compile(net)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")

    log = RunLog(run_dir, start_step=step) if dist.is_main else None
    if log and step == 0:
        log.log_config(cfg.to_dict(), chosen)
    status, record, diverged_at = "completed", (log.records[-1] if log and log.records else None), None
    start, start_step = time.perf_counter(), step
    show = cfg.progress and dist.is_main
    # a bar on a terminal; elsewhere (a log file, a parallel sweep's jobs) a plain line per evaluation instead of
    # hundreds of carriage-return updates
    plain = show and not sys.stderr.isatty()
    if show:
        print(
            plan_line(cfg.batch_size, total_steps, steps_per_epoch, eval_every, data.eval_images, step), file=sys.stderr
        )
    bar = tqdm(total=total_steps, initial=step, disable=not show or plain, desc=run_dir.name, dynamic_ncols=True)
    order_epoch, order = -1, None
    logged = max(0, step // log_every * log_every - (step - step % eval_every))  # stats index of the last curve point
    constrained = constrained_layers(model)
    tick = time.perf_counter()

    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = data.epoch_order(epoch), epoch
        x, y = data.train_batch(order, index, cfg.batch_size, step, shard)
        if not model.training:  # (evaluation leaves it in eval mode)
            net.train()
        with autocast:
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        apply_constraints(constrained)
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            since_eval = step % eval_every
            stats[0, since_eval] = loss.detach()
            stats[1, since_eval] = (logits.argmax(1) == y).sum()
        step += 1
        bar.update(1)
        finished = step == total_steps

        at_eval = step % eval_every == 0 or finished
        if step % log_every == 0 or at_eval:  # a training-curve point: the mean of the steps since the last one
            window = dist.all_reduce_(stats[:, : since_eval + 1].clone())  # summed over ranks, step by step
            recent = window[:, logged:]
            if log and torch.isfinite(recent[0]).all():
                n = recent.shape[1]
                log.log_train(
                    step, recent[0].sum().item() / (n * dist.world_size), recent[1].sum().item() / (n * cfg.batch_size)
                )
            logged = 0 if at_eval else since_eval + 1
        if at_eval:
            train_time += time.perf_counter() - tick
            losses = window[0] / dist.world_size
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):  # every rank sees the same sums, so every rank stops here together
                status, diverged_at = "diverged", step - since_eval + bad[0].item()
                break
            # norm.bn_stats=batch_average: population statistics recomputed over training batches for every evaluation
            batches = (
                data.train_batch(order, i, cfg.batch_size, step, shard)[0] for i in range(min(steps_per_epoch, 200))
            )
            recompute_batch_average_(model, batches)
            val_loss, val_acc = evaluate(model, data, dist, "val") if data.val is not None else (None, None)
            test_loss, test_acc = evaluate(model, data, dist, "test")
            if val_acc is not None and (best["val_acc"] is None or val_acc > best["val_acc"]):
                best = {"val_acc": val_acc, "step": step, "test_acc": test_acc}
            record = {
                "step": step,
                "epoch": step / steps_per_epoch,
                "train_loss": losses.mean().item(),
                "train_acc": window[1].sum().item() / ((since_eval + 1) * cfg.batch_size),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": step * cfg.batch_size / train_time if train_time > 0 else None,
            }
            if log is not None:  # rank 0
                percentiles = last_hidden_percentiles(model, data)
                if percentiles is not None:
                    record["last_hidden_input"] = percentiles
                internals = norm_internals(model)
                if internals:
                    record["norm_layers"] = internals
                log.log_eval(record)
                log.log_internals(step, internals, model)
                if plain:
                    left = (time.perf_counter() - start) / (step - start_step) * (total_steps - step)
                    print(f"{run_dir.name} · {eval_line(record)} · ~{duration(left)} left", file=sys.stderr, flush=True)
            bar.set_postfix(
                loss=f"{record['train_loss']:.3f}", val_acc=f"{val_acc or 0:.4f}", test_acc=f"{test_acc:.4f}"
            )
            tick = time.perf_counter()
        if finished or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            train_time, tick = train_time + time.perf_counter() - tick, time.perf_counter()
            every_rank_stats = gather(stats, dist)  # each rank's train statistics since the last evaluation
            if log is not None:
                log.flush()
                extra = {
                    "world_size": dist.world_size,
                    "best": best,
                    "train_stats": every_rank_stats,
                    "train_time": train_time,
                    "wall_s": prior_wall + time.perf_counter() - start,
                }
                save_state(run_dir / CHECKPOINT, cfg, step, model, optimizer, scheduler, extra)
    bar.close()

    last = record or {}
    summary = {
        "status": status,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "eval_every": eval_every,  # the cadences used (eval_every=null and log_every=null choose them)
        "log_every": log_every,
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        "test_acc": last.get("test_acc"),
        "test_loss": last.get("test_loss"),
        "best_val_acc": best["val_acc"],  # model selection: the validation split's best evaluation
        "best_val_step": best["step"],
        "test_acc_at_best_val": best["test_acc"],
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "wall_s": prior_wall + time.perf_counter() - start,
        "samples_per_s": step * cfg.batch_size / train_time if train_time > 0 else None,
        "diverged_at_step": diverged_at,
        "hint": run_hint(cfg, status, last.get("val_acc"), data.num_classes),
        "params": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "world_size": dist.world_size,
        "threads": torch.get_num_threads(),  # results depend on it (the order of float sums): same seed, same threads
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "run_dir": str(run_dir),
        "norm_layers": norm_internals(model),
        "config": cfg.to_dict(),
    }
    if log is not None:
        log.log_end(status)
        log.close()  # events on disk before the summary that marks the run finished
        write_json(run_dir / SUMMARY, summary)
    dist.close()
    return summary
