"""Each norm against an independent reference: torch's own modules where one exists, the paper's formula
written out plainly where none does; 1d and 2d, train and eval, forward and backward, running statistics."""

import copy
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import ConfigError
from normlab.norms import (
    NORMS,
    BatchInstanceNorm,
    MeanOnlyBatchNorm,
    SwitchableNorm,
    apply_weight_norm,
    build_norm,
    init_weight_norm_,
    native,
    norm_internals,
    recompute_batch_average_,
)
from normlab.norms.fused import centred_input_grad, grad_sums, pooled, row_statistics, scale_shift
from normlab.norms.group import groups_for

from conftest import assert_native_matches_python

EPS = 1e-5


@pytest.fixture(autouse=True)
def float64():
    """Compare in float64 so that only real differences, not rounding, can fail a test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def shape_of(kind):
    return (6, 8, 5, 4) if kind == "2d" else (6, 8)


def reduce_dims(x, over):
    """Dims of x to reduce: 'batch' = all but C, 'sample' = all but N, 'instance' = spatial only."""
    spatial = tuple(range(2, x.dim()))
    return {"batch": (0, *spatial), "sample": (1, *spatial), "instance": spatial}[over]


def plain_norm(x, over, eps=EPS):
    """(x - mean) / sqrt(biased var + eps) with statistics over `over`, the textbook formula."""
    dims = reduce_dims(x, over)
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def affine(y, weight, bias):
    shape = (1, -1) + (1,) * (y.dim() - 2)
    return y * weight.view(shape) + bias.view(shape)


def randomize_affine(layer):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name in ("weight", "bias"):
                p.copy_(torch.randn_like(p))


def check_forward_backward(layer, reference, x, atol=1e-5):
    """Same output and same gradients (input and parameters) as `reference(x)` for a random upstream grad."""
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    y1, y2 = layer(x1), reference(x2)
    torch.testing.assert_close(y1, y2, atol=atol, rtol=1e-4)
    upstream = torch.randn_like(y1)
    params = [p for p in layer.parameters()]
    g1 = torch.autograd.grad(y1, [x1, *params], upstream, allow_unused=True)
    g2 = torch.autograd.grad(y2, [x2, *params], upstream, allow_unused=True)
    for a, b in zip(g1, g2, strict=False):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)


# ---------------------------------------------------------------- batch


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batch_norm_train_eval_and_running_stats(kind):
    torch.manual_seed(0)
    layer = build_norm("batch", 8, kind, eps=EPS, momentum=0.1)
    randomize_affine(layer)
    xs = [torch.randn(shape_of(kind)) * 3 + 1 for _ in range(4)]
    running_mean, running_var = torch.zeros(8), torch.ones(8)
    layer.train()
    for x in xs:
        check_forward_backward(layer, lambda t: affine(plain_norm(t, "batch"), layer.weight, layer.bias), x)
        dims = reduce_dims(x, "batch")
        n = x.numel() // 8
        running_mean = 0.9 * running_mean + 0.1 * x.mean(dims)
        running_var = 0.9 * running_var + 0.1 * x.var(dims, unbiased=False) * n / (n - 1)  # unbiased, as torch
    torch.testing.assert_close(layer.running_mean, running_mean)
    torch.testing.assert_close(layer.running_var, running_var)
    layer.eval()
    x = torch.randn(shape_of(kind))
    shape = (1, -1) + (1,) * (x.dim() - 2)

    def reference(t):
        return affine(
            (t - running_mean.view(shape)) / torch.sqrt(running_var.view(shape) + EPS),
            layer.weight,
            layer.bias,
        )

    check_forward_backward(layer, reference, x)


# ---------------------------------------------------------------- layer, instance, group


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_norm_is_per_sample_over_all_features(kind, mode):
    torch.manual_seed(1)
    layer = build_norm("layer", 8, kind, eps=EPS)
    randomize_affine(layer)
    layer.train(mode == "train")
    x = torch.randn(shape_of(kind)) * 2 + 3
    check_forward_backward(layer, lambda t: affine(plain_norm(t, "sample"), layer.weight, layer.bias), x)
    # and torch's own F.layer_norm over (C, H, W), before the per-channel affine
    torch.testing.assert_close(
        layer(x),
        affine(F.layer_norm(x, x.shape[1:], eps=EPS), layer.weight, layer.bias),
        atol=1e-5,
        rtol=1e-4,
    )


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_instance_norm_uses_instance_statistics_in_train_and_eval(mode):
    torch.manual_seed(2)
    layer = build_norm("instance", 8, "2d", eps=EPS)
    randomize_affine(layer)
    layer.train(mode == "train")
    x = torch.randn(shape_of("2d")) * 2 - 1
    check_forward_backward(layer, lambda t: affine(plain_norm(t, "instance"), layer.weight, layer.bias), x)


def group_reference(x, groups, weight, bias):
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = ((g - mean) ** 2).mean(-1, keepdim=True)
    return affine(((g - mean) / torch.sqrt(var + EPS)).reshape(x.shape), weight, bias)


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_group_norm_matches_formula(kind, mode):
    torch.manual_seed(3)
    layer = build_norm("group", 8, kind, eps=EPS, num_groups=4)
    randomize_affine(layer)
    layer.train(mode == "train")
    x = torch.randn(shape_of(kind)) * 2
    check_forward_backward(layer, lambda t: group_reference(t, 4, layer.weight, layer.bias), x)


@pytest.mark.parametrize(
    ("channels", "options", "groups"),
    [
        (64, {"num_groups": 32}, 32),
        (16, {}, 4),
        (100, {}, 25),
        (128, {"group_size": 16}, 8),
        (48, {"num_groups": 8}, 8),
    ],
)
def test_group_norm_uses_the_groups_asked_for_and_records_them(channels, options, groups):
    layer = build_norm("group", channels, "2d", **options)
    assert layer.num_groups == groups == groups_for(channels, **options)
    model = nn.Sequential(layer)
    assert norm_internals(model) == {"0": {"num_groups": groups, "channels_per_group": channels // groups}}


@pytest.mark.parametrize(
    ("channels", "options", "words"),
    [
        (16, {"num_groups": 32}, "norm.num_groups=32 is not allowed for a layer of 16 channels: it does not divide"),
        (32, {"num_groups": 32}, "Instance Norm"),
        (16, {"group_size": 16}, "Layer Norm"),
        (48, {"num_groups": 32}, "does not divide"),
        (100, {"group_size": 3}, "does not divide"),
        (3, {"num_groups": 3}, "use another norm"),
    ],
)
def test_group_norm_never_silently_becomes_instance_or_layer_norm(channels, options, words):
    with pytest.raises(ConfigError, match=words):
        build_norm("group", channels, "2d", **options)


# ---------------------------------------------------------------- weight norm and mean-only BN


def test_weight_norm_reparameterizes_every_layer_and_keeps_the_function_at_init():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    x = torch.randn(2, 3, 5, 5)
    before = net(x)
    apply_weight_norm(net)
    torch.testing.assert_close(net(x), before)  # g starts at ||v||
    for layer in (net[0], net[2]):
        g = layer.parametrizations.weight.original0
        v = layer.parametrizations.weight.original1
        with torch.no_grad():
            g.mul_(torch.rand_like(g) + 0.5)
        norms = v.flatten(1).norm(dim=1).view_as(g)
        torch.testing.assert_close(layer.weight, g * v / norms)  # Eq. 2: w = g v / ||v||
        # gradient wrt g is (grad_w . v) / ||v|| (Eq. 3)
        w = layer.weight
        grad_w = torch.randn_like(w)
        (grad_g,) = torch.autograd.grad(w, [g], grad_w)
        torch.testing.assert_close(grad_g, (grad_w * v).flatten(1).sum(1).view_as(g) / norms)


def test_weight_norm_data_init_gives_unit_pre_activations():
    torch.manual_seed(5)
    net = apply_weight_norm(nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 6)))
    x = torch.randn(256, 10) * 4 + 2
    init_weight_norm_(net, x)
    h = net[0](x)
    torch.testing.assert_close(h.mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(h.std(0, unbiased=False), torch.ones(20), atol=1e-3, rtol=0)
    out = net(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_mean_only_batch_norm(kind):
    torch.manual_seed(6)
    layer = build_norm("weight_meanbn", 8, kind, momentum=0.1)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(8))
    shape = (1, -1) + (1,) * (len(shape_of(kind)) - 2)
    running = torch.zeros(8)
    for _ in range(3):
        x = torch.randn(shape_of(kind)) + 2
        dims = reduce_dims(x, "batch")
        check_forward_backward(layer, lambda t, d=dims: t - t.mean(d, keepdim=True) + layer.bias.view(shape), x)
        running = 0.9 * running + 0.1 * x.mean(dims)
    torch.testing.assert_close(layer.running_mean, running)
    layer.eval()
    x = torch.randn(shape_of(kind))
    check_forward_backward(layer, lambda t: t - running.view(shape) + layer.bias.view(shape), x)


# ---------------------------------------------------------------- batch-instance


def bin_reference(x, layer, running_mean=None, running_var=None):
    """rho * x_BN + (1 - rho) * x_IN, then the affine (Nam & Kim 2018, Eq. 3-4)."""
    if running_mean is None:
        x_bn = plain_norm(x, "batch")
    else:
        x_bn = (x - running_mean.view(1, -1, 1, 1)) / torch.sqrt(running_var.view(1, -1, 1, 1) + EPS)
    rho = layer.gate.view(1, -1, 1, 1)
    return affine(rho * x_bn + (1 - rho) * plain_norm(x, "instance"), layer.weight, layer.bias)


def test_batch_instance_gate_one_is_bn_and_zero_is_in():
    torch.manual_seed(7)
    layer = BatchInstanceNorm(8)
    bn, inorm = nn.BatchNorm2d(8), nn.InstanceNorm2d(8, affine=True)
    x = torch.randn(shape_of("2d")) * 3
    torch.testing.assert_close(layer(x), bn(x))  # gate initialised to 1: pure BN
    torch.testing.assert_close(layer.running_var, bn.running_var)
    with torch.no_grad():
        layer.gate.zero_()
    torch.testing.assert_close(layer(x), inorm(x), atol=1e-5, rtol=1e-4)


def on_path(layer, path: str):
    """Pin a BIN or SN layer to one of its implementations: "native" (the compiled CPU kernels, which must
    build here), "function" (the hand-written Python Function) or, for BIN, "kernels" (torch's, what CUDA takes)."""
    if path == "native":
        assert native.library() is not None, "the compiled kernels did not build (see the warning)"
    layer.use_native = path == "native"
    if path == "kernels":
        layer.forward = layer.forward_kernels
    return layer


def batch_instance(num_features: int, path: str) -> BatchInstanceNorm:
    return on_path(BatchInstanceNorm(num_features), path)


BIN_PATHS = pytest.mark.parametrize("path", ["native", "function", "kernels"])
SN_PATHS = pytest.mark.parametrize("path", ["native", "function"])


@BIN_PATHS
def test_batch_instance_matches_formula_in_train_and_eval(path):
    torch.manual_seed(8)
    layer = batch_instance(8, path)
    randomize_affine(layer)
    with torch.no_grad():
        layer.gate.uniform_(0, 1)
    running_mean, running_var = torch.zeros(8), torch.ones(8)
    for _ in range(3):
        x = torch.randn(shape_of("2d")) * 2 + 1
        check_forward_backward(layer, lambda t: bin_reference(t, layer), x)
        n = x.numel() // 8
        running_mean = 0.9 * running_mean + 0.1 * x.mean((0, 2, 3))
        running_var = 0.9 * running_var + 0.1 * x.var((0, 2, 3), unbiased=False) * n / (n - 1)
    torch.testing.assert_close(layer.running_mean, running_mean)
    torch.testing.assert_close(layer.running_var, running_var)
    assert layer.num_batches_tracked.item() == 3
    layer.eval()
    x = torch.randn(shape_of("2d"))
    check_forward_backward(layer, lambda t: bin_reference(t, layer, running_mean, running_var), x)


def test_batch_instance_gates_stay_in_unit_interval_after_steps_that_push_them_out():
    from normlab.config import Config
    from normlab.norms import constrained_layers
    from normlab.optim import build_optimizer

    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchInstanceNorm(8))
    optimizer = build_optimizer(model, Config(lr=1.0))
    gate_group = [g for g in optimizer.param_groups if g["name"].endswith("gate")]
    assert len(gate_group) == 1 and gate_group[0]["lr"] == 10.0 and gate_group[0]["weight_decay"] == 0.0
    for direction in (1.0, -1.0):
        for _ in range(3):
            out = model(torch.randn(4, 3, 6, 6))
            # loss = -direction * sum(gate): pushes gates above 1 (then below 0) with a large step
            loss = out.mean() * 0 - direction * model[1].gate.sum() * 100
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for layer in constrained_layers(model):
                layer.after_step_()
            assert model[1].gate.min() >= 0 and model[1].gate.max() <= 1
        assert torch.all(model[1].gate == (1.0 if direction > 0 else 0.0))


