"""Architectures and the one place that says which norm fits which model (`compatible_norms`)."""

from functools import partial

from torch import nn

from normlab.config import ConfigError, ModelConfig, NormConfig
from normlab.models.cnn import CNN
from normlab.models.mlp import MLP
from normlab.norms import NORMS, apply_weight_norm, build_norm, norm_options

# model name -> the kind of features its norms see ("1d": (N, C); "2d": (N, C, H, W))
FEATURE_KINDS = {"mlp": "1d", "cnn": "2d"}
MODELS = tuple(FEATURE_KINDS)


def compatible_norms(model: str) -> list[str]:
    kind = FEATURE_KINDS[model]
    return [name for name, spec in NORMS.items() if kind in spec.kinds]


def check_compatible(model: str, norm: str) -> None:
    if model not in FEATURE_KINDS:
        raise ConfigError(f"model={model!r} is not allowed; choose from {list(MODELS)}")
    allowed = compatible_norms(model)
    if norm not in allowed:
        raise ConfigError(f"norm={norm} is not defined for model={model}; norms allowed for {model}: {allowed}")


def build_model(model: ModelConfig, norm: NormConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build `model` with `norm` in every norm slot (and weight norm on its layers where the norm asks)."""
    check_compatible(model.name, norm.name)
    spec = NORMS[norm.name]
    make_norm = partial(build_norm, norm.name, **norm_options(norm))
    bias = norm.name in ("none", "weight")  # other norms end in their own shift
    if model.name == "mlp":
        net = MLP(in_shape, num_classes, model.hidden, model.activation, make_norm, bias)
    else:
        net = CNN(in_shape, num_classes, model.width, model.activation, make_norm, bias)
    if spec.weight_norm:
        apply_weight_norm(net)
    return net
