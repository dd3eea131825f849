"""Typed run configuration: the one place where Hydra's DictConfig becomes plain, validated dataclasses.

Everything downstream (`build_data`, `build_model`, `build_norm`, `train`) takes these objects, never Hydra's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# What a run may change without becoming another run, written once (dotted keys): the trainer compares the rest on
# resume, sweeps never count them as what makes two arms differ, a report matches runs to its jobs without them, and
# TensorBoard's HPARAMS table and Hydra's run-dir names leave them out (tests/test_configs.py checks the names).
# The measurement keys add what a run measures besides its training (landscape.py, the training images in eval
# mode), leaving its training exactly as it was (tests/test_landscape.py); set on the command line, they still
# name a run dir of their own, so that a finished run without them is not skipped.
MEASUREMENT_KEYS = ("landscape", "eval_train")
RUN_INVARIANT = (
    *("progress", "device", "resume", "overwrite", "checkpoint_every", "log_every", "data.root", "data.download"),
    *MEASUREMENT_KEYS,
)


def comparable(config: dict) -> dict:
    """A config as JSON sees it (tuples become lists), without the RUN_INVARIANT keys."""
    config = json.loads(json.dumps(config))
    for key in RUN_INVARIANT:
        *groups, name = key.split(".")
        where: Any = config
        for group in groups:
            where = where.get(group, {}) if isinstance(where, dict) else {}
        if isinstance(where, dict):
            where.pop(name, None)
    return config


def identity(config: dict, seed: bool = True) -> str:
    """What makes a run, as one string: two configs with the same identity are one run (with `seed=False`: one arm,
    its seeds aside)."""
    return json.dumps({**comparable(config), **({} if seed else {"seed": None})}, sort_keys=True)


class ConfigError(ValueError):
    """Bad user input. The command line prints it as one line and exits with code 2."""


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "mnist"
    target: str | None = None  # dataset=custom: `_target_`, the dotted path of a factory returning your tensors


@dataclass(frozen=True)
class DataConfig:
    root: str = "./data"
    download: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    val_size: int = 5000  # images held out of the training set for model selection (0 = none)
    standardize: bool = True  # subtract the dataset's mean, divide by its std; false: pixels in [0, 1]
    augment: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """`model.name`; the model.* keys a model reads, with their types, defaults and range checks, are a subclass in
    the model's own file, given to `register_model(config=...)`: a new model key never touches this file."""

    name: str = "mlp"

    def validate(self) -> None:
        """Range checks that the keys' types alone cannot express (each model's config says its own)."""


MODEL_CONFIGS: dict[str, type[ModelConfig]] = {}  # model name -> its config class (models.registry.register_model)


@dataclass(frozen=True)
class NormConfig:
    name: str = "batch"
    eps: float = 1e-5
    momentum: float = 0.1
    num_groups: int | None = None  # group: a fixed number of groups per layer; null = group_size channels each
    group_size: int = 4  # group: channels per group where num_groups is null
    gate_lr_mult: float = 10.0
    bn_stats: str = "moving"
    variant: str = "paper"  # switchable: the paper's statistics or the official code's (docs/norms-and-models.md)
    init: str = "default"
    sync: bool = False  # under torchrun: BN statistics over the global batch (SyncBatchNorm / all-reduced moments)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_all: bool = False  # decay every parameter but BIN gates (γ, β, biases too: the BIN authors' recipe)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True  # torch's fused step: one kernel over all parameters (Adam 2.2x faster per MLP step on CPU)