def test_layers_declare_what_they_need_and_nothing_outside_the_zoo_finds_them_by_class():
    """BIN's gates: their own lr without decay (lr_groups), a clamp after each step (after_step_), a histogram
    (histograms); read from the layers' declarations, so no module outside norms/ tests for a norm class."""
    import ast
    from pathlib import Path

    from normlab.norms import constrained_layers, norm_histograms, norm_lr_groups

    model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchInstanceNorm(8, gate_lr_mult=7.0), nn.BatchNorm2d(8))
    assert list(norm_histograms(model)) == ["1/gate"] and torch.equal(norm_histograms(model)["1/gate"], model[1].gate)
    assert norm_lr_groups(model) == {id(model[1].gate): 7.0} and constrained_layers(model) == [model[1]]
    package = Path(__file__).resolve().parents[1] / "src" / "normlab"
    classes = {
        node.name
        for path in (package / "norms").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Norm")
    }
    found = []  # isinstance(m, <a zoo class>) outside norms/
    for path in package.rglob("*.py"):
        if "norms" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                found += [(path.name, n.id) for n in ast.walk(node.args[1]) if getattr(n, "id", "") in classes]
    assert len(classes) >= 6 and not found


# ---------------------------------------------------------------- switchable


def sn_reference(x, layer, bn_mean=None, bn_var=None):
    """Luo et al. 2018, Eq. 3: softmax-weighted IN/LN/BN means and (biased) variances, computed directly."""
    stats = {}
    for name, over in (("in", "instance"), ("ln", "sample"), ("bn", "batch")):
        dims = reduce_dims(x, over)
        if x.dim() == 2 and name == "in":
            continue
        mean = x.mean(dims, keepdim=True)
        stats[name] = (mean, ((x - mean) ** 2).mean(dims, keepdim=True))
    if bn_mean is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        stats["bn"] = (bn_mean.view(shape), bn_var.view(shape))
    names = ["in", "ln", "bn"] if x.dim() == 4 else ["ln", "bn"]
    mw, vw = torch.softmax(layer.mean_weight, 0), torch.softmax(layer.var_weight, 0)
    mean = sum(mw[i] * stats[s][0] for i, s in enumerate(names))
    var = sum(vw[i] * stats[s][1] for i, s in enumerate(names))
    return affine((x - mean) / torch.sqrt(var + EPS), layer.weight, layer.bias)


