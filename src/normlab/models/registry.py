"""The model registry: a name maps to a builder and the kind of features its norm slots see. A model registers
itself in its own file with `@register_model(...)`; `model=<name>`, the config checks, the model x norm matrix
and the models table read this table."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from normlab.norms import NORMS, build_norm, norm_options


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]  # build(cfg: ModelConfig, norm: NormConfig, in_shape, num_classes, seed)
    features: str  # what its norms see: "1d" (N, C), "2d" (N, C, H, W), "seq" (recurrent terms), "any" (custom)
    own_norms: bool = True  # it builds its norm slots from the NormConfig; False: normlab swaps them in (custom)
    options: tuple[str, ...] = ()  # the model.* keys it reads (conf/model/<name>.yaml lists the same, a test says)


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, features: str, own_norms: bool = True, options: tuple[str, ...] = ()):
    """Decorator for a builder `build(cfg: ModelConfig, norm: NormConfig, in_shape, num_classes, seed)` that
    returns the module: `model=<name>` builds it. `options`: the model.* keys it reads (any other is refused)."""

    def register(build):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(build, features, own_norms, tuple(options))
        return build

    return register


def norm_layer(norm) -> Callable[..., nn.Module]:
    """The NormConfig as a layer factory, `norm_layer(norm)(num_features, kind=...)`, for a model's norm slots."""
    return partial(build_norm, norm.name, **norm_options(norm))


def layer_bias(norm) -> bool:
    """Whether the conv/linear layers before a norm slot need their own bias (not where the norm ends in a shift)."""
    return NORMS[norm.name].empty