@dataclass(frozen=True)
class SchedulerConfig:
    name: str = "constant"
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    final_fraction: float = 0.0


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # in a run: its model's own subclass (MODEL_CONFIGS)
    norm: NormConfig = field(default_factory=NormConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    experiment: str = "default"
    batch_size: int = 60
    lr: float = 0.1
    lr_batch_size: int | None = None  # lr is given for this batch size (linear scaling rule); None: lr as given
    epochs: int = 1
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    eval_every: int | None = None  # steps between evaluations; None: chosen by config.cadences
    log_every: int | None = None  # steps between training-curve points; None: about 10 per evaluation
    grad_clip: float | None = None
    landscape: bool = False  # at each evaluation, the loss and gradient along the current gradient (landscape.py)
    eval_train: int = 0  # at each evaluation, the first eval_train training images in eval mode (0: none)
    channels_last: bool = False  # NHWC memory layout for conv nets (conf/ says auto: checks.load_config resolves it)
    compile: bool = False  # torch.compile the model
    amp: bool = False  # bfloat16 autocast on CUDA (ignored on CPU)
    deterministic: bool = True  # cuDNN's deterministic algorithms on CUDA: same seed, same numbers
    progress: bool = True
    checkpoint_every: int = 500
    resume: bool = True
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def scaled_lr(self) -> float:
        """The learning rate the optimizer uses (`scaled_lr`)."""
        return scaled_lr(self.lr, self.batch_size, self.lr_batch_size)


def scaled_lr(lr: float, batch_size: float, lr_batch_size: float | None) -> float:
    """The learning rate a run trains at: `lr`, or with `lr_batch_size` set the linear scaling rule the GN paper
    follows (Goyal et al. 2017), lr · batch_size / lr_batch_size. Run names and the HPARAMS table show it too."""
    return lr if lr_batch_size is None else lr * batch_size / lr_batch_size


EVALUATIONS = 20  # eval_every=null: at most this many evaluations per run, whatever its length
EVAL_SHARE = 0.2  # eval_every=null: evaluations take at most about this share of a run's compute
FORWARDS_PER_TRAINING_IMAGE = 3  # a training step's forward and backward pass, in forward passes
TRAIN_POINTS_PER_EVAL = 10  # log_every=null: training-curve points between two evaluations
MAX_EVAL_GAP = 10_000_000  # steps between evaluations at most: the trainer keeps each step's loss until the next


@dataclass(frozen=True)
class Cadence:
    """How a run evaluates: every `eval_every` steps (and at the end), a training-curve point every `log_every`;
    the test set at every evaluation, or (`test_each_eval` False) once, at the end."""

    eval_every: int
    log_every: int
    test_each_eval: bool


def evaluations(cfg: Config, total_steps: int, val_images: int, test_images: int) -> int:
    """eval_every=null: how many evaluations (the last at the end) a run of `total_steps` makes: EVALUATIONS, fewer
    where they would cost more than EVAL_SHARE of the run (a 50-step run at batch 2 trains on 100 images and
    evaluates once, at the end, not 20 times over 15,000). Each reads the validation split; the test set is read
    once, at the end (where there is no validation split, at every evaluation)."""
    trained = FORWARDS_PER_TRAINING_IMAGE * cfg.batch_size * total_steps
    budget = EVAL_SHARE / (1 - EVAL_SHARE) * trained
    each, once = (val_images, test_images) if val_images else (test_images, 0)
    return max(1, min(EVALUATIONS, int((budget - once) / max(each, 1))))


def cadences(cfg: Config, total_steps: int, val_images: int, test_images: int) -> Cadence:
    """As configured, or chosen from the run's length and the evaluation's size so that any run, short or long,
    draws curves without spending its time evaluating (`evaluations`); the training loss and accuracy in between,
    on the device already, are logged to TensorBoard. A chosen cadence reads the test set only at the end (an
    evaluation is then cheaper, so there are more of them); a configured one (every claim's) at every evaluation.
    A ConfigError where evaluations would be more than MAX_EVAL_GAP steps apart."""
    chosen = cfg.eval_every is None
    eval_every = cfg.eval_every or max(1, -(-total_steps // evaluations(cfg, total_steps, val_images, test_images)))
    log_every = cfg.log_every or max(1, eval_every // TRAIN_POINTS_PER_EVAL)
    if min(eval_every, total_steps) > MAX_EVAL_GAP:
        raise ConfigError(
            f"{total_steps:,} steps with an evaluation every {eval_every:,} are not allowed: at most "
            f"{MAX_EVAL_GAP:,} steps between evaluations (each step's loss is kept until the next); "
            "set eval_every, or train fewer steps"
        )
    return Cadence(eval_every, log_every, test_each_eval=not (chosen and val_images))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field's type (int, float, bool, str, tuples, optionals); ints pass as floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} is not allowed; expected a list")
        args = typing.get_args(annotation)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}={value!r} is not allowed; expected a list of {len(args)} values")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=False)))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} is not allowed; expected true or false")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} is not allowed; expected an integer")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{where}={value!r} is not allowed; expected a finite number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}={value!r} is not allowed; expected a string")
    raise TypeError(f"unsupported config annotation {annotation!r}")  # a bug in this file, not user input


