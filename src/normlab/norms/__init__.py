"""The norm zoo: one factory, `build_norm(name, num_features, kind)`, maps a name to a layer.

`kind` is "1d" for (N, C) features and "2d" for (N, C, H, W) activations. Weight Norm is a
reparameterization of the conv/linear layers (`apply_weight_norm`), so `weight` puts identity in the norm
slot and `weight_meanbn` puts mean-only BN there; `NormSpec.weight_norm` tells the model builder to apply it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from normlab.norms.batch import batch_norm
from normlab.norms.batch_instance import BatchInstanceNorm
from normlab.norms.group import GroupNorm, LayerNorm
from normlab.norms.instance import InstanceNorm
from normlab.norms.switchable import SwitchableNorm, recompute_batch_average_
from normlab.norms.weight import MeanOnlyBatchNorm, apply_weight_norm, init_weight_norm_

__all__ = [
    "NORMS",
    "BATCH_STAT_NORMS",
    "BatchInstanceNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "MeanOnlyBatchNorm",
    "SwitchableNorm",
    "apply_weight_norm",
    "build_norm",
    "init_weight_norm_",
    "norm_internals",
    "norm_options",
    "recompute_batch_average_",
]


def _identity(num_features: int, kind: str) -> nn.Module:
    return nn.Identity()


@dataclass(frozen=True)
class NormSpec:
    make: Callable[..., nn.Module]  # make(num_features, kind, **options)
    options: tuple[str, ...]  # the NormConfig fields this layer takes
    kinds: tuple[str, ...]  # feature kinds it is defined on
    batch_stats: bool = False  # normalizes with batch statistics in training: needs >= 2 samples
    weight_norm: bool = False  # the model's conv/linear layers get weight norm


BOTH = ("1d", "2d")
NORMS: dict[str, NormSpec] = {
    "none": NormSpec(_identity, (), BOTH),
    "batch": NormSpec(batch_norm, ("eps", "momentum"), BOTH, batch_stats=True),
    "weight": NormSpec(_identity, (), BOTH, weight_norm=True),
    "weight_meanbn": NormSpec(MeanOnlyBatchNorm, ("momentum",), BOTH, batch_stats=True, weight_norm=True),
    "layer": NormSpec(lambda c, kind, **o: LayerNorm(c, **o), ("eps",), BOTH),
    "instance": NormSpec(lambda c, kind, **o: InstanceNorm(c, **o), ("eps",), ("2d",)),
    "group": NormSpec(lambda c, kind, **o: GroupNorm(c, **o), ("eps", "num_groups", "group_size"), BOTH),
    "batch_instance": NormSpec(
        lambda c, kind, **o: BatchInstanceNorm(c, **o),
        ("eps", "momentum", "gate_lr_mult"),
        ("2d",),
        batch_stats=True,
    ),
    "switchable": NormSpec(SwitchableNorm, ("eps", "momentum", "bn_stats", "variant"), BOTH, batch_stats=True),
}
BATCH_STAT_NORMS = tuple(name for name, spec in NORMS.items() if spec.batch_stats)


def build_norm(name: str, num_features: int, kind: str = "2d", **options) -> nn.Module:
    """The one door to every activation norm. Raises ValueError for an unknown name, kind or option."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose from {sorted(NORMS)}")
    spec = NORMS[name]
    if kind not in spec.kinds:
        raise ValueError(f"norm {name!r} is not defined on {kind} features; it takes {list(spec.kinds)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"norm {name!r} takes no option {unknown[0]!r}; its options are {list(spec.options)}")
    return spec.make(num_features, kind=kind, **options)


def norm_options(cfg) -> dict:
    """The options of a NormConfig that its layer takes, e.g. {'eps': 1e-5, 'num_groups': None, 'group_size': 4}
    for group."""
    return {key: getattr(cfg, key) for key in NORMS[cfg.name].options}


def norm_internals(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per-layer learned normalization parameters worth watching: BIN gates, SN importances, GN groups."""
    return {name: m.internals() for name, m in model.named_modules() if hasattr(m, "internals")}