@SN_PATHS
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_switchable_matches_formula_in_train_and_eval(kind, path):
    torch.manual_seed(10)
    layer = on_path(SwitchableNorm(8, kind=kind), path)
    randomize_affine(layer)
    with torch.no_grad():
        layer.mean_weight.copy_(torch.randn_like(layer.mean_weight))
        layer.var_weight.copy_(torch.randn_like(layer.var_weight))
    assert len(layer.mean_weight) == (3 if kind == "2d" else 2)
    running_mean, running_var = torch.zeros(8), torch.ones(8)
    for _ in range(3):
        x = torch.randn(shape_of(kind)) * 2 + 1
        check_forward_backward(layer, lambda t: sn_reference(t, layer), x, atol=1e-4)
        dims = reduce_dims(x, "batch")
        running_mean = 0.9 * running_mean + 0.1 * x.mean(dims)
        running_var = 0.9 * running_var + 0.1 * x.var(dims, unbiased=False)  # biased throughout
    torch.testing.assert_close(layer.running_mean, running_mean)
    torch.testing.assert_close(layer.running_var, running_var)
    layer.eval()
    x = torch.randn(shape_of(kind))
    check_forward_backward(layer, lambda t: sn_reference(t, layer, running_mean, running_var), x, atol=1e-4)
    importance = layer.importance()
    assert abs(sum(v for k, v in importance.items() if k.startswith("mean_")) - 1) < 1e-6
    assert set(norm_internals(nn.Sequential(layer))["0"]) == set(importance)


