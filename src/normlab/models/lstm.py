"""An LSTM sequence classifier over images: MNIST as 28 rows of 28 pixels (or 784 single pixels, optionally in
a fixed random order; `downsample=2` reads the image pooled to 14x14), CIFAR-10 as 32 rows of 96 values. The
last hidden state feeds a linear classifier.

norm=none and norm=weight use torch's fused `nn.LSTM` (weight norm on W_x and W_h); layer and batch use
`NormLSTM`, one tight loop over time in which the input term W_x x_t is computed and normalized for all
steps at once, and the recurrent term and the cell state are normalized step by step.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import ModelConfig
from normlab.models.registry import check_at_least, check_choice, register_model
from normlab.norms import NORMS, native, norm_options
from normlab.norms.recurrent import build_sequence_norm


def initial_state(x: torch.Tensor, hidden_size: int, noise: float, training: bool) -> torch.Tensor:
    """h_0: zeros, plus Gaussian noise of std `noise` in training. The recurrent BN paper primes h_0 so (std 0.1)
    because the first steps of an MNIST sequence are blank in every image: without it the batch statistics of the
    early steps have near-zero variance, and population statistics at eval then blow up rare inputs."""
    h = x.new_zeros(x.shape[0], hidden_size)
    return h.normal_(0.0, noise) if training and noise > 0 else h


RECURRENT_INITS = ("uniform", "orthogonal", "identity")  # init_recurrent_'s schemes


@torch.no_grad()
def init_recurrent_(w_x: torch.Tensor, w_h: torch.Tensor, scheme: str) -> None:
    """The (4H, F) input and (4H, H) recurrent weights, gate block by gate block: `uniform` keeps nn.LSTM's
    U(±1/sqrt(H)); `orthogonal` makes each block orthogonal; `identity` makes W_x's blocks orthogonal and W_h's
    the identity (the recurrent BN paper, Sec. 5.1)."""
    if scheme == "uniform":
        return
    for block in w_x.chunk(4):
        nn.init.orthogonal_(block)
    for block in w_h.chunk(4):
        if scheme == "orthogonal":
            nn.init.orthogonal_(block)
        else:
            block.copy_(torch.eye(block.shape[0]))


def as_sequence(x: torch.Tensor, sequence: str, downsample: int = 1) -> torch.Tensor:
    """(N, C, H, W) images -> (N, T, F): rows (T=H, F=C*W) or pixels (T=H*W, F=C), after average-pooling by
    `downsample` (2: MNIST as 14x14, a 196-step pixel sequence instead of 784)."""
    if downsample > 1:
        x = F.avg_pool2d(x, downsample)
    n, c, h, w = x.shape
    if sequence == "rows":
        return x.permute(0, 2, 1, 3).reshape(n, h, c * w)
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


class NormLSTM(nn.Module):
    """LSTM with normalized terms (Ba et al. 2016 Eq. 20-22; Cooijmans et al. 2016 Eq. 6-8):
    gates = N_x(W_x x_t) + N_h(W_h h_{t-1});  c_t = f*c_{t-1} + i*g;  h_t = o * tanh(N_c(c_t)).
    Each norm has its own gain and bias; the two gate biases together play the role of the papers' b."""

    def __init__(self, input_size, hidden_size, steps, make_norm, h0_noise=0.0, recurrent_init="uniform"):
        super().__init__()
        self.hidden_size, self.h0_noise = hidden_size, h0_noise
        self.w_x = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.w_h = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.norm_x = make_norm(4 * hidden_size, steps)
        self.norm_h = make_norm(4 * hidden_size, steps)
        self.norm_c = make_norm(hidden_size, steps)
        bound = 1 / math.sqrt(hidden_size)
        for w in (self.w_x.weight, self.w_h.weight):
            nn.init.uniform_(w, -bound, bound)  # nn.LSTM's init
        init_recurrent_(self.w_x.weight, self.w_h.weight, recurrent_init)
        self.use_native = True  # each step as one compiled call where it applies (norms.native)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, steps, _ = x.shape
        # (N, T, 4H), every step in one go; unbound once, so backward stacks the step gradients once
        # (indexing xw[:, t] would make backward fill a zero (N, T, 4H) tensor per step)
        xw = self.norm_x(self.w_x(x)).unbind(1)
        h = initial_state(x, self.hidden_size, self.h0_noise, self.training)
        c = x.new_zeros(n, self.hidden_size)
        if self.use_native and hasattr(self.norm_h, "step_statistics") and native.usable(x, *self.parameters()):
            return self.forward_native(xw, h, c)
        split = (3 * self.hidden_size, self.hidden_size)  # gates laid out as (input, forget, output | cell candidate)
        for t in range(steps):
            # split, not sliced: a slice's backward fills a zero tensor of the whole gates, split's is one cat
            ifo, g = (xw[t] + self.norm_h(self.w_h(h), t)).split(split, 1)
            i, f, o = torch.sigmoid(ifo).chunk(3, 1)
            c = torch.addcmul(f * c, i, torch.tanh(g))
            h = o * torch.tanh(self.norm_c(c, t))
        return h

    def forward_native(self, xw: tuple[torch.Tensor, ...], h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The same loop, each step's norms and gates one compiled call (`native.norm_lstm_step`)."""
        norm_h, norm_c = self.norm_h, self.norm_c
        for t, xw_t in enumerate(xw):
            (mean_h, var_h), (mean_c, var_c) = norm_h.step_statistics(t), norm_c.step_statistics(t)  # LN: Nones
            h, c = native.norm_lstm_step(
                xw_t,
                self.w_h(h),
                c,
                norm_h.weight,
                norm_h.bias,
                norm_c.weight,
                norm_c.bias,
                mean_h,
                var_h,
                mean_c,
                var_c,
                self.training,
                norm_h.momentum,
                norm_h.eps,
                norm_c.eps,
            )
        return h


class TorchLSTM(nn.Module):
    """torch's fused LSTM, returning the last hidden state."""

    def __init__(self, input_size, hidden_size, h0_noise=0.0, recurrent_init="uniform"):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        init_recurrent_(
            self.lstm.get_parameter("weight_ih_l0"), self.lstm.get_parameter("weight_hh_l0"), recurrent_init
        )
        self.h0_noise = h0_noise

    def forward(self, x):
        h = initial_state(x, self.lstm.hidden_size, self.h0_noise, self.training).unsqueeze(0)
        return self.lstm(x, (h, torch.zeros_like(h)))[0][:, -1]


class LSTMClassifier(nn.Module):
    def __init__(
        self,
        in_shape,
        num_classes,
        hidden_size,
        sequence,
        permute,
        seed,
        norm_name,
        norm_options,
        h0_noise=0.0,
        downsample=1,
        recurrent_init="uniform",
    ):
        super().__init__()
        c, h, w = in_shape
        h, w = h // downsample, w // downsample
        steps, features = (h, c * w) if sequence == "rows" else (h * w, c)
        self.sequence, self.downsample = sequence, downsample
        order = torch.randperm(steps, generator=torch.Generator().manual_seed(seed)) if permute else None
        self.order: torch.Tensor | None
        self.register_buffer("order", order)
        self.core: nn.Module
        if NORMS[norm_name].empty:
            self.core = TorchLSTM(features, hidden_size, h0_noise, recurrent_init)
        else:

            def make_norm(f, n_steps):
                return build_sequence_norm(norm_name, f, n_steps, **norm_options)

            self.core = NormLSTM(features, hidden_size, steps, make_norm, h0_noise, recurrent_init)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        seq = as_sequence(x, self.sequence, self.downsample)
        if self.order is not None:
            seq = seq[:, self.order]
        return self.classifier(self.core(seq))


@dataclass(frozen=True)
class LSTMConfig(ModelConfig):
    """model=lstm's keys (conf/model/lstm.yaml says each)."""

    name: str = "lstm"
    hidden_size: int = 100
    sequence: str = "rows"  # rows | pixel
    downsample: int = 1  # average-pool the image by this factor first (2: MNIST as 196 pixels)
    permute: bool = False  # a fixed random permutation of the sequence
    h0_noise: float = 0.0  # std of Gaussian noise on the initial hidden state in training (Cooijmans: 0.1)
    recurrent_init: str = "uniform"  # uniform (nn.LSTM's) | orthogonal | identity (W_h = I, Cooijmans)

    def validate(self) -> None:
        check_at_least("hidden_size", self.hidden_size, 1)
        check_choice("sequence", self.sequence, ("rows", "pixel"))
        check_at_least("downsample", self.downsample, 1)
        check_at_least("h0_noise", self.h0_noise, 0)
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)


@register_model("lstm", LSTMConfig, features="seq")
def build(cfg: LSTMConfig, norm, in_shape, num_classes, seed):
    return LSTMClassifier(
        in_shape,
        num_classes,
        cfg.hidden_size,
        cfg.sequence,
        cfg.permute,
        seed,
        norm.name,
        norm_options(norm),
        cfg.h0_noise,
        cfg.downsample,
        cfg.recurrent_init,
    )
