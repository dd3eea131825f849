"""The WN paper's CIFAR-10 net (Salimans & Kingma 2016, Sec. 5.1; the authors' lasagne/train.py, a variant of
ConvPool-CNN-C): Gaussian noise (std 0.15) on the input in training; 3 conv3x3 of `width` channels, 2x2 max
pool, dropout 0.5; 3 conv3x3 of 2·width, max pool, dropout 0.5; an unpadded conv3x3 and two 1x1 (NIN) convs of
2·width; global average pool; a linear classifier; leaky ReLU (0.1) by default, a norm after every convolution.
The paper's width is 96 (1.4 M parameters); `model.width` scales it down for a CPU."""

from dataclasses import dataclass

import torch
from torch import nn

from normlab.models.blocks import ConvNetConfig, conv_norm_act
from normlab.models.registry import layer_bias, norm_layer, register_model

INPUT_NOISE = 0.15  # std of the Gaussian noise added to the (whitened) images in training
DROPOUT = 0.5


class GaussianNoise(nn.Module):
    """x + N(0, std²) in training, x unchanged in evaluation."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x):
        return x + self.std * torch.randn_like(x) if self.training else x


class ConvPool(nn.Module):
    def __init__(self, in_shape, num_classes, width, activation, norm, bias):
        super().__init__()
        c, w = in_shape[0], width

        def block(c_in, c_out, kernel_size=3, padding=None):
            return conv_norm_act(c_in, c_out, norm, activation, bias, kernel_size, padding=padding)

        self.features = nn.Sequential(
            GaussianNoise(INPUT_NOISE),
            *(block(c_in, w) for c_in in (c, w, w)),
            nn.MaxPool2d(2),
            nn.Dropout(DROPOUT),
            *(block(c_in, 2 * w) for c_in in (w, 2 * w, 2 * w)),
            nn.MaxPool2d(2),
            nn.Dropout(DROPOUT),
            block(2 * w, 2 * w, padding=0),
            block(2 * w, 2 * w, kernel_size=1),
            block(2 * w, 2 * w, kernel_size=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class ConvPoolConfig(ConvNetConfig):
    """model=convpool's keys: the paper's width and nonlinearity (leaky ReLU, slope 0.1)."""

    name: str = "convpool"
    width: int = 96
    activation: str = "leaky_relu"


@register_model("convpool", ConvPoolConfig, features="2d")
def build(cfg: ConvPoolConfig, norm, in_shape, num_classes, seed):
    return ConvPool(in_shape, num_classes, cfg.width, cfg.activation, norm_layer(norm), layer_bias(norm))