def test_switchable_batch_average_recomputes_plain_average_of_batch_statistics():
    torch.manual_seed(11)
    layer = SwitchableNorm(8, kind="2d", bn_stats="batch_average")
    batches = [torch.randn(shape_of("2d")) * (i + 1) + i for i in range(5)]
    layer.train()
    layer(torch.randn(shape_of("2d")) * 10)  # moving averages to be replaced
    weight_before = layer.weight.detach().clone()
    model = nn.Sequential(layer).eval()
    assert recompute_batch_average_(model, batches) == 5
    assert not layer.training  # mode restored
    torch.testing.assert_close(layer.running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0))
    torch.testing.assert_close(
        layer.running_var, torch.stack([b.var((0, 2, 3), unbiased=False) for b in batches]).mean(0)
    )
    torch.testing.assert_close(layer.weight, weight_before)
    moving = SwitchableNorm(8, kind="2d", bn_stats="moving")
    assert recompute_batch_average_(nn.Sequential(moving), batches) == 0


# ---------------------------------------------------------------- compiled kernels (norms.native)


def backward_node(layer, x) -> str:
    """The name of the autograd node that a BIN/SN layer's output comes from (under its final view)."""
    return type(layer(x).grad_fn.next_functions[0][0]).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_kernels_are_what_bin_and_sn_run_on_cpu(dtype):
    for layer, name in ((BatchInstanceNorm(4), "BatchInstanceNorm"), (SwitchableNorm(4), "SwitchableNorm")):
        layer = layer.to(dtype)
        x = torch.randn(2, 4, 3, 3, dtype=dtype, requires_grad=True)
        native_node = f"{name}NativeBackward"  # in eager mode (the custom op's autograd under torch.compile)
        assert backward_node(layer, x) == native_node
        assert backward_node(layer, x.contiguous(memory_format=torch.channels_last)) == native_node
        every_other_channel = torch.randn(2, 8, 3, 3, dtype=dtype, requires_grad=True)[:, ::2]  # neither layout
        assert backward_node(layer, every_other_channel) == f"{name}FunctionBackward"
        layer.use_native = False
        assert backward_node(layer, x) == f"{name}FunctionBackward"
        layer.use_native = True
        assert backward_node(layer.bfloat16(), x.bfloat16()) == f"{name}FunctionBackward"  # no bf16 kernels