def _from_dict(cls: type, values: dict[str, Any], prefix: str = "", groups: Mapping[str, type] | None = None) -> Any:
    """`cls` from `values`, each checked against its field's type; `groups`: a config group's class where it is
    not the field's own (the chosen model's config for `model`)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"unknown config key {key!r}; allowed under {prefix or 'the top level'}: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}={value!r} is not allowed; expected a config group")
            group = (groups or {}).get(name, typing.cast(type, annotation))
            kwargs[name] = _from_dict(group, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, prefix + name)
    return cls(**kwargs)


TARGET_GROUPS = ("dataset", "model")  # groups whose `_target_` (Hydra's key for a factory) is the field `target`


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from a plain (resolved) dict, as Hydra composes it; raise ConfigError on bad input. Checks
    the values themselves (`model` read as its model's config class, MODEL_CONFIGS); what needs a registry (names,
    sizes, buildability) is `normlab.checks`."""
    values = dict(values)
    model = values.get("model")
    name = model.get("name", ModelConfig.name) if isinstance(model, dict) else None
    if name is not None and (not isinstance(name, str) or name not in MODEL_CONFIGS):
        raise ConfigError(f"model={name!r} is not allowed; choose from {list(MODEL_CONFIGS)}")
    for group in TARGET_GROUPS:
        if isinstance(values.get(group), dict) and "_target_" in values[group]:
            values[group] = {("target" if k == "_target_" else k): v for k, v in values[group].items()}
    cfg = _from_dict(Config, values, groups=None if name is None else {"model": MODEL_CONFIGS[name]})
    validate(cfg)
    return cfg


OPTIMIZERS = ("sgd", "adam", "rmsprop")
DEVICES = ("auto", "cpu", "cuda")


