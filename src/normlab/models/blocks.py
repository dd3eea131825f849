"""Pieces the architectures share: activations by name and the conv -> norm -> activation block."""

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def conv_norm_act(c_in, c_out, norm, activation, bias, kernel_size=3, stride=1):
    """A 'same'-padded convolution, its norm, its nonlinearity."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias),
        norm(c_out, kind="2d"),
        ACTIVATIONS[activation](),
    )