@pytest.mark.parametrize("make", [lambda: BatchInstanceNorm(16), lambda: SwitchableNorm(16)])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_native_kernels_match_the_python_function_on_threaded_sizes(make, mode, layout):
    """65,536 values: above the kernels' grain size, so their passes run on torch's threads (the formula tests'
    small inputs run on one); NCHW and channels_last, each its own loops in C."""
    torch.manual_seed(4)
    layer = make().train(mode == "train")
    randomize_affine(layer)
    with torch.no_grad():
        for p in layer.parameters():
            if p.shape[0] != 16:  # SN's importance logits
                p.copy_(torch.randn_like(p))
        layer.running_mean.uniform_(-1, 1), layer.running_var.uniform_(0.5, 2)
    x = (torch.randn(4, 16, 32, 32) * 2 + 1).contiguous(memory_format=layout)
    assert_native_matches_python(layer, x, torch.randn(4, 16, 32, 32))


@pytest.fixture
def fresh_library():
    """native.library() rebuilt under the test's environment, and again under the restored one afterwards."""
    native.library.cache_clear()
    yield
    native.library.cache_clear()


def test_native_library_builds_into_its_cache_and_falls_back_without_a_compiler(tmp_path, monkeypatch, fresh_library):
    monkeypatch.setenv("NORMLAB_CACHE", str(tmp_path / "cache"))
    assert native.library() is not None
    # the library and its recorded hash alone, no temporary file
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".sha256", ".so"]
    native.library.cache_clear()
    monkeypatch.setenv("NORMLAB_CACHE", str(tmp_path / "other"))
    monkeypatch.setattr(native, "COMPILERS", ("no-such-compiler",))
    with pytest.warns(UserWarning, match="compiled BIN/SN kernels unavailable"):
        assert native.library() is None
    assert list((tmp_path / "other").iterdir()) == []
    layer = BatchInstanceNorm(4)
    assert backward_node(layer, torch.randn(2, 4, 3, 3, requires_grad=True)) == "BatchInstanceNormFunctionBackward"


def library_that_marks(tmp_path: Path) -> Path:
    """A shared library whose loading writes the file $MARK: what a library planted in a shared cache could do."""
    source = tmp_path / "planted.c"
    source.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n__attribute__((constructor)) static void mark(void) "
        '{ FILE *f = fopen(getenv("MARK"), "w"); if (f) fclose(f); }\n'
    )
    subprocess.run([native.compiler(), "-shared", "-fPIC", "-o", tmp_path / "planted.so", source], check=True)
    return tmp_path / "planted.so"


