"""Weight Norm and mean-only Batch Norm (Salimans & Kingma 2016).

WN reparameterizes each conv/linear weight as w = g * v / ||v|| (Eq. 2) with torch's
`parametrizations.weight_norm`; it lives on the layers, so the norm slot of a WN model is identity
(or `MeanOnlyBatchNorm` for the paper's WN + mean-only BN variant, Sec. 3).
"""

import torch
from torch import nn
from torch.nn.utils import parametrizations

from normlab.collectives import batch_mean
from normlab.norms.registry import register_norm

register_norm("weight", weight_norm=True, empty=True)(
    nn.Identity
)  # weight norm on the layers, nothing in the norm slot

WEIGHT_NORMED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def apply_weight_norm(model: nn.Module) -> nn.Module:
    """Reparameterize every conv/linear layer of `model` in place: w = g * v / ||v||, g per output unit;
    in an nn.LSTM, the input and recurrent matrices W_x and W_h (one g per gate unit)."""
    for module in list(model.modules()):
        if isinstance(module, WEIGHT_NORMED):
            parametrizations.weight_norm(module, name="weight", dim=0)
        elif isinstance(module, nn.LSTM):
            for name in [n for n, _ in module.named_parameters(recurse=False) if n.startswith("weight_")]:
                parametrizations.weight_norm(module, name=name, dim=0)
    return model


def weight_normed_layers(model: nn.Module) -> list[nn.Module]:
    """The conv/linear layers with weight norm (the ones data-dependent init applies to)."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_NORMED) and hasattr(m, "parametrizations")]


@torch.no_grad()
def init_weight_norm_(model: nn.Module, x: torch.Tensor, eps: float = 1e-6) -> None:
    """Data-dependent init (Sec. 2.2): layer by layer, set g and b so that pre-activations on the batch `x`
    have zero mean and unit variance per unit: g <- g / sigma, b <- (b - mu) / sigma.

    One forward pass: each layer's hook rescales its own output, so later layers see initialized inputs.
    """

    def hook(module, inputs, out):
        dims = [0, *range(2, out.dim())]
        mean, std = out.mean(dims), out.std(dims, unbiased=False) + eps
        g = module.parametrizations.weight.original0
        g.div_(std.view_as(g))
        if module.bias is not None:
            module.bias.sub_(mean).div_(std)
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return (out - mean.view(shape)) / std.view(shape)

    handles = [m.register_forward_hook(hook) for m in weight_normed_layers(model)]
    was_training = model.training
    try:
        model.train()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@register_norm("weight_meanbn", options=("momentum",), batch_stats=True, weight_norm=True)
class MeanOnlyBatchNorm(nn.Module):
    """y = x - mu_B + b: subtract the batch mean (running mean at eval), no division, learned bias (Sec. 3).

    Centred as the other norms are (norms/fused.py): x minus the mean rounded to x's dtype (detached, exact for x
    near it), then minus what that rounding missed, so that a large mean costs no precision."""

    def __init__(self, num_features: int, kind: str = "2d", momentum: float = 0.1):
        super().__init__()
        self.num_features, self.kind, self.momentum = num_features, kind, momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.sync = False  # the batch mean over every rank's batch (norm.sync=true under torchrun)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if not self.training:
            return (x - self.running_mean.view(shape)).add_(self.bias.view(shape))
        dims = [0, *range(2, x.dim())]
        shift = batch_mean(x.detach(), dims, self.sync)
        centred = x - shift.view(shape)
        residual = batch_mean(centred, dims, self.sync)  # the mean's part the shift missed
        with torch.no_grad():
            self.running_mean.lerp_(shift + residual.detach(), self.momentum)
        return centred - (residual - self.bias).view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"
