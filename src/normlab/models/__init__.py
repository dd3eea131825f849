"""Architectures, one file each registering its builder (`models.registry`), `build_model`, and the one place
that says which norm fits which model (`compatible_norms`)."""

import functools
import warnings
from collections.abc import Callable

import torch
from torch import nn

from normlab.config import Config, ConfigError, ModelConfig, NormConfig

# the registry first, then the files that register into it, in the order tables list them
# isort: off
from normlab.models.registry import MODELS, ModelSpec, register_model
from normlab.models import mlp, cnn, inception_lite, resnet, convpool, lstm, custom  # noqa: F401 - they register

# isort: on
from normlab.models.custom import call_factory, check_forward
from normlab.norms import NORMS, apply_weight_norm, norm_options, swap_norms
from normlab.norms.registry import sequence_norms
from normlab.norms.swap import slot

__all__ = ["MODELS", "ModelSpec", "build_model", "check_compatible", "compatible_norms", "register_model"]


def compatible_norms(model: str) -> list[str]:
    kind = MODELS[model].features
    if kind == "seq":
        return sequence_norms()
    return [name for name, spec in NORMS.items() if kind == "any" or kind in spec.kinds]


def check_compatible(model: str, norm: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is not allowed; choose from {list(MODELS)}")
    allowed = compatible_norms(model)
    if norm not in allowed:
        raise ConfigError(f"norm={norm} is not defined for model={model}; norms allowed for {model}: {allowed}")


def build_model(
    model: ModelConfig,
    norm: NormConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
    seed: int = 0,
    module: nn.Module | Callable[..., nn.Module] | None = None,
) -> nn.Module:
    """Build `model` with `norm` in every norm slot (and weight norm on its layers where the norm asks). `module`
    (model=custom only): your model, or a factory called with num_classes=, instead of model._target_."""
    check_compatible(model.name, norm.name)
    spec = MODELS[model.name]
    if not isinstance(model, spec.config):
        raise TypeError(f"model={model.name} is built from a {spec.config.__name__}, not a {type(model).__name__}")
    if module is not None and spec.own_norms:
        raise ConfigError(f"a model object is only taken with model=custom, not model={model.name}")
    if module is None:
        net = spec.build(model, norm, in_shape, num_classes, seed)
    else:
        net = module if isinstance(module, nn.Module) else call_factory(module, in_shape, num_classes)
    if not spec.own_norms:
        check_has_norm_slots(net, norm.name)
        try:
            return swap_norms(net, norm.name, **norm_options(norm))
        except ValueError as e:
            raise ConfigError(f"norm={norm.name} does not fit this model: {e}") from None
    if NORMS[norm.name].weight_norm:
        apply_weight_norm(net)
    return net


def check_has_norm_slots(net: nn.Module, norm: str) -> None:
    """A norm other than none must find a layer to replace in your model: else norm=<name> would train the very
    run norm=none does, under another name (weight norms put themselves on the conv and linear layers)."""
    if norm == "none" or NORMS[norm].weight_norm:
        return
    for layer in net.modules():
        try:
            if slot(layer) is not None:
                return
        except ValueError:
            return  # a norm layer normlab cannot take: swap_norms names it
    raise ConfigError(
        f"norm={norm} is not allowed with this model ({type(net).__name__}): it has no normalization "
        "layer for normlab to replace, so the run would be norm=none's; add norm layers (e.g. "
        "nn.BatchNorm2d after each conv) where the norm belongs, or run norm=none"
    )


def compatibility_table() -> str:
    """The model x norm matrix as a markdown table (in docs/norms-and-models.md, written by scripts/models.py)."""
    header = "| model | " + " | ".join(NORMS) + " |"
    rule = "|---|" + "---|" * len(NORMS)
    rows = [f"| {m} | " + " | ".join("yes" if n in compatible_norms(m) else "—" for n in NORMS) + " |" for m in MODELS]
    return "\n".join([header, rule, *rows])


def check_buildable(
    model: ModelConfig, norm: NormConfig, in_shape: tuple[int, ...], num_classes: int, module=None
) -> None:
    """Build the model on the meta device (no memory, no compute), so that what only a layer can check (e.g. GN's
    groups in a layer of C channels) is refused for every job of a sweep before the first one starts. A model
    object (not a factory) cannot be built again: it is checked when the run swaps its norms."""
    if isinstance(module, nn.Module):
        return
    if module is None:  # the same model and norm in every job of a sweep over seeds or lrs: built once
        return _check_registered_build(model, norm, tuple(in_shape), num_classes)
    _build_on_meta(model, norm, in_shape, num_classes, module)


@functools.lru_cache(maxsize=256)
def _check_registered_build(model: ModelConfig, norm: NormConfig, in_shape: tuple[int, ...], num_classes: int):
    _build_on_meta(model, norm, in_shape, num_classes, None)


def _build_on_meta(model, norm, in_shape, num_classes, module) -> None:
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch's notes on meta tensors: the error, if any, is the one line)
        net = build_model(model, norm, in_shape, num_classes, module=module)
        check_forward(net, in_shape, num_classes)  # does it run with this norm on this data (e.g. an LSTM's pooling)?


def check_config(cfg: Config, in_shape: tuple[int, ...], num_classes: int, module=None) -> None:
    """What needs the model and norm registries: the names, that the norm fits the model and the batch, that the
    model builds."""
    norm = cfg.norm.name
    if norm not in NORMS:
        raise ConfigError(f"norm={norm!r} is not allowed; choose from {sorted(NORMS)}")
    check_compatible(cfg.model.name, norm)
    if MODELS[cfg.model.name].features in ("2d", "seq") and len(in_shape) != 3:
        raise ConfigError(
            f"model={cfg.model.name} takes (C, H, W) images; dataset={cfg.dataset.name} gives samples "
            f"of shape {tuple(in_shape)}"
        )
    if cfg.channels_last and MODELS[cfg.model.name].features not in ("2d", "any"):
        raise ConfigError(
            f"channels_last=true is not allowed with model={cfg.model.name}: it has no conv layers "
            "for the NHWC layout to speed up; drop it (channels_last=auto chooses)"
        )
    if cfg.batch_size == 1 and NORMS[norm].batch_stats:
        raise ConfigError(
            f"batch_size=1 is not allowed with norm={norm}: its batch statistics need >= 2 samples "
            "per batch (use batch_size >= 2, or a per-sample norm such as group or layer)"
        )
    check_buildable(cfg.model, cfg.norm, in_shape, num_classes, module)
