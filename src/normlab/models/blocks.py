"""Pieces the architectures share: activations by name, the conv -> norm -> activation block and the conv nets'
model.* keys."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from normlab.config import ModelConfig
from normlab.models.registry import check_at_least, check_choice

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": partial(nn.LeakyReLU, 0.1),  # the WN paper's nets (slope 0.1)
}


@dataclass(frozen=True)
class ConvNetConfig(ModelConfig):
    """The model.* keys of a conv net: its first stage's channels and its nonlinearity."""

    width: int = 32
    activation: str = "relu"

    def validate(self) -> None:
        check_at_least("width", self.width, 1)
        check_choice("activation", self.activation, ACTIVATIONS)


def conv_norm_act(c_in, c_out, norm, activation, bias, kernel_size=3, stride=1, padding=None):
    """A convolution ('same'-padded unless `padding` says), its norm, its nonlinearity. The convolution gets He
    init (fan_out, as torchvision's VGG and ResNet): with torch's default init a deep conv net without a norm
    hardly trains."""
    conv = nn.Conv2d(
        c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2 if padding is None else padding, bias=bias
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, norm(c_out, kind="2d"), ACTIVATIONS[activation]())
