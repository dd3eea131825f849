"""The one trainer: every dataset, model and norm goes through `train(cfg, run_dir)`.

Reads top to bottom: set up -> resume or start -> steps (forward, backward, step, constraints) -> at each
evaluation: test, log, checkpoint -> summary. The per-step loop keeps its statistics on the device and
reads them only at evaluations, so it never waits on the device in between.
"""

from __future__ import annotations

import errno
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from normlab.checks import run_hint
from normlab.config import Config, ConfigError, cadences
from normlab.curve import CurveWindow
from normlab.data import InMemoryData, build_data
from normlab.datasets import DatasetSpec, dataset_spec
from normlab.distributed import Dist, env_world, sync_norms
from normlab.distributed import setup as setup_distributed
from normlab.landscape import along_gradient
from normlab.models import build_model
from normlab.norms import (
    NORMS,
    constrained_layers,
    groups_per_layer,
    init_weight_norm_,
    norm_histograms,
    norm_internals,
    recompute_batch_average_,
)
from normlab.optim import build_optimizer, build_scheduler
from normlab.rundir import (
    CHECKPOINT,
    SUMMARY,
    cpu_name,
    git_commit,
    load_state,
    prepare_run_dir,
    remove_if_empty,
    run_lock,
    save_state,
)
from normlab.runlog import DiskFull, RunLog, duration, eval_line, missing_folders, plan_line, write_json

PROBE_IMAGES = 1000  # test images a model's probe sees at each evaluation
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


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: InMemoryData, dist: Dist = SINGLE, split: str = "test", limit: int | None = None
) -> tuple[float, float]:
    """Mean loss and accuracy over a split, "test", "val" or "train" (its first `limit` images), in eval mode
    (each rank evaluates its part; sums all-reduced)."""
    model.eval()
    sums = torch.zeros(3, device=data.device)  # loss sum, correct, count
    for x, y in data.eval_batches(split, shard=(dist.rank, dist.world_size), limit=limit):
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


def cudnn_algorithms(deterministic: bool):
    """cuDNN's deterministic algorithms (same seed, same numbers), or its autotuned fastest; the process's flags
    are restored on exit."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(cudnn.enabled, not deterministic, deterministic=deterministic, allow_tf32=cudnn.allow_tf32)


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
        except OSError as e:  # full under TensorBoard's writer or a metrics line, as under a checkpoint: DiskFull
            if e.errno == errno.ENOSPC and not isinstance(e, DiskFull):
                raise DiskFull(errno.ENOSPC, f"no space left on the device while writing into {run_dir}") from None
            raise


@dataclass
class Progress:
    """The loop's own state that a checkpoint holds beside the weights, the optimizer, the schedule and the
    generators (rundir.save_state): `fields` writes it, `resumed` reads it back, each the other's mirror."""

    step: int = 0
    # model selection reads the validation split only: the best validation accuracy, and the test accuracy of the
    # evaluation that reached it (reported, never selected on)
    best: dict[str, Any] = field(default_factory=lambda: {"val_acc": None, "step": None, "test_acc": None})
    train_time: float = 0.0  # seconds of training steps, evaluations left out, over every process that ran
    prior_wall: float = 0.0  # wall seconds of the processes before this one

    @classmethod
    def resumed(cls, ckpt: dict) -> Progress:
        best = ckpt.get("best") or cls().best  # (a val_size=0 run saved before the split has none)
        return cls(ckpt["step"], best, ckpt["train_time"], ckpt["wall_s"])

    def fields(self, wall_s: float, train_stats: torch.Tensor, world_size: int) -> dict[str, Any]:
        """The checkpoint's fields beside the model's (the step is save_state's own): `wall_s`, this process's."""
        return {
            "world_size": world_size,
            "best": self.best,
            "train_stats": train_stats,
            "train_time": self.train_time,
            "wall_s": self.prior_wall + wall_s,
        }

    def samples_per_s(self, step: int, batch_size: int) -> float | None:
        return step * batch_size / self.train_time if self.train_time > 0 else None


