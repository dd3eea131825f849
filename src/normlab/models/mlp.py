"""The BN paper's MNIST network (Sec. 4.1): fully connected hidden layers, y = g(norm(W u)), then a linear
classifier. The norm sits before each nonlinearity, as in the paper; `norm_logits` also normalizes the
classifier's outputs (the LN paper's BN baseline, Sec. 6.6: BN "applied to all layers")."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from normlab.config import ModelConfig, require
from normlab.models.blocks import ACTIVATIONS
from normlab.models.registry import check_choice, layer_bias, norm_layer, register_model

PERCENTILES = (0.15, 0.50, 0.85)
PROBE_UNITS = 3


class MLP(nn.Module):
    def __init__(self, in_shape, num_classes, hidden, activation, norm, bias, norm_logits=False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
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


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """model=mlp's keys (conf/model/mlp.yaml: the BN paper's 3 x 100 sigmoid units)."""

    name: str = "mlp"
    hidden: tuple[int, ...] = (100, 100, 100)
    activation: str = "sigmoid"
    init_std: float | None = None  # weights ~ N(0, init_std²), biases 0; None: torch's default init
    norm_logits: bool = False  # the norm on the logits too (the LN paper's BN baseline, "applied to all layers")

    def validate(self) -> None:
        require(
            len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            f"model.hidden={list(self.hidden)} is not allowed; it must be one or more widths >= 1",
        )
        check_choice("activation", self.activation, ACTIVATIONS)
        require(
            self.init_std is None or self.init_std > 0,
            f"model.init_std={self.init_std} is not allowed; it must be > 0 or null",
        )


@register_model("mlp", MLPConfig, features="1d")
def build(cfg: MLPConfig, norm, in_shape, num_classes, seed):
    model = MLP(in_shape, num_classes, cfg.hidden, cfg.activation, norm_layer(norm), layer_bias(norm), cfg.norm_logits)
    if cfg.init_std is not None:
        gaussian_init_(model, cfg.init_std)
    return model
