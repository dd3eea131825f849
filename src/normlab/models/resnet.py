"""The CIFAR ResNets of He et al. 2016 (Sec. 4.2): a 3x3 conv of 16 channels, then three stages of n basic
blocks (two 3x3 convs each) at 16, 32 and 64 channels (the 2nd and 3rd starting with stride 2), global average
pooling and a linear classifier: 6n + 2 layers (ResNet-20, 32, 44, 56, 110). The shortcuts are identities, with
stride-2 subsampling and zero-padded channels where the shape changes (the paper's option A, no parameters). A
norm follows every convolution, as BN does in the paper; the BIN paper trains ResNet-110 so. `width` scales the
16/32/64 channels (16: He et al.'s; k x 16: Zagoruyko & Komodakis' wide ResNets)."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from normlab.config import ConfigError
from normlab.models.blocks import ACTIVATIONS, ConvNetConfig, conv_norm_act
from normlab.models.registry import layer_bias, norm_layer, register_model


class BasicBlock(nn.Module):
    """x -> conv-norm-act -> conv-norm, plus the shortcut, then act."""

    def __init__(self, c_in, c_out, stride, norm, activation, bias, zero_init=False):
        super().__init__()
        self.first = conv_norm_act(c_in, c_out, norm, activation, bias, stride=stride)
        second = conv_norm_act(c_out, c_out, norm, activation, bias)
        self.second = nn.Sequential(*list(second)[:2])  # conv, norm: the activation comes after the sum
        if zero_init:  # the block starts as the identity (plus the shortcut's zero-padded channels)
            nn.init.zeros_(scale_of(self.second[1], c_out))
        self.act = ACTIVATIONS[activation]()
        self.stride, self.pad = stride, c_out - c_in

    def shortcut(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def forward(self, x):
        return self.act(self.second(self.first(x)) + self.shortcut(x))


def scale_of(layer: nn.Module, channels: int) -> nn.Parameter:
    """The norm layer's per-channel scale γ (its `weight` of shape (channels,)); a ConfigError for a norm without
    one (none, weight, weight_meanbn), which zero_init_residual cannot start at the identity."""
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, nn.Parameter) or tuple(weight.shape) != (channels,):
        raise ConfigError(
            f"model.zero_init_residual=true needs a norm with a per-channel scale γ; "
            f"{type(layer).__name__} has none (use a norm such as batch, group, layer, or "
            "zero_init_residual=false)"
        )
    return weight


class ResNet(nn.Module):
    def __init__(self, in_shape, num_classes, depth, width, activation, norm, bias, zero_init_residual=False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"model.depth={depth} is not allowed; a CIFAR ResNet has 6n+2 layers: 20, 32, 44, 56, 110, ..."
            )
        n = (depth - 2) // 6
        layers, c = [conv_norm_act(in_shape[0], width, norm, activation, bias)], width
        for stage, channels in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage and not i else 1
                layers.append(BasicBlock(c, channels, stride, norm, activation, bias, zero_init_residual))
                c = channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class ResNetConfig(ConvNetConfig):
    """model=resnet's keys: a conv net's, its depth (6n + 2) and γ = 0 in each block's last norm (Goyal et al. 2017;
    the GN paper)."""

    name: str = "resnet"
    depth: int = 20
    width: int = 16  # He et al.'s
    zero_init_residual: bool = False


@register_model("resnet", ResNetConfig, features="2d")
def build(cfg: ResNetConfig, norm, in_shape, num_classes, seed):
    return ResNet(
        in_shape,
        num_classes,
        cfg.depth,
        cfg.width,
        cfg.activation,
        norm_layer(norm),
        layer_bias(norm),
        cfg.zero_init_residual,
    )
