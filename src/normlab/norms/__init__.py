"""The norm zoo: one file per family, each registering its layers by name (`norms.registry`); `build_norm(name,
num_features, kind)` builds one and `swap_norms` puts them into any model.

`kind` is "1d" for (N, C) features and "2d" for (N, C, H, W) activations. Weight Norm is a
reparameterization of the conv/linear layers (`apply_weight_norm`), so `weight` puts identity in the norm
slot and `weight_meanbn` puts mean-only BN there; `NormSpec.weight_norm` tells the model builder to apply it.

A new norm is one file that decorates its layer with `@register_norm("name", ...)` plus one import line here.
What a layer needs beyond forward it declares itself, as timm's models declare `no_weight_decay()`: `internals()`
(values worth watching), `histograms()` (tensors worth drawing), `lr_groups()` (parameters at their own lr
multiple, without weight decay), `after_step_()` (a projection after each optimizer step), `sync` (statistics
over every process). A norm that works inside a recurrent cell declares that form (`register_sequence_form`).
The functions below read those declarations; nothing looks a layer up by class or name.
"""

import torch
from torch import nn

# the registry first, then the files that register into it, in the order tables list them
# isort: off
from normlab.norms.registry import NORMS, NormSpec, build_norm, register_norm  # registers none
from normlab.norms.batch import batch_norm  # batch
from normlab.norms.weight import MeanOnlyBatchNorm, apply_weight_norm, init_weight_norm_  # weight, weight_meanbn
from normlab.norms.group import GroupNorm, LayerNorm, groups_per_layer  # layer, group
from normlab.norms.instance import InstanceNorm  # instance
from normlab.norms.batch_instance import BatchInstanceNorm  # batch_instance
from normlab.norms.switchable import SwitchableNorm  # switchable
from normlab.norms.population import recompute_batch_average_
from normlab.norms.swap import swap_norms
# isort: on

__all__ = [
    "NORMS",
    "BatchInstanceNorm",
    "GroupNorm",
    "groups_per_layer",
    "InstanceNorm",
    "LayerNorm",
    "MeanOnlyBatchNorm",
    "NormSpec",
    "SwitchableNorm",
    "apply_weight_norm",
    "batch_norm",
    "build_norm",
    "init_weight_norm_",
    "constrained_layers",
    "norm_histograms",
    "norm_internals",
    "norm_lr_groups",
    "norm_options",
    "recompute_batch_average_",
    "register_norm",
    "swap_norms",
    "synced_layers",
]


def norm_options(cfg) -> dict:
    """The options of a NormConfig that its layer takes, e.g. {'eps': 1e-5, 'num_groups': None, 'group_size': 4}
    for group."""
    return {key: getattr(cfg, key) for key in NORMS[cfg.name].options}


def norm_internals(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per-layer learned normalization parameters worth watching: BIN gates, SN importances, GN groups."""
    return {name: m.internals() for name, m in model.named_modules() if hasattr(m, "internals")}


def norm_histograms(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<layer>/<name>` -> a tensor each layer declares worth a histogram (BIN's gates)."""
    return {
        f"{name}/{key}": t
        for name, m in model.named_modules()
        if hasattr(m, "histograms")
        for key, t in m.histograms().items()
    }


def norm_lr_groups(model: nn.Module) -> dict[int, float]:
    """id(parameter) -> its lr multiple, for the parameters layers declare to train at their own lr without weight
    decay (BIN's gates: `gate_lr_mult`)."""
    return {id(p): mult for m in model.modules() if hasattr(m, "lr_groups") for p, mult in m.lr_groups()}


def synced_layers(model: nn.Module) -> list[nn.Module]:
    """Layers that can take their batch statistics over every process (`sync`; norm.sync=true under torchrun)."""
    return [m for m in model.modules() if hasattr(m, "sync")]


def constrained_layers(model: nn.Module) -> list[nn.Module]:
    """Layers with a projection the papers apply after each optimizer step (`after_step_`; BIN: gates clipped to
    [0, 1])."""
    return [m for m in model.modules() if hasattr(m, "after_step_")]
