"""A small VGG-style CNN: three stages of conv-norm-act blocks (width, 2x, 4x channels) with max pooling,
global average pooling and a linear classifier; about 0.24 M parameters at the default width 32."""

from dataclasses import dataclass

from torch import nn

from normlab.models.blocks import ConvNetConfig, conv_norm_act
from normlab.models.registry import layer_bias, norm_layer, register_model


class CNN(nn.Module):
    def __init__(self, in_shape, num_classes, width, activation, norm, bias):
        super().__init__()
        c, w = in_shape[0], width

        def block(c_in, c_out):
            return conv_norm_act(c_in, c_out, norm, activation, bias)

        self.features = nn.Sequential(
            block(c, w),
            nn.MaxPool2d(2),
            block(w, 2 * w),
            nn.MaxPool2d(2),
            block(2 * w, 4 * w),
            block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class CNNConfig(ConvNetConfig):
    """model=cnn's keys: a conv net's (width 32: about 0.24 M parameters)."""

    name: str = "cnn"


@register_model("cnn", CNNConfig, features="2d")
def build(cfg: CNNConfig, norm, in_shape, num_classes, seed):
    return CNN(in_shape, num_classes, cfg.width, cfg.activation, norm_layer(norm), layer_bias(norm))
