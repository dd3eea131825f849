"""Instance Norm (Ulyanov et al. 2016): per-sample, per-channel statistics over (H, W), in training and eval."""

from torch import nn

from normlab.norms.registry import register_norm


@register_norm("instance", options=("eps",), kinds=("2d",), channels_last=False)  # torch's IN is slower in NHWC
class InstanceNorm(nn.InstanceNorm2d):
    """torch's InstanceNorm2d with a learned affine and no running statistics (instance stats at eval too)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps, affine=True, track_running_stats=False)
