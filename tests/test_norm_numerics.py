"""Every norm in float32 against its formula in float64, on the inputs where float32 arithmetic goes wrong: a mean
of 1e4 with std 1, a channel constant over the batch, 1x1 maps of scale 1e4 — all at batch 2, NCHW and
channels_last, train and eval, on the compiled and the Python path of BIN and SN. Outputs, input and parameter
gradients and running statistics must be within ULPS float32 ulps of the largest reference value; input gradients of
the largest term of their formula (|gain| |upstream| / sqrt(smallest variance + eps): where a statistic is over one
value, those terms cancel exactly); for torch's own BN and IN kernels, which normlab uses as they are, of the input's
scale, where those kernels round.

Before the fix (commit 46546b8) the Python BIN/SN path was off by ~1e3 in the output and ~1e7 in the input
gradient at mean 1e4, BIN at 1x1 maps by ~0.1 on both paths, and LN/GN on channels_last by ~1e3."""

import copy

import pytest
import torch

from normlab.norms import build_norm, recompute_batch_average_

EPS = 1e-5
F32 = torch.finfo(torch.float32).eps
ULPS = 8
OURS = ("layer", "group", "batch_instance", "switchable", "weight_meanbn")  # computed by normlab itself
TORCH_KERNELS = ("batch", "instance")  # torch's modules as they are
COMPILED = ("batch_instance", "switchable")