def train_step(net, model, optimizer, scheduler, grad_clip, autocast, constrained, x, y) -> tuple[torch.Tensor, ...]:
    """One optimizer step on the batch (x, y), with the projections layers declare after it (`constrained`:
    their `after_step_`) and the schedule's step; the loss and logits, left on the device."""
    if not model.training:  # (evaluation leaves it in eval mode)
        net.train()
    with autocast:
        logits = net(x)
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    for layer in constrained:
        layer.after_step_()  # type: ignore[operator]  # (declared: constrained_layers)
    if scheduler is not None:
        scheduler.step()
    return loss, logits


def measure(model, data, dist: Dist, cfg: Config, batch, lr: float, step: int, test: bool) -> dict[str, Any]:
    """An evaluation's measurements: validation loss and accuracy, and with `test` the test set's (None
    otherwise: a chosen cadence reads it at the end only); with `eval_train` the training images
    in eval mode (the generalization gap's other side); with `landscape` Santurkar et al.'s Fig. 4 on `batch`, the
    step's own (on every rank: synced BN needs them all)."""
    val_loss, val_acc = evaluate(model, data, dist, "val") if data.val is not None else (None, None)
    test_loss, test_acc = evaluate(model, data, dist, "test") if test else (None, None)
    out: dict[str, Any] = {"val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc}
    if cfg.eval_train:
        out["trainset_loss"], out["trainset_acc"] = evaluate(model, data, dist, "train", cfg.eval_train)
    if cfg.landscape:
        x, y = batch
        out["landscape"] = along_gradient(model, x, y, lr, seed=step)
    return out


def log_evaluation(log: RunLog, model, record: dict, data) -> None:
    """An evaluation into the run's log (rank 0), with what the model's layers declare worth watching: the MLP's
    Fig. 1(b, c) probe (`probe`), the norms' internals and histograms."""
    probe = getattr(model, "probe", None)
    if probe is not None:
        record["last_hidden_input"] = probe(next(data.eval_batches("test", PROBE_IMAGES))[0])
    internals = norm_internals(model)
    if internals:
        record["norm_layers"] = internals
    log.log_eval(record)
    log.log_internals(record["step"], internals, norm_histograms(model))


def data_line(data, model) -> str:
    """What the run trains on and what it chose quietly: the validation images held out of the training split, and
    GN's groups per layer (normlab's default is 4 channels a group, not the paper's 32 groups)."""
    held = len(data.val.labels) if data.val is not None else 0
    line = f"normlab: {len(data.train.labels):,} training images ({held:,} more held out for validation: data.val_size)"
    groups = groups_per_layer(model)
    if groups:
        line += f"; GN groups per layer: {', '.join(map(str, groups))} (norm.group_size / norm.num_groups)"
    return line


def _train(cfg: Config, run_dir: Path, data, on_start, module, chosen) -> dict:
    device = resolve_device(cfg.device)
    dist = setup_distributed(device)
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

    cadence = cadences(cfg, total_steps, data.val_images, data.test_images)
    eval_every, log_every = cadence.eval_every, cadence.log_every
    curve = CurveWindow(eval_every, total_steps, device)  # this rank's steps since the last evaluation
    progress = Progress()
    if ckpt is not None:
        load_state(ckpt, model, optimizer, scheduler)
        progress = Progress.resumed(ckpt)
        curve.resume(ckpt["train_stats"][dist.rank] if dist.enabled else ckpt["train_stats"], progress.step, log_every)
    elif cfg.norm.init == "data" and NORMS[cfg.norm.name].weight_norm:
        init_weight_norm_(model, data.normalize(data.train.images[:WN_INIT_SAMPLES]))
    step, best = progress.step, progress.best
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
        print(plan_line(cfg.batch_size, total_steps, steps_per_epoch, cadence, data, step), file=sys.stderr)
        print(data_line(data, model), file=sys.stderr)
    bar = tqdm(total=total_steps, initial=step, disable=not show or plain, desc=run_dir.name, dynamic_ncols=True)
    order_epoch, order = -1, None
    constrained = constrained_layers(model)
    tick = time.perf_counter()

    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = data.epoch_order(epoch), epoch
        x, y = data.train_batch(order, index, cfg.batch_size, step, shard)
        loss, logits = train_step(net, model, optimizer, scheduler, cfg.grad_clip, autocast, constrained, x, y)
        curve.record(step, loss, (logits.argmax(1) == y).sum())
        step += 1
        bar.update(1)
        finished = step == total_steps

        at_eval = step % eval_every == 0 or finished
        if step % log_every == 0 or at_eval:  # a training-curve point: the mean of the steps since the last one
            window, recent = curve.point(step, dist.all_reduce_)  # summed over ranks, step by step
            if log and torch.isfinite(recent[0]).all():
                n = recent.shape[1]
                log.log_train(
                    step, recent[0].sum().item() / (n * dist.world_size), recent[1].sum().item() / (n * cfg.batch_size)
                )
        if at_eval:
            progress.train_time += time.perf_counter() - tick
            losses = window[0] / dist.world_size
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):  # every rank sees the same sums, so every rank stops here together
                status, diverged_at = "diverged", step - curve.steps(step) + 1 + bad[0].item()
                break
            # norm.bn_stats=batch_average: population statistics recomputed over training batches for every evaluation
            batches = (
                data.train_batch(order, i, cfg.batch_size, step, shard)[0] for i in range(min(steps_per_epoch, 200))
            )
            recompute_batch_average_(model, batches)
            lr = optimizer.param_groups[0]["lr"]
            measured = measure(model, data, dist, cfg, (x, y), lr, step, cadence.test_each_eval or finished)
            record = {
                "step": step,
                "epoch": step / steps_per_epoch,
                "train_loss": losses.mean().item(),
                "train_acc": window[1].sum().item() / (curve.steps(step) * cfg.batch_size),
                **{k: measured.pop(k) for k in ("val_loss", "val_acc", "test_loss", "test_acc")},
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": progress.samples_per_s(step, cfg.batch_size),
                **measured,  # eval_train's, landscape's
            }
            val_acc, test_acc = record["val_acc"], record["test_acc"]
            if val_acc is not None and (best["val_acc"] is None or val_acc > best["val_acc"]):
                best = {"val_acc": val_acc, "step": step, "test_acc": test_acc}
            if log is not None:  # rank 0
                log_evaluation(log, model, record, data)
                if plain:
                    left = (time.perf_counter() - start) / (step - start_step) * (total_steps - step)
                    print(f"{run_dir.name} · {eval_line(record)} · ~{duration(left)} left", file=sys.stderr, flush=True)
            shown = {"loss": record["train_loss"], "val_acc": val_acc, "test_acc": test_acc}
            bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items() if v is not None})
            tick = time.perf_counter()
        if finished or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            progress.train_time, tick = progress.train_time + time.perf_counter() - tick, time.perf_counter()
            every_rank_stats = gather(curve.stats, dist)  # each rank's train statistics since the last evaluation
            if log is not None:
                log.flush()
                progress.step, progress.best = step, best
                extra = progress.fields(time.perf_counter() - start, every_rank_stats, dist.world_size)
                save_state(run_dir / CHECKPOINT, cfg, step, model, optimizer, scheduler, extra)
    bar.close()

    last = record or {}
    summary = {
        "status": status,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "eval_every": eval_every,  # the cadences used (eval_every=null and log_every=null choose them)
        "log_every": log_every,
        "test_each_eval": cadence.test_each_eval,  # False: the test set read once, at the end
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        "test_acc": last.get("test_acc"),
        "test_loss": last.get("test_loss"),
        "best_val_acc": best["val_acc"],  # model selection: the validation split's best evaluation
        "best_val_step": best["step"],
        "test_acc_at_best_val": best["test_acc"],
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "wall_s": progress.prior_wall + time.perf_counter() - start,
        "samples_per_s": progress.samples_per_s(step, cfg.batch_size),
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
