"""`swap_norms`: put normlab's norms into any model, replacing the normalization layers it was built with."""

import warnings

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from normlab.norms.registry import NORMS, build_norm
from normlab.norms.weight import WEIGHT_NORMED, apply_weight_norm


def slot(layer: nn.Module) -> tuple[int, str] | None:
    """(num_features, kind) of a normalization layer, or None for any other module. Raises ValueError for a
    norm over something else than channels (a LayerNorm over several dims, BatchNorm3d, InstanceNorm1d)."""
    if isinstance(layer, nn.LayerNorm):
        if len(layer.normalized_shape) != 1:
            raise ValueError(f"{layer} normalizes over {tuple(layer.normalized_shape)}, not one channel dim")
        return layer.normalized_shape[0], "1d"
    if isinstance(layer, nn.GroupNorm):  # torch's, and normlab's group and layer
        return layer.num_channels, getattr(layer, "kind", "2d")
    if isinstance(layer, (nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm3d)):
        raise ValueError(f"{layer} is not over (N, C) features or (N, C, H, W) maps")
    if isinstance(layer, nn.BatchNorm1d):
        return layer.num_features, "1d"
    if isinstance(layer, (_BatchNorm, nn.InstanceNorm2d)):  # BatchNorm2d, SyncBatchNorm, normlab's BN-based ones
        return layer.num_features, getattr(layer, "kind", "2d")
    registered = tuple(s.make for s in NORMS.values() if isinstance(s.make, type) and s.make is not nn.Identity)
    if isinstance(layer, registered):  # normlab's own norms that subclass none of torch's (and norms you register)
        return layer.num_features, getattr(layer, "kind", "2d")
    return None


def _placement(layer: nn.Module) -> dict:
    tensor = next(iter(layer.parameters()), None)
    if tensor is None:
        tensor = next(iter(layer.buffers()), None)
    return {} if tensor is None else {"device": tensor.device, "dtype": tensor.dtype}


def swap_norms(module: nn.Module, name: str, **options) -> nn.Module:
    """Replace every normalization layer of `module` (torch's BatchNorm1d/2d, SyncBatchNorm, GroupNorm, LayerNorm
    over channels, InstanceNorm2d, and normlab's own) by a fresh `build_norm(name, C, kind, **options)` on the
    same device and dtype; a layer used in several places is replaced by one new layer used in the same places.
    `weight` and `weight_meanbn` also put weight norm on the conv/linear layers, as `build_model` does. Warns
    where the model has no normalization layer. In place; returns the module (the replacement where `module`
    itself is a norm)."""
    eps = options.get("eps")
    if eps is not None and not 0 < eps <= 1:
        raise ValueError(f"eps={eps} is not allowed; it must be in (0, 1]")
    swapped: dict[int, nn.Module] = {}  # id(old layer) -> its replacement, so that a shared layer stays shared

    def replace(layer: nn.Module, where: str) -> nn.Module:
        if id(layer) in swapped:
            return swapped[id(layer)]
        found = slot(layer)
        if found is None:
            for child_name, child in list(layer._modules.items()):  # every attribute, a shared child in each
                if child is not None:
                    setattr(layer, child_name, replace(child, f"{where}.{child_name}" if where else child_name))
            return layer
        num_features, kind = found
        try:
            new = build_norm(name, num_features, kind, **options)
        except ValueError as e:
            raise ValueError(f"cannot put norm {name!r} in {where or 'the model'} ({layer}): {e}") from None
        swapped[id(layer)] = new.to(**_placement(layer))
        return swapped[id(layer)]

    module = replace(module, "")
    if not swapped and not NORMS[name].empty:  # (none and weight put nothing in a norm's place anyway)
        warnings.warn(f"swap_norms: the model has no normalization layer, so norm {name!r} went nowhere", stacklevel=2)
    if NORMS[name].weight_norm:
        layers = [m for m in module.modules() if isinstance(m, WEIGHT_NORMED)]
        if any(parametrize.is_parametrized(m, "weight") for m in layers):
            raise ValueError(f"norm {name!r}: the model's layers already carry a weight parametrization")
        apply_weight_norm(module)
    return module