def inputs(case: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if case == "mean1e4":
        return torch.randn(2, 6, 5, 7, generator=g) + 1e4
    if case == "constant":  # channel 0 constant over the whole batch: its BN variance is exactly 0
        x = torch.randn(2, 6, 4, 4, generator=g) * 2 + 0.5
        x[:, 0] = 3.7
        return x
    if case == "1x1":  # IN statistics over one value each
        return torch.randn(2, 6, 1, 1, generator=g) * 1e4
    if case == "1d":  # (N, C) features of mean 1e4
        return torch.randn(2, 6, generator=g) + 1e4
    raise ValueError(case)


def moments(x, dims):
    mean = x.mean(dims, keepdim=True)
    count = 1
    for d in dims:
        count *= x.shape[d]
    return mean, ((x - mean) ** 2).sum(dims, keepdim=True) / count


def channel(t, x):
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def reference(name, layer, x, training, params):
    """The paper's formula in float64, written out: `params` (float64, requires_grad) by parameter name,
    the running statistics from `layer`'s buffers."""
    x = x.double()
    w, b = params.get("weight"), params.get("bias")
    spatial = tuple(range(2, x.dim()))
    batch_dims, sample_dims = (0, *spatial), tuple(range(1, x.dim()))
    running = {k: v.double() for k, v in layer.named_buffers() if k in ("running_mean", "running_var")}

    def normalized(mean, var):
        return (x - mean) / torch.sqrt(var + EPS)

    def bn():
        if training:
            return normalized(*moments(x, batch_dims))
        return normalized(channel(running["running_mean"], x), channel(running["running_var"], x))

    if name == "weight_meanbn":
        mean = x.mean(batch_dims, keepdim=True) if training else channel(running["running_mean"], x)
        return x - mean + channel(b, x)
    if name == "batch":
        h = bn()
    elif name == "layer":
        h = normalized(*moments(x, sample_dims))
    elif name == "instance":
        h = normalized(*moments(x, spatial))
    elif name == "group":
        grouped = x.reshape(x.shape[0], layer.num_groups, -1)
        mean, var = moments(grouped, (2,))
        h = ((grouped - mean) / torch.sqrt(var + EPS)).view_as(x)
    elif name == "batch_instance":
        rho = channel(params["gate"], x)
        h = rho * bn() + (1 - rho) * normalized(*moments(x, spatial))
    elif name == "switchable":
        a, c = torch.softmax(params["mean_weight"], 0), torch.softmax(params["var_weight"], 0)
        kinds = [moments(x, spatial)] if x.dim() > 2 else []
        kinds.append(moments(x, sample_dims))
        if training:
            kinds.append(moments(x, batch_dims))
        else:
            kinds.append((channel(running["running_mean"], x), channel(running["running_var"], x)))
        mean = sum(a[k] * m for k, (m, _) in enumerate(kinds))
        var = sum(c[k] * v for k, (_, v) in enumerate(kinds))
        h = normalized(mean, var)
    else:
        raise ValueError(name)
    return h * channel(w, x) + channel(b, x)


def setup_layer(name, x, training, native):
    torch.manual_seed(2)
    layer = build_norm(name, 6, "1d" if x.dim() == 2 else "2d", **({"num_groups": 3} if name == "group" else {}))
    with torch.no_grad():
        for key, p in layer.named_parameters():
            p.copy_(torch.rand_like(p) * 0.6 + 0.2 if key == "gate" else torch.randn_like(p))
        if getattr(layer, "running_mean", None) is not None:
            layer.running_mean.copy_(x.mean([0, *range(2, x.dim())]) + 0.1 * torch.randn(6))
        if getattr(layer, "running_var", None) is not None:
            layer.running_var.uniform_(0.5, 2)
    if hasattr(layer, "use_native"):
        layer.use_native = native
    return layer.train(training)


def input_scale(layer, x):
    """For torch's kernels: |x| times the largest gain over deviation (where they round)."""
    if getattr(layer, "weight", None) is None:
        return 0.0
    var = x.double().var([0, *range(2, x.dim())], unbiased=False)
    if not layer.training and getattr(layer, "running_var", None) is not None:
        var = layer.running_var.double()
    return x.abs().max().item() * (layer.weight.abs().max().item() / (var.min().item() + EPS) ** 0.5)


KINDS = {  # the statistics each norm divides by
    "batch": ("bn",),
    "layer": ("ln",),
    "instance": ("in",),
    "group": ("gn",),
    "batch_instance": ("bn", "in"),
    "switchable": ("in", "ln", "bn"),
    "weight_meanbn": (),
}


def largest_term(name, layer, x):
    """max |gain| / sqrt(smallest variance + eps) over the statistics the norm uses: the largest coefficient of
    the input gradient's terms, which cancel where a statistic is over one value (IN at 1x1)."""
    x = x.double()
    spatial = tuple(range(2, x.dim()))
    dims = {"bn": (0, *spatial), "ln": tuple(range(1, x.dim())), "in": spatial}
    variances = []
    for kind in KINDS[name]:
        if kind == "gn":
            variances.append(x.reshape(x.shape[0], layer.num_groups, -1).var(2, unbiased=False))
        elif kind == "in" and x.dim() == 2:
            continue
        else:
            variances.append(x.var(dims[kind], unbiased=False))
    if not variances:
        return 1.0
    smallest = min(v.min().item() for v in variances)
    return layer.weight.abs().max().item() / (smallest + EPS) ** 0.5


def close(ours, ref, floor, what):
    tol = ULPS * F32 * (max(1.0, ref.abs().max().item()) + floor)
    err = (ours.double() - ref).abs().max().item()
    assert err <= tol, f"{what}: error {err:.3g} > {tol:.3g} ({err / F32 / max(1.0, ref.abs().max().item()):.1f} ulps)"


CASES = [
    (name, case, layout, native)
    for name in OURS + TORCH_KERNELS
    for case in ("mean1e4", "constant", "1x1", "1d")
    for layout in ("nchw", "channels_last")
    for native in ((True, False) if name in COMPILED else (True,))
    if not (case == "1d" and (name in ("instance", "batch_instance") or layout == "channels_last"))
    if not (case == "1x1" and name == "instance")  # IN of one value: torch refuses it in training
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("name", "case", "layout", "native"), CASES)
def test_every_norm_is_exact_in_float32(name, case, layout, native, mode):
    x = inputs(case)
    layer = setup_layer(name, x, mode == "train", native)
    before = copy.deepcopy(layer)
    params64 = {k: p.detach().double().requires_grad_() for k, p in layer.named_parameters()}
    x32 = (x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x).requires_grad_()
    x64 = x.double().requires_grad_()
    y, ref = layer(x32), reference(name, before, x64, mode == "train", params64)
    floor = input_scale(before, x) if name in TORCH_KERNELS else 0.0
    close(y, ref, floor, "output")

    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    names = [k for k, _ in layer.named_parameters()]
    ours = torch.autograd.grad(y, [x32, *layer.parameters()], upstream.float())
    theirs = torch.autograd.grad(ref, [x64, *params64.values()], upstream)
    terms = max(floor, largest_term(name, before, x)) * upstream.abs().max().item()
    close(ours[0], theirs[0], terms, "input gradient")
    summed = upstream.abs().sum().item()  # parameter gradients are sums over the batch and positions
    for key, a, b in zip(names, ours[1:], theirs[1:], strict=True):
        close(a, b, summed * (1 + ref.abs().max().item() + floor), f"gradient of {key}")

    if mode == "train" and getattr(layer, "running_mean", None) is not None:
        dims = [0, *range(2, x.dim())]
        mean = x.double().mean(dims)
        close(layer.running_mean, before.running_mean.double().lerp(mean, layer.momentum), 0.0, "running mean")
        if getattr(layer, "running_var", None) is not None:
            count = x.numel() // x.shape[1]
            var = x.double().var(dims, unbiased=name != "switchable") if count > 1 else torch.zeros(6).double()
            close(layer.running_var, before.running_var.double().lerp(var, layer.momentum), 0.0, "running variance")


# ---------------------------------------------------------------- SN: the official code's statistics


def official_statistics(x):
    """The official Switchable-Normalization code's statistics, from its description: on (N, C, H, W) unbiased
    IN variances, and LN / BN variances from E[var_in + mean_in^2] - mean^2; on (N, C) unbiased LN and BN
    variances. Returns [(mean, var)] for its kinds, BN last."""
    if x.dim() == 2:
        return [(x.mean(1, keepdim=True), x.var(1, keepdim=True)), (x.mean(0, keepdim=True), x.var(0, keepdim=True))]
    flat = x.flatten(2)
    mean_in, var_in = flat.mean(-1, keepdim=True), flat.var(-1, keepdim=True)
    second = var_in + mean_in**2
    mean_ln, mean_bn = mean_in.mean(1, keepdim=True), mean_in.mean(0, keepdim=True)
    kinds = [
        (mean_in, var_in),
        (mean_ln, second.mean(1, keepdim=True) - mean_ln**2),
        (mean_bn, second.mean(0, keepdim=True) - mean_bn**2),
    ]
    return [(m.view(*m.shape[:2], 1, 1), v.view(*v.shape[:2], 1, 1)) for m, v in kinds]


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_switchable_official_variant_follows_the_official_formulas(kind):
    torch.manual_seed(4)
    shape = (4, 6, 3, 5) if kind == "2d" else (5, 6)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).requires_grad_()
    layer = build_norm("switchable", 6, kind, variant="official", momentum=0.003).double()
    assert torch.equal(layer.running_var, torch.zeros(6, dtype=torch.float64))  # the official code starts at 0
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    params = {k: p.detach().clone().requires_grad_() for k, p in layer.named_parameters()}
    kinds = official_statistics(x)
    a, b = torch.softmax(params["mean_weight"], 0), torch.softmax(params["var_weight"], 0)
    mean = sum(a[k] * m for k, (m, _) in enumerate(kinds))
    var = sum(b[k] * v for k, (_, v) in enumerate(kinds))
    expected = (x - mean) / torch.sqrt(var + EPS) * channel(params["weight"], x) + channel(params["bias"], x)
    y = layer(x)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    ours = torch.autograd.grad(y, [x, *layer.parameters()], grad)
    theirs = torch.autograd.grad(expected, [x, *params.values()], grad)
    for o, t in zip(ours, theirs, strict=True):
        torch.testing.assert_close(o, t)
    # the running statistics move by the official convention's 1 - 0.997 towards the batch's (BN kind, last)
    bn_mean, bn_var = (t.detach().flatten() for t in kinds[-1])
    torch.testing.assert_close(layer.running_mean, 0.003 * bn_mean)
    torch.testing.assert_close(layer.running_var, 0.003 * bn_var)


