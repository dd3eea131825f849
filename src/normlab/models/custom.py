"""Your own model: `model=custom model._target_=mypkg.make_net` (or `normlab.train(..., model=...)` in Python).
The factory is called as `make_net(num_classes=...)` (plus `in_shape=(C, H, W)` where it takes one) and may build
its norms as it likes: normlab then replaces every normalization layer in it by the configured `norm`
(`swap_norms`), so `norm=` sweeps work on it too."""

import inspect

from torch import nn

from normlab.models.registry import register_model
from normlab.targets import import_target


def call_factory(factory, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """factory(num_classes=...), with in_shape= too where its signature takes one."""
    takes_shape = "in_shape" in inspect.signature(factory).parameters
    return factory(num_classes=num_classes, **({"in_shape": tuple(in_shape)} if takes_shape else {}))


@register_model("custom", features="any", own_norms=False)
def build(cfg, norm, in_shape, num_classes, seed):
    return call_factory(import_target(cfg.target, "model._target_"), in_shape, num_classes)