@pytest.mark.parametrize("plant", ["no record", "a wrong record", "group-writable", "another user's"])
def test_a_library_planted_in_the_kernel_cache_is_never_loaded(tmp_path, monkeypatch, fresh_library, plant):
    """The cache may be shared (NORMLAB_CACHE): only a library this user's build recorded is loaded; anything else
    is rebuilt over (and the planted code never runs)."""
    if plant == "another user's" and os.getuid() != 0:
        pytest.skip("giving a file to another user needs root")
    monkeypatch.setenv("NORMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MARK", str(tmp_path / "ran"))
    target = native.library_path()
    target.parent.mkdir()
    shutil.copy(library_that_marks(tmp_path), target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    native.record(target).write_text("0" * 64 if plant == "a wrong record" else digest)
    if plant == "no record":
        native.record(target).unlink()
    target.chmod(0o775 if plant == "group-writable" else 0o755)
    if plant == "another user's":
        os.chown(target, 12345, -1)
    assert native.library() is not None
    assert not (tmp_path / "ran").exists()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == native.record(target).read_text() != digest


def test_the_kernel_build_never_runs_the_jobs_cc(tmp_path, monkeypatch, fresh_library):
    """`+hydra.job.env_set.CC=...` sets $CC for a job: the build takes its compiler from a fixed list instead."""
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\nexit 1\n")
    evil.chmod(0o755)
    monkeypatch.setenv("CC", str(evil))
    monkeypatch.setenv("NORMLAB_CACHE", str(tmp_path / "cache"))
    assert native.library() is not None and not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- gradcheck (float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda: batch_instance(4, "native"),
        lambda: batch_instance(4, "function"),
        lambda: batch_instance(4, "kernels"),
        lambda: on_path(SwitchableNorm(4, kind="2d"), "native"),
        lambda: on_path(SwitchableNorm(4, kind="1d"), "native"),
        lambda: on_path(SwitchableNorm(4, kind="2d"), "function"),
        lambda: on_path(SwitchableNorm(4, kind="1d"), "function"),
        lambda: MeanOnlyBatchNorm(4, kind="2d"),
        lambda: MeanOnlyBatchNorm(4, kind="1d"),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_float64(make, mode):
    torch.manual_seed(12)
    layer = make().double()
    layer.train(mode == "train")
    if isinstance(layer, BatchInstanceNorm):
        with torch.no_grad():
            layer.gate.uniform_(0.2, 0.8)
    shape = (3, 4, 3, 3) if getattr(layer, "kind", "2d") == "2d" else (5, 4)
    x = torch.randn(shape, dtype=torch.double, requires_grad=True)
    params = [p for p in layer.parameters()]

    names = [n for n, _ in layer.named_parameters()]

    def fn(x, *ps):  # parameters passed in, so that gradcheck checks their gradients too
        # (train mode updates running statistics, which the train-mode output does not depend on)
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=False)), (x,))

    assert torch.autograd.gradcheck(
        fn, (x, *[p.detach().clone().requires_grad_() for p in params]), eps=1e-6, atol=1e-5
    )


def test_fused_helpers_match_torch():
    """norms.fused: row statistics against plain means and variances, pooling by the law of total variance
    against statistics over the pooled values, the centred input gradient against autograd through the plain
    formula, the gradient sums against the plain formulas."""
    torch.manual_seed(5)
    x = (torch.randn(3, 4, 6) * 3 + 2).requires_grad_()
    mean, var = x.mean(-1), x.var(-1, unbiased=False)
    d, shift, rows = row_statistics(x.detach())
    torch.testing.assert_close(rows, torch.stack([mean, var]).detach())
    torch.testing.assert_close(d, x.detach() - shift.unsqueeze(-1))
    over_c = torch.stack([x.mean((1, 2)), x.var((1, 2), unbiased=False)]).detach()
    over_n = torch.stack([x.mean((0, 2)), x.var((0, 2), unbiased=False)]).detach()
    torch.testing.assert_close(pooled(rows, 1).view(2, 3), over_c)
    torch.testing.assert_close(pooled(rows, 0).view(2, 4), over_n)
    d_rows, grad, scale = torch.randn(2, 3, 4), torch.randn(3, 4, 6), torch.randn(3, 4, 1)
    (expected,) = torch.autograd.grad((mean * d_rows[0] + var * d_rows[1]).sum() + (x * scale * grad).sum(), x)
    torch.testing.assert_close(centred_input_grad(d, shift, rows, d_rows, grad, scale), expected)
    centre = torch.randn(3, 4)
    expected = (grad.sum(-1), (grad * (x - centre.unsqueeze(-1))).sum(-1))
    torch.testing.assert_close(grad_sums(grad, x.detach(), centre), expected)
    offset = torch.randn(3, 4, 1)
    torch.testing.assert_close(scale_shift(x.detach(), scale, offset), x.detach() * scale + offset)


