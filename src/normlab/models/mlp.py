"""The BN paper's MNIST network (Sec. 4.1): fully connected hidden layers, y = g(norm(W u)), then a linear
classifier. The norm sits before each nonlinearity, as in the paper; `norm_logits` also normalizes the
classifier's outputs (the LN paper's BN baseline, Sec. 6.6: BN "applied to all layers")."""

import math

import torch
from torch import nn

from normlab.models.blocks import ACTIVATIONS
from normlab.models.registry import layer_bias, norm_layer, register_model

PERCENTILES = (0.15, 0.50, 0.85)
PROBE_UNITS = 3


class MLP(nn.Module):
    def __init__(self, in_shape, num_classes, hidden, activation, norm, bias, norm_logits=False):
        super().__init__()
        layers, width = [nn.Flatten()], math.prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), norm(h, kind="1d"), ACTIVATIONS[activation]()]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes, bias=bias or not norm_logits)
        self.logits_norm = norm(num_classes, kind="1d") if norm_logits else nn.Identity()

    def forward(self, x):
        return self.logits_norm(self.classifier(self.features(x)))

    def last_hidden_input(self, x):
        """The inputs to the last hidden layer's nonlinearity (what the BN paper's Fig. 1(b, c) follows)."""
        return self.features[:-1](x)

    @torch.inference_mode()
    def probe(self, x) -> dict[str, list[float]]:
        """The BN paper's Fig. 1(b, c) at one evaluation: the 15/50/85th percentiles over `x` of the inputs to the
        first PROBE_UNITS nonlinearities of the last hidden layer (a model with a `probe` has it logged)."""
        self.eval()
        z = self.last_hidden_input(x)[:, :PROBE_UNITS].float()
        q = torch.quantile(z, torch.tensor(PERCENTILES, device=z.device), dim=0)
        return {f"p{round(p * 100)}": q[i].tolist() for i, p in enumerate(PERCENTILES)}


def gaussian_init_(model: nn.Module, std: float) -> None:
    """Every linear layer's weights ~ N(0, std²), biases 0: the BN paper's MNIST net starts from "small random
    Gaussian values" (Sec. 4.1; it gives no std)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@register_model("mlp", features="1d", options=("hidden", "activation", "init_std", "norm_logits"))
def build(cfg, norm, in_shape, num_classes, seed):
    model = MLP(in_shape, num_classes, cfg.hidden, cfg.activation, norm_layer(norm), layer_bias(norm), cfg.norm_logits)
    if cfg.init_std is not None:
        gaussian_init_(model, cfg.init_std)
    return model
