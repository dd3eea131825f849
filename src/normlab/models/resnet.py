"""The CIFAR ResNets of He et al. 2016 (Sec. 4.2): a 3x3 conv of 16 channels, then three stages of n basic
blocks (two 3x3 convs each) at 16, 32 and 64 channels (the 2nd and 3rd starting with stride 2), global average
pooling and a linear classifier: 6n + 2 layers (ResNet-20, 32, 44, 56, 110). The shortcuts are identities, with
stride-2 subsampling and zero-padded channels where the shape changes (the paper's option A, no parameters). A
norm follows every convolution, as BN does in the paper; the BIN paper trains ResNet-110 so."""

import torch.nn.functional as F
from torch import nn

from normlab.config import ConfigError
from normlab.models.blocks import ACTIVATIONS, conv_norm_act
from normlab.models.registry import layer_bias, norm_layer, register_model


class BasicBlock(nn.Module):
    """x -> conv-norm-act -> conv-norm, plus the shortcut, then act."""

    def __init__(self, c_in, c_out, stride, norm, activation, bias):
        super().__init__()
        self.first = conv_norm_act(c_in, c_out, norm, activation, bias, stride=stride)
        second = conv_norm_act(c_out, c_out, norm, activation, bias)
        self.second = nn.Sequential(*list(second)[:2])  # conv, norm: the activation comes after the sum
        self.act = ACTIVATIONS[activation]()
        self.stride, self.pad = stride, c_out - c_in

    def shortcut(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def forward(self, x):
        return self.act(self.second(self.first(x)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_shape, num_classes, depth, activation, norm, bias):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"model.depth={depth} is not allowed; a CIFAR ResNet has 6n+2 layers: 20, 32, 44, 56, "
                              "110, ...")  # fmt: skip
        n = (depth - 2) // 6
        layers, c = [conv_norm_act(in_shape[0], 16, norm, activation, bias)], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                layers.append(BasicBlock(c, width, 2 if stage and not i else 1, norm, activation, bias))
                c = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("resnet", features="2d", options=("depth", "activation"))
def build(cfg, norm, in_shape, num_classes, seed):
    return ResNet(in_shape, num_classes, cfg.depth, cfg.activation, norm_layer(norm), layer_bias(norm))