def require(ok: bool, message: str) -> None:
    """A ConfigError with `message` unless `ok`."""
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express (each value on its own, no registry)."""
    import torch

    require(cfg.batch_size >= 1, f"batch_size={cfg.batch_size} is not allowed; it must be >= 1")
    require(cfg.lr > 0, f"lr={cfg.lr} is not allowed; it must be > 0")
    require(
        math.isfinite(cfg.scaled_lr) and cfg.scaled_lr > 0,
        f"lr={cfg.lr} with batch_size={cfg.batch_size} and lr_batch_size={cfg.lr_batch_size} is not allowed: the "
        f"learning rate used, lr * batch_size / lr_batch_size = {cfg.scaled_lr:g}, must be finite and > 0",
    )
    require(
        not cfg.amp or (cfg.device != "cpu" and torch.cuda.is_available()),
        "amp=true is not allowed here: bfloat16 autocast runs on CUDA only and this run is on the CPU; drop amp",
    )
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    require(
        cfg.batch_size % world == 0,
        f"batch_size={cfg.batch_size} is not allowed with {world} processes: the global batch must divide evenly "
        f"(use a multiple of {world})",
    )
    require(
        not (cfg.norm.sync and cfg.norm.name == "batch_noisy"),
        "norm.sync=true is not allowed with norm=batch_noisy: its step noise has no synced form; use norm=batch",
    )
    require(
        not cfg.norm.sync or world > 1,
        "norm.sync=true is not allowed in one process: it syncs BN statistics across the processes of torchrun "
        "(torchrun --nproc_per_node=N run.py ...); drop it, or launch with torchrun",
    )
    require(
        cfg.lr_batch_size is None or cfg.lr_batch_size >= 1,
        f"lr_batch_size={cfg.lr_batch_size} is not allowed; it must be >= 1 or null (null = lr as given)",
    )
    require(cfg.epochs >= 1, f"epochs={cfg.epochs} is not allowed; it must be >= 1")
    require(
        cfg.max_steps is None or cfg.max_steps >= 1,
        f"max_steps={cfg.max_steps} is not allowed; it must be >= 1 or null (null = `epochs` full passes)",
    )
    require(0 <= cfg.seed < 2**32, f"seed={cfg.seed} is not allowed; it must be in [0, 2**32)")
    require(
        cfg.grad_clip is None or cfg.grad_clip > 0, f"grad_clip={cfg.grad_clip} is not allowed; it must be > 0 or null"
    )
    for key in ("eval_every", "log_every"):
        n = getattr(cfg, key)
        require(
            n is None or n >= 1,
            f"{key}={n} is not allowed; it must be >= 1 or null (null: chosen from the run's length)",
        )
    require(cfg.eval_train >= 0, f"eval_train={cfg.eval_train} is not allowed; it must be >= 0 (0: none)")
    require(cfg.checkpoint_every >= 0, f"checkpoint_every={cfg.checkpoint_every} is not allowed; it must be >= 0")
    require(cfg.device in DEVICES, f"device={cfg.device!r} is not allowed; choose from {DEVICES}")
    require(
        cfg.device != "cuda" or torch.cuda.is_available(),
        "device=cuda is not allowed here: no CUDA device is available; use device=auto or cpu",
    )
    for key in ("train_subset", "test_subset"):
        n = getattr(cfg.data, key)
        require(n is None or n >= 1, f"data.{key}={n} is not allowed; it must be >= 1 or null")
    require(cfg.data.val_size >= 0, f"data.val_size={cfg.data.val_size} is not allowed; it must be >= 0")

    cfg.model.validate()

    n = cfg.norm
    require(
        0 < n.eps <= 1,
        f"norm.eps={n.eps} is not allowed; it must be in (0, 1] (a small constant beside the "
        "variance: 1e-5 in the papers)",
    )
    require(0 < n.momentum <= 1, f"norm.momentum={n.momentum} is not allowed; it must be in (0, 1]")
    require(
        n.num_groups is None or n.num_groups >= 2,
        f"norm.num_groups={n.num_groups} is not allowed; it must be >= 2 or null (1 group is norm=layer)",
    )
    require(n.group_size >= 2, f"norm.group_size={n.group_size} is not allowed; it must be >= 2 (1 is norm=instance)")
    require(n.gate_lr_mult >= 0, f"norm.gate_lr_mult={n.gate_lr_mult} is not allowed; it must be >= 0")
    require(
        n.bn_stats in ("moving", "batch_average"),
        f"norm.bn_stats={n.bn_stats!r} is not allowed; choose from moving, batch_average",
    )
    require(
        n.variant in ("paper", "official"),
        f"norm.variant={n.variant!r} is not allowed; choose from paper, official",
    )
    require(n.init in ("default", "data"), f"norm.init={n.init!r} is not allowed; choose from default, data")

    o = cfg.optimizer
    require(o.name in OPTIMIZERS, f"optimizer={o.name!r} is not allowed; choose from {', '.join(OPTIMIZERS)}")
    require(o.weight_decay >= 0, f"optimizer.weight_decay={o.weight_decay} is not allowed; it must be >= 0")
    require(0 <= o.momentum < 1, f"optimizer.momentum={o.momentum} is not allowed; it must be in [0, 1)")
    require(
        all(0 <= b < 1 for b in o.betas),
        f"optimizer.betas={list(o.betas)} is not allowed; each must be in [0, 1)",
    )
    require(
        not (o.name == "sgd" and o.nesterov and o.momentum == 0),
        "optimizer.nesterov=true is not allowed with optimizer.momentum=0 (Nesterov needs momentum); "
        "set a momentum > 0 or nesterov=false",
    )
    s = cfg.scheduler
    require(
        s.name in ("constant", "step", "cosine"),
        f"scheduler={s.name!r} is not allowed; choose from constant, step, cosine",
    )
    require(s.warmup_steps >= 0, f"scheduler.warmup_steps={s.warmup_steps} is not allowed; it must be >= 0")
    require(s.gamma > 0, f"scheduler.gamma={s.gamma} is not allowed; it must be > 0")
    require(
        0 <= s.final_fraction <= 1,
        f"scheduler.final_fraction={s.final_fraction} is not allowed; it must be in [0, 1]",
    )
    require(
        all(0 < f < 1 for f in s.milestones),
        f"scheduler.milestones={list(s.milestones)} is not allowed; each must be a fraction of training in (0, 1)",
    )