def test_switchable_official_batch_average_is_the_pooled_variance():
    """bn_stats=batch_average with variant=official: Σμ/K and Σ(μ² + σ²)/K − (Σμ/K)², the official finalisation;
    with variant=paper the plain average of the batch variances."""
    torch.manual_seed(6)
    batches = [torch.randn(4, 6, 3, 3, dtype=torch.float64) * (1 + i) + i for i in range(3)]
    means = torch.stack([official_statistics(x)[-1][0].flatten() for x in batches])
    variances = torch.stack([official_statistics(x)[-1][1].flatten() for x in batches])
    layer = build_norm("switchable", 6, "2d", variant="official", bn_stats="batch_average").double()
    assert recompute_batch_average_(layer, batches) == 3
    torch.testing.assert_close(layer.running_mean, means.mean(0))
    torch.testing.assert_close(layer.running_var, (variances + means**2).mean(0) - means.mean(0) ** 2)
    paper = build_norm("switchable", 6, "2d", bn_stats="batch_average").double()
    recompute_batch_average_(paper, batches)
    biased = torch.stack([x.var((0, 2, 3), unbiased=False) for x in batches])
    torch.testing.assert_close(paper.running_var, biased.mean(0))


def test_switchable_variant_is_checked():
    with pytest.raises(ValueError, match="variant 'bogus' is not allowed"):
        build_norm("switchable", 4, variant="bogus")
