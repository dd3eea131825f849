"""Your own model: `model=custom model._target_=mypkg.make_net` (or `normlab.train(..., model=...)` in Python).
The factory is called as `make_net(num_classes=...)` (plus `in_shape=(C, H, W)` where it takes one) and may build
its norms as it likes: normlab then replaces every normalization layer in it by the configured `norm`
(`swap_norms`), so `norm=` sweeps work on it too."""

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from normlab.config import ConfigError, ModelConfig
from normlab.models.registry import register_model
from normlab.targets import import_target


def call_factory(factory, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """factory(num_classes=...), with in_shape= too where its signature takes one; a ConfigError where it fails
    or gives no nn.Module."""
    takes_shape = "in_shape" in inspect.signature(factory).parameters
    name = getattr(factory, "__qualname__", repr(factory))
    try:
        net = factory(num_classes=num_classes, **({"in_shape": tuple(in_shape)} if takes_shape else {}))
    except Exception as e:  # noqa: BLE001 - the user's factory failed: one line that says so
        raise ConfigError(f"the model factory {name} failed: {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"the model factory {name} returned a {type(net).__name__}, not an nn.Module")
    return net


def check_forward(net: nn.Module, in_shape: tuple[int, ...], num_classes: int) -> None:
    """A training-mode forward of a batch of 2 on the meta device (shapes only, no compute): a norm your model
    cannot take (e.g. IN on 1x1 maps, features of the wrong size), or outputs that are not one logit per class,
    are refused before any job starts."""
    try:
        out = net.train()(torch.empty(2, *in_shape, device="meta"))
    except NotImplementedError:
        return  # an op without a meta kernel: nothing can be said before the run
    except Exception as e:  # noqa: BLE001 - the model cannot run on this data with this norm
        raise ConfigError(
            f"the model fails on a batch of shape {(2, *in_shape)}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, num_classes):
        raise ConfigError(
            f"the model gives {shape} for a batch of 2, not (2, {num_classes}): one logit per class of "
            "the data; build its head with num_classes (the factory's argument)"
        )


@dataclass(frozen=True)
class CustomConfig(ModelConfig):
    """model=custom's one key: `_target_`, the dotted path of your factory make_net(num_classes=...)."""

    name: str = "custom"
    target: str | None = None


@register_model("custom", CustomConfig, features="any", own_norms=False)
def build(cfg: CustomConfig, norm, in_shape, num_classes, seed):
    return call_factory(import_target(cfg.target, "model._target_"), in_shape, num_classes)
