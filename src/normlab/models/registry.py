"""The model registry: a name maps to a builder, its config (the model.* keys it reads, their defaults and
checks) and the kind of features its norm slots see. A model registers itself in its own file with
`@register_model(...)`; `model=<name>`, the config checks, the model x norm matrix and the models table read this
table."""

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial

from torch import nn

from normlab.config import MODEL_CONFIGS, ModelConfig, require
from normlab.norms import NORMS, build_norm, norm_options


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]  # build(cfg: <its config>, norm: NormConfig, in_shape, num_classes, seed)
    config: type[ModelConfig]  # its model.* keys, their types, defaults (conf/model/<name>.yaml's) and checks
    features: str  # what its norms see: "1d" (N, C), "2d" (N, C, H, W), "seq" (recurrent terms), "any" (custom)
    own_norms: bool = True  # it builds its norm slots from the NormConfig; False: normlab swaps them in (custom)

    @property
    def options(self) -> tuple[str, ...]:
        """The model.* keys it reads (any other is refused; conf/model/<name>.yaml lists the same, a test says)."""
        return tuple(f.name for f in fields(self.config) if f.name != "name")


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config: type[ModelConfig], features: str, own_norms: bool = True):
    """Decorator for a builder `build(cfg, norm: NormConfig, in_shape, num_classes, seed)` that returns the module:
    `model=<name>` builds it, `cfg` an instance of `config` (a ModelConfig subclass: the model.* keys it reads,
    with defaults and a `validate`)."""

    def register(build):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        if not issubclass(config, ModelConfig) or config.name != name:
            raise ValueError(f"model {name!r}: its config must subclass ModelConfig with name = {name!r}")
        MODELS[name] = ModelSpec(build, config, features, own_norms)
        MODEL_CONFIGS[name] = config  # what config_from_dict reads model.* as
        return build

    return register


def check_choice(key: str, value: str, allowed) -> None:
    """A model.* key that takes one of `allowed`."""
    require(value in allowed, f"model.{key}={value!r} is not allowed; choose from {', '.join(allowed)}")


def check_at_least(key: str, value, low) -> None:
    """A model.* number that must be >= `low`."""
    require(value >= low, f"model.{key}={value} is not allowed; it must be >= {low}")


def norm_layer(norm) -> Callable[..., nn.Module]:
    """The NormConfig as a layer factory, `norm_layer(norm)(num_features, kind=...)`, for a model's norm slots."""
    return partial(build_norm, norm.name, **norm_options(norm))


def layer_bias(norm) -> bool:
    """Whether the conv/linear layers before a norm slot need their own bias (not where the norm ends in a shift)."""
    return NORMS[norm.name].empty
