"""A scaled-down BN-Inception (Ioffe & Szegedy 2015, Sec. 4.2 / Szegedy et al. 2014): a stride-2 stem, then
Inception modules with four branches (1x1; 1x1->3x3; 1x1->3x3->3x3, the BN paper's 5x5 replacement;
3x3 avg-pool->1x1) concatenated, a norm after every convolution, global average pooling, linear."""

from dataclasses import dataclass

import torch
from torch import nn

from normlab.models.blocks import ConvNetConfig, conv_norm_act
from normlab.models.registry import layer_bias, norm_layer, register_model


class InceptionModule(nn.Module):
    def __init__(self, c_in, k, norm, activation, bias):
        super().__init__()

        def cna(ci, co, ks=3):
            return conv_norm_act(ci, co, norm, activation, bias, kernel_size=ks)

        self.branch1 = cna(c_in, k, 1)
        self.branch3 = nn.Sequential(cna(c_in, k // 2, 1), cna(k // 2, k))
        self.branch33 = nn.Sequential(cna(c_in, k // 2, 1), cna(k // 2, k), cna(k, k))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), cna(c_in, k, 1))
        self.out_channels = 4 * k

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch33(x), self.branch_pool(x)], 1)


class InceptionLite(nn.Module):
    """stem (stride 2) -> 2 modules of 4*width channels -> max pool -> 2 modules of 8*width -> GAP -> linear."""

    def __init__(self, in_shape, num_classes, width, activation, norm, bias):
        super().__init__()
        w = width
        layers = [conv_norm_act(in_shape[0], 2 * w, norm, activation, bias, stride=2)]
        c = 2 * w
        for k in (w, w, None, 2 * w, 2 * w):
            if k is None:
                layers.append(nn.MaxPool2d(2))
                continue
            module = InceptionModule(c, k, norm, activation, bias)
            layers.append(module)
            c = module.out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class InceptionLiteConfig(ConvNetConfig):
    """model=inception_lite's keys: a conv net's; its modules are 4 x width channels wide in the first stage."""

    name: str = "inception_lite"
    width: int = 16


@register_model("inception_lite", InceptionLiteConfig, features="2d")
def build(cfg: InceptionLiteConfig, norm, in_shape, num_classes, seed):
    return InceptionLite(in_shape, num_classes, cfg.width, cfg.activation, norm_layer(norm), layer_bias(norm))