@pytest.mark.parametrize("name", [n for n, spec in NORMS.items() if "2d" in spec.kinds])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_channels_last_gives_the_same_output_and_gradients(name, mode):
    """channels_last=true feeds NHWC tensors: every 2d norm must compute the same thing on them."""
    torch.manual_seed(3)
    layer = build_norm(name, 6, "2d", **({"num_groups": 3} if name == "group" else {}))
    layer.train(mode == "train")
    x = torch.randn(4, 6, 5, 5) * 2 + 1
    grad = torch.randn(4, 6, 5, 5)
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        copy = {k: v.clone() for k, v in layer.state_dict().items()}
        xi = x.contiguous(memory_format=fmt).requires_grad_()
        torch.manual_seed(4)  # the same noise for batch_noisy in both layouts
        y = layer(xi)
        results.append([y, *torch.autograd.grad(y, [xi, *layer.parameters()], grad)])
        layer.load_state_dict(copy)  # the same running statistics for the second pass
    for ours, ref in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_noisy_batch_norm_is_bn_times_a_fresh_scale_plus_a_fresh_shift_per_channel(kind):
    """norm=batch_noisy (Santurkar et al. 2018, Fig. 2) against its formula: torch's functional BN, then each
    channel times s ~ U(1, 2) plus m ~ U(-1, 1), drawn from the same stream; forward and backward in training, the
    noise's mean at eval (1.5 y), and other noise at the next step."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    shape = (5, 3) if kind == "1d" else (5, 3, 4, 2)
    layer = build_norm("batch_noisy", 3, kind)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2)
        layer.bias.uniform_(-1, 1)
    x = (torch.randn(*shape) * 3 + 2).requires_grad_()
    upstream = torch.randn(*shape)
    torch.manual_seed(9)
    y = layer(x)
    ours = torch.autograd.grad(y, [x, *layer.parameters()], upstream)
    torch.manual_seed(9)
    u = torch.rand(2, 3)
    view = (1, -1) + (1,) * (len(shape) - 2)
    w, b = (p.detach().clone().requires_grad_() for p in (layer.weight, layer.bias))
    xr = x.detach().clone().requires_grad_()
    bn = F.batch_norm(xr, None, None, w, b, training=True, eps=1e-5)
    expected = bn * (1 + u[0]).view(view) + (2 * u[1] - 1).view(view)
    torch.testing.assert_close(y, expected)
    for got, want in zip(ours, torch.autograd.grad(expected, [xr, w, b], upstream), strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(layer(x), y)  # the next step draws other noise
    layer.eval()
    mean, var = layer.running_mean, layer.running_var
    plain = F.batch_norm(x, mean.clone(), var.clone(), layer.weight, layer.bias, training=False, eps=1e-5)
    torch.testing.assert_close(layer(x), 1.5 * plain)


# ---------------------------------------------------------------- factory


def test_factory_rejects_unknown_names_kinds_and_options():
    with pytest.raises(ValueError, match="unknown norm 'bogus'"):
        build_norm("bogus", 4)
    with pytest.raises(ValueError, match="not defined on 1d"):
        build_norm("instance", 4, "1d")
    with pytest.raises(ValueError, match="takes no option 'num_groups'"):
        build_norm("batch", 4, "2d", num_groups=2)
    for name, spec in NORMS.items():
        for kind in spec.kinds:
            layer = build_norm(name, 8, kind)
            x = torch.randn(shape_of(kind))
            assert layer(x).shape == x.shape


def native_op_samples() -> list[tuple[str, object, tuple]]:
    """(name, custom op, args) for every compiled kernel: float32 and float64, NCHW and channels_last, batch and
    running statistics, LN and BN in the LSTM step (whose xw is a strided slice, as NormLSTM passes it)."""
    torch.manual_seed(0)
    samples = []
    for dtype in (torch.float32, torch.float64):

        def p(*shape, dtype=dtype):  # a parameter, away from 0
            return (torch.rand(*shape, dtype=dtype) + 0.5).requires_grad_()

        for layout in (torch.contiguous_format, torch.channels_last):
            x4 = (torch.randn(3, 4, 5, 5, dtype=dtype) * 3 + 1).contiguous(memory_format=layout)
            x = x4.reshape(3, 4, -1)
            running = (torch.randn(4, dtype=dtype), torch.rand(4, dtype=dtype) + 0.5)
            for batch_stats in (True, False):
                xg = x.detach().requires_grad_()
                samples.append(("bin", native.bin_forward, (xg, p(4), p(4), p(4), *running, 1e-5, batch_stats, 0.1)))
                samples.append(
                    ("sn", native.sn_forward, (xg, p(3), p(3), p(4), p(4), *running, 1e-5, batch_stats, 0.1, True))
                )
        hidden = 3
        xw = torch.randn(4, 2, 4 * hidden, dtype=dtype).unbind(1)[0].requires_grad_()  # a strided step
        for bn, batch_stats in ((False, True), (True, True), (True, False)):
            running = (
                torch.randn(4 * hidden, dtype=dtype),
                torch.rand(4 * hidden, dtype=dtype) + 0.5,
                torch.randn(hidden, dtype=dtype),
                torch.rand(hidden, dtype=dtype) + 0.5,
            )
            args = (
                xw,
                torch.randn(4, 4 * hidden, dtype=dtype).requires_grad_(),
                torch.randn(4, hidden, dtype=dtype).requires_grad_(),
                p(4 * hidden),
                p(4 * hidden),
                p(hidden),
                p(hidden),
                *(running if bn else (None,) * 4),
                batch_stats,
                0.1,
                1e-5,
                1e-3,
            )
            samples.append(("lstm", native.lstm_step, args))
    return samples


@pytest.mark.parametrize("index", range(len(native_op_samples())))
def test_native_kernels_are_custom_ops_that_opcheck_passes(index):
    """Each kernel is a functional torch.library custom op: its schema (no input mutated: the running
    statistics come back as outputs), fake implementation (shapes, strides, dtypes), autograd registration
    and AOT tracing pass torch.library.opcheck, forward and backward."""
    assert native.library() is not None, "the compiled kernels did not build (see the warning)"
    _, op, args = native_op_samples()[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("make", [lambda: BatchInstanceNorm(4), lambda: SwitchableNorm(4)])
def test_torch_compile_traces_the_kernels_as_one_node(make):
    """Under torch.compile (fullgraph: a graph break is an error) the compiled kernel is a node of the graph,
    not a fall-back to Python, and the compiled layer gives eager's output, gradients and running statistics."""
    torch.manual_seed(1)
    eager, graphs = make(), []
    randomize_affine(eager)
    compiled = copy.deepcopy(eager)

    def backend(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    run = torch.compile(compiled, backend=backend, fullgraph=True)
    x = (torch.randn(2, 4, 3, 3) * 2 + 1).contiguous(memory_format=torch.channels_last)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(2, 4, 3, 3)
    eager(xe).backward(grad)
    run(xc).backward(grad)
    op = "bin_forward" if isinstance(eager, BatchInstanceNorm) else "sn_forward"
    assert any(f"torch.ops.normlab.{op}" in code for code in graphs)
    torch.testing.assert_close(xc.grad, xe.grad)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    torch.testing.assert_close(compiled.running_mean, eager.running_mean)
    torch.testing.assert_close(compiled.running_var, eager.running_var)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_torch_compile_traces_the_lstm_step_as_one_node(norm):
    """NormLSTM under torch.compile (fullgraph) runs each step as the custom op, with eager's output, gradients
    and (stepwise BN) running statistics."""
    from normlab.models.lstm import NormLSTM
    from normlab.norms.registry import build_sequence_norm

    torch.manual_seed(3)
    eager = NormLSTM(3, 4, steps=5, make_norm=lambda f, steps: build_sequence_norm(norm, f, steps))
    compiled, graphs = copy.deepcopy(eager), []

    def backend(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    x = torch.randn(6, 5, 3)
    eager(x).sum().backward()
    torch.compile(compiled, backend=backend, fullgraph=True)(x).sum().backward()
    assert any("torch.ops.normlab.lstm_step" in code for code in graphs)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    for (name, a), b in zip(eager.named_buffers(), compiled.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


def test_the_layers_that_sync_are_those_that_declare_it():
    """distributed.sync_norms turns on `sync` in every layer that declares it (BIN, SN, mean-only BN), none other;
    BN itself is replaced by its synced twin."""
    from normlab.config import NormConfig
    from normlab.models import MODELS, build_model
    from normlab.norms import synced_layers

    def layers(norm: str, model: str = "cnn") -> set[str]:
        net = build_model(MODELS[model].config(), NormConfig(name=norm), (3, 32, 32), 10, seed=0)
        return {type(m).__name__ for m in synced_layers(net)}

    assert layers("batch_instance") == {"BatchInstanceNorm"} and layers("switchable") == {"SwitchableNorm"}
    assert layers("weight_meanbn") == {"MeanOnlyBatchNorm"}
    assert layers("group") == layers("batch") == layers("layer") == set()
