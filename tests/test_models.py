"""Every (model, norm, dataset): compatible ones train on real data, incompatible ones stop with exit code 2;
the hand-written LSTM cells match nn.LSTM and the per-step BN matches its formula."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import DataConfig, NormConfig
from normlab.data import build_data
from normlab.models import MODELS, build_model, compatible_norms
from normlab.models.convpool import ConvPoolConfig
from normlab.models.lstm import LSTMConfig, NormLSTM, as_sequence
from normlab.models.mlp import MLPConfig
from normlab.norms import NORMS, recompute_batch_average_
from normlab.norms.recurrent import SequenceIdentity, StepwiseBatchNorm, build_sequence_norm

from conftest import TINY, assert_native_matches_python, call_cli

SMALL = {
    "mlp": {},
    "cnn": {"width": 8},
    "inception_lite": {"width": 16},
    "resnet": {"depth": 8},
    "convpool": {"width": 8},
    "lstm": {"hidden_size": 16},
    "custom": {"target": "factories.small_net"},
}  # GN: >= 2 groups


@pytest.fixture(scope="module")
def datasets():
    from conftest import DATA_ROOT

    cfg = DataConfig(root=DATA_ROOT, train_subset=64, test_subset=16, download=False)
    return {name: build_data(name, cfg, seed=0, device=torch.device("cpu")) for name in ("mnist", "cifar10")}


COMBOS = [(m, n, d) for m in MODELS for n in compatible_norms(m) for d in ("mnist", "cifar10")]


@pytest.mark.parametrize(("model", "norm", "dataset"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_compatible_combination_trains_five_steps(datasets, model, norm, dataset):
    data = datasets[dataset]
    torch.manual_seed(0)
    net = build_model(MODELS[model].config(**SMALL[model]), NormConfig(name=norm), data.shape, data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = data.epoch_order(0)
    for step in range(5):
        x, y = data.train_batch(order, step, 8, step)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(loss.item())
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(next(data.eval_batches("test", 16))[0])).all()


INCOMPATIBLE = [(m, n) for m in MODELS for n in NORMS if n not in compatible_norms(m)]


@pytest.mark.parametrize(("model", "norm"), INCOMPATIBLE, ids=["-".join(c) for c in INCOMPATIBLE])
def test_every_incompatible_combination_exits_2(tmp_path, model, norm):
    result = call_cli(*TINY, f"model={model}", f"norm={norm}", "max_steps=2", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: norm={norm} is not defined for model={model}; norms allowed for {model}: {compatible_norms(model)}"
    )


def test_sequences_of_images():
    x = torch.arange(2 * 3 * 4 * 5).float().view(2, 3, 4, 5)
    rows = as_sequence(x, "rows")
    assert rows.shape == (2, 4, 15) and torch.equal(rows[1, 2], torch.cat([x[1, c, 2] for c in range(3)]))
    pixels = as_sequence(x, "pixel")
    assert pixels.shape == (2, 20, 3) and torch.equal(pixels[0, 7], x[0, :, 1, 2])
    pooled = as_sequence(x, "pixel", downsample=2)  # 4x5 -> 2x2 (the odd column dropped): 4 steps
    assert pooled.shape == (2, 4, 3) and torch.equal(pooled[1, 3], x[1, :, 2:4, 2:4].mean(dim=(1, 2)))


@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
def test_a_downsampled_pixel_lstm_reads_196_steps_of_mnist(norm):
    cfg = LSTMConfig(hidden_size=8, sequence="pixel", permute=True, downsample=2)
    model = build_model(cfg, NormConfig(name=norm), (1, 28, 28), 10, seed=0)
    assert sorted(model.order.tolist()) == list(range(196))
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_permuted_sequence_is_fixed_by_the_seed():
    cfg = LSTMConfig(hidden_size=8, sequence="pixel", permute=True)
    a, b, c = (build_model(cfg, NormConfig(name="none"), (1, 28, 28), 10, seed=s) for s in (0, 0, 1))
    assert sorted(a.order.tolist()) == list(range(784))
    assert torch.equal(a.order, b.order) and not torch.equal(a.order, c.order)


def test_norm_lstm_with_identity_norms_is_nn_lstm():
    torch.manual_seed(0)
    ref = nn.LSTM(6, 5, batch_first=True, bias=False)
    cell = NormLSTM(6, 5, steps=7, make_norm=lambda f, steps: SequenceIdentity())

    def reorder(w):  # nn.LSTM's rows are (i, f, g, o); NormLSTM's (i, f, o, g)
        return torch.cat([w[:10], w[15:], w[10:15]])

    with torch.no_grad():
        cell.w_x.weight.copy_(reorder(ref.weight_ih_l0))
        cell.w_h.weight.copy_(reorder(ref.weight_hh_l0))
    x = torch.randn(3, 7, 6)
    torch.testing.assert_close(cell(x), ref(x)[0][:, -1])


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_initial_state_noise_is_for_training_only(norm):
    """model.h0_noise primes h_0 with Gaussian noise in training (Cooijmans et al. 2016); eval starts from zeros,
    so it is deterministic and the same as a model built without noise."""
    noisy, plain = (
        build_model(LSTMConfig(hidden_size=8, h0_noise=s), NormConfig(name=norm), (1, 28, 28), 10, 0)
        for s in (0.5, 0.0)
    )
    plain.load_state_dict(noisy.state_dict())
    noisy, plain = noisy.core, plain.core
    x = torch.randn(6, 3, 28)  # 3 rows: the recurrent cores, on a sequence short enough to remember h_0
    noisy.eval(), plain.eval()
    torch.testing.assert_close(noisy(x), plain(x))
    noisy.train(), plain.train()
    torch.manual_seed(1)
    first = noisy(x)
    torch.manual_seed(2)
    assert not torch.allclose(first, noisy(x)), "the noise is drawn afresh in training"
    assert not torch.allclose(first, plain(x))


def layer_norm_lstm_reference(x, cell):
    """Ba et al. 2016, Eq. 20-22, step by step with F.layer_norm."""
    h = x.new_zeros(x.shape[0], cell.hidden_size)
    c = torch.zeros_like(h)
    nx, nh, nc = cell.norm_x, cell.norm_h, cell.norm_c
    for t in range(x.shape[1]):
        a = F.layer_norm(x[:, t] @ cell.w_x.weight.T, (4 * cell.hidden_size,), nx.weight, nx.bias)
        a = a + F.layer_norm(h @ cell.w_h.weight.T, (4 * cell.hidden_size,), nh.weight, nh.bias)
        i, f, o, g = a.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (cell.hidden_size,), nc.weight, nc.bias))
    return h


def test_layer_norm_lstm_matches_the_paper_step_by_step():
    torch.manual_seed(1)
    cell = NormLSTM(6, 5, steps=7, make_norm=lambda f, steps: build_sequence_norm("layer", f, steps))
    for p in cell.parameters():
        p.data.normal_()
    x = torch.randn(3, 7, 6)
    torch.testing.assert_close(cell(x), layer_norm_lstm_reference(x, cell), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_norm_lstm_compiled_step_matches_the_python_loop(norm, mode):
    """NormLSTM's one-call-per-step kernels (norms.native) against its loop of torch ops: the same output,
    gradients of the input and every parameter, and running statistics, in float64."""
    torch.manual_seed(3)
    cell = NormLSTM(6, 5, steps=7, make_norm=lambda f, steps: build_sequence_norm(norm, f, steps)).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_()
        for b in cell.buffers():
            b.uniform_(0.5, 1.5)
    cell.train(mode == "train")
    x, upstream = torch.randn(4, 7, 6, dtype=torch.double), torch.randn(4, 5, dtype=torch.double)
    assert_native_matches_python(cell, x, upstream)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_norm_lstm_compiled_step_gradcheck(norm):
    torch.manual_seed(4)
    cell = NormLSTM(3, 2, steps=3, make_norm=lambda f, steps: build_sequence_norm(norm, f, steps)).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_()
    names = [n for n, _ in cell.named_parameters()]

    def fn(x, *ps):
        return torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x,))

    x = torch.randn(4, 3, 3, dtype=torch.double, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert type(fn(x, *params).grad_fn).__name__ == "NormLSTMStepNativeBackward"
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


def test_stepwise_batch_norm_keeps_statistics_per_step():
    torch.manual_seed(2)
    bn = StepwiseBatchNorm(4, steps=3, momentum=0.5)
    assert torch.all(bn.weight == 0.1)  # Cooijmans et al.: gamma initialised to 0.1
    with torch.no_grad():  # a gain and bias per feature, shared over time
        bn.weight.uniform_(0.5, 2.0), bn.bias.normal_()
    gamma, beta = bn.weight.detach().clone(), bn.bias.detach().clone()
    x = torch.randn(8, 3, 4) * torch.tensor([1.0, 5.0, 10.0]).view(1, 3, 1)
    grad = torch.randn(8, 3, 4)
    y_all = bn(x)  # every step at once
    all_grads = torch.autograd.grad(y_all, [bn.weight, bn.bias], grad)
    for t in range(3):
        xt = x[:, t]
        expected = (xt - xt.mean(0)) / torch.sqrt(xt.var(0, unbiased=False) + 1e-5) * gamma + beta
        torch.testing.assert_close(y_all[:, t], expected)
        torch.testing.assert_close(bn.running_mean[t], 0.5 * xt.mean(0))
        torch.testing.assert_close(bn.running_var[t], 0.5 + 0.5 * xt.var(0, unbiased=True))
    stepwise = StepwiseBatchNorm(4, steps=3, momentum=0.5)
    stepwise.load_state_dict({**bn.state_dict(), "running_mean": torch.zeros(3, 4), "running_var": torch.ones(3, 4)})
    y_steps = torch.stack([stepwise(x[:, t], t) for t in range(3)], 1)  # one step at a time: the same
    torch.testing.assert_close(y_steps, y_all)
    torch.testing.assert_close(torch.autograd.grad(y_steps, [stepwise.weight, stepwise.bias], grad), all_grads)
    torch.testing.assert_close(stepwise.running_var, bn.running_var)
    bn.eval()
    x5 = torch.randn(8, 4)
    late = (x5 - bn.running_mean[2]) / torch.sqrt(bn.running_var[2] + 1e-5) * gamma + beta
    torch.testing.assert_close(bn(x5, 5), late)  # steps beyond the last kept reuse the last


def test_recurrent_bn_batch_average_is_the_plain_average_per_step_on_every_path():
    """norm.bn_stats=batch_average for BN-LSTM: after recompute_batch_average_ each step's population mean and
    variance are the plain averages of that step's batch means and unbiased variances (the recurrent BN paper's
    estimate over the dataset), whether the layer sees every step at once or one at a time, in the full LSTM on
    its compiled and Python paths too; weights, the caller's random state (h_0 noise) and the mode are untouched,
    and the layer's momentum is restored."""
    torch.manual_seed(4)
    batches = [torch.randn(6, 3, 4) * (i + 1) + i for i in range(4)]
    expected_mean = torch.stack([b.mean(0) for b in batches]).mean(0)  # (steps, features)
    expected_var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)

    class AllSteps(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = StepwiseBatchNorm(4, steps=3, bn_stats="batch_average")

        def forward(self, x):
            return self.bn(x)

    class OneStepAtATime(AllSteps):
        def forward(self, x):
            return torch.stack([self.bn(x[:, t], t) for t in range(x.shape[1])], 1)

    for model in (AllSteps(), OneStepAtATime()):
        model.train()
        model(torch.randn(6, 3, 4) * 50)  # running averages to be replaced
        model.eval()
        assert recompute_batch_average_(model, batches) == 4 and not model.training
        torch.testing.assert_close(model.bn.running_mean, expected_mean)
        torch.testing.assert_close(model.bn.running_var, expected_var)
        assert model.bn.momentum == 0.1
    moving = AllSteps()
    moving.bn.bn_stats = "moving"
    assert recompute_batch_average_(moving, batches) == 0

    cfg = LSTMConfig(hidden_size=8, sequence="pixel", downsample=4, h0_noise=0.1)
    images = [torch.randn(5, 1, 28, 28) for _ in range(3)]
    states = []
    for use_native in (True, False):
        torch.manual_seed(0)  # the same weights on both paths
        net = build_model(cfg, NormConfig(name="batch", bn_stats="batch_average"), (1, 28, 28), 10, seed=0)
        net.core.use_native = use_native
        weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k}
        torch.manual_seed(1)  # the same h_0 noise on both paths
        rng = torch.get_rng_state()
        assert recompute_batch_average_(net.eval(), images) == 3
        assert torch.equal(torch.get_rng_state(), rng)  # h_0 noise drawn inside, not from the caller's stream
        assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())
        states.append({k: v for k, v in net.state_dict().items() if "running" in k})
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key])


def test_recurrent_bn_running_average_forgets_a_rare_input_that_the_batch_average_keeps():
    """Why the batch average: a feature that is nonzero in one image of 1,600 (a rarely inked pixel) decays to
    variance ~0 in the running average, so at eval that input is scaled by ~1/sqrt(eps) = 316; the batch average
    keeps its variance (its normalized value is then ~40: the input is that rare)."""
    batches = [torch.zeros(8, 1, 1) for _ in range(200)]
    batches[20][0] = 1.0
    outputs = {}
    for bn_stats in ("moving", "batch_average"):
        bn = StepwiseBatchNorm(1, steps=1, bn_stats=bn_stats, gain_init=1.0)
        bn.train()
        for b in batches:
            bn(b)
        recompute_batch_average_(bn, batches)
        outputs[bn_stats] = bn.eval()(torch.ones(1, 1, 1)).item()
    assert outputs["moving"] > 250 and outputs["batch_average"] < 50, outputs


def test_weight_norm_lstm_reparameterizes_both_matrices():
    net = build_model(LSTMConfig(hidden_size=8), NormConfig(name="weight"), (1, 28, 28), 10)
    names = {n for n, _ in net.named_parameters()}
    for matrix in ("weight_ih_l0", "weight_hh_l0"):
        assert f"core.lstm.parametrizations.{matrix}.original0" in names


def test_the_docs_matrix_is_the_generated_one():
    from normlab.models import compatibility_table

    from conftest import ROOT

    docs = (ROOT / "docs" / "norms-and-models.md").read_text()
    section = docs.split("<!-- matrix:start -->\n")[1].split("<!-- matrix:end -->")[0]
    assert section.strip() == compatibility_table(), "run `python scripts/models.py --docs`"


def test_the_docs_name_every_model_and_dataset():
    """The config-group table lists every model and dataset yaml, and the measured models table every built-in
    model (it is regenerated by hand: `python scripts/models.py --docs`, on an idle machine)."""
    from conftest import ROOT

    running = (ROOT / "docs" / "running.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in running.splitlines() if line.startswith("| `")}
    for group in ("model", "dataset"):
        for yaml_file in (ROOT / "conf" / group).glob("*.yaml"):
            assert f"`{yaml_file.stem}`" in rows[f"`{group}`"], f"docs' config groups lack {group}={yaml_file.stem}"
    norms_and_models = (ROOT / "docs" / "norms-and-models.md").read_text()
    measured = norms_and_models.split("<!-- models:start -->\n")[1].split("<!-- models:end -->")[0]
    for name, spec in MODELS.items():
        if spec.own_norms:
            assert f"\n| {name} |" in measured, f"the models table lacks {name}: run scripts/models.py --docs"


def test_the_bn_papers_small_gaussian_init_of_the_mlp(tmp_path):
    """model.init_std: every linear layer's weights ~ N(0, std²) (sample std within 5%), biases 0; refused for
    models it does not apply to."""
    from conftest import call_cli, compose_config

    cfg = MLPConfig(hidden=(100, 100, 100), activation="sigmoid", init_std=0.01)
    model = build_model(cfg, NormConfig(name="none"), (1, 28, 28), 10, seed=0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    for layer in linears:
        assert abs(layer.weight.std().item() - 0.01) < 5e-4 and abs(layer.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(layer.bias) == 0
    default = build_model(MLPConfig(), NormConfig(name="none"), (1, 28, 28), 10, seed=0)
    assert default.features[1].weight.std() > 0.015  # torch's default: U(±1/sqrt(784)), std 0.0206
    assert compose_config("model=mlp", "model.init_std=0.01").model.init_std == 0.01
    result = call_cli("model=cnn", "dataset=cifar10", "+model.init_std=0.01", cwd=tmp_path)  # cnn.yaml lacks the key
    assert result.returncode == 2 and "model.init_std=0.01 is not allowed for model=cnn" in result.stderr


def test_the_ln_papers_bn_baseline_normalizes_the_logits_too(tmp_path):
    """model.norm_logits: BN on the classifier's outputs as well (each logit standardized over the batch in
    training, then γ, β), the LN paper's baseline; the ln_small_batch cpu profile turns it on for BN only;
    refused for models it does not apply to."""
    from conftest import call_cli, compose_config

    cfg = MLPConfig(hidden=(32,), activation="relu", norm_logits=True)
    model = build_model(cfg, NormConfig(name="batch"), (1, 28, 28), 10, seed=0).train()
    assert model.classifier.bias is None  # BN's shift replaces it
    x = torch.randn(16, 1, 28, 28) * 3 + 5
    logits = model(x)
    assert torch.allclose(logits.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(logits.var(0, unbiased=False), torch.ones(10), atol=1e-3)
    plain = build_model(MLPConfig(hidden=(32,), activation="relu"), NormConfig(name="batch"), (1, 28, 28), 10, seed=0)
    assert isinstance(plain.logits_norm, nn.Identity) and plain.classifier.bias is not None
    assert not any(key.startswith("logits_norm") for key in plain.state_dict())  # older checkpoints still load
    for norm, expected in (("batch", True), ("layer", False)):
        composed = compose_config("experiment=ln_small_batch_cpu", f"norm={norm}")
        assert composed.model.norm_logits is expected
    result = call_cli("model=cnn", "dataset=cifar10", "+model.norm_logits=true", cwd=tmp_path)
    assert result.returncode == 2 and "model.norm_logits=True is not allowed for model=cnn" in result.stderr


def test_the_wn_papers_convpool_net():
    """model=convpool: 9 convolutions (the 7th unpadded: 8x8 -> 6x6), a norm after each, leaky ReLU (0.1), dropout
    after both pools, Gaussian input noise in training only; 1.4 M parameters at the paper's width 96."""
    from normlab.models.convpool import ConvPool

    cfg = ConvPoolConfig(width=8, activation="leaky_relu")
    net = build_model(cfg, NormConfig(name="batch"), (3, 32, 32), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1] and convs[6].padding == (0, 0)
    assert [c.out_channels for c in convs] == [8] * 3 + [16] * 6
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 9
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2
    assert all(m.negative_slope == 0.1 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    trunk = net.features[:-2]  # up to the global pool
    x = torch.randn(4, 3, 32, 32)
    assert trunk.eval()(x).shape == (4, 16, 6, 6)
    assert torch.equal(net.eval()(x), net(x))  # evaluation: no noise, no dropout
    noise = net.features[0].train()
    assert not torch.equal(noise(x), x) and abs((noise(x) - x).std().item() - 0.15) < 0.01
    paper = ConvPool((3, 32, 32), 10, 96, "leaky_relu", lambda c, kind: nn.BatchNorm2d(c), bias=False)
    assert round(sum(p.numel() for p in paper.parameters()) / 1e6, 1) == 1.4


@pytest.mark.parametrize("norm", ["none", "batch"])  # torch's nn.LSTM and normlab's NormLSTM
def test_recurrent_init_orthogonal_and_identity(tmp_path, norm):
    """model.recurrent_init, gate block by gate block: identity sets each block of W_h to I (the recurrent BN
    paper) and makes W_x's orthogonal; orthogonal makes W_h's orthogonal too; uniform keeps nn.LSTM's init."""
    from conftest import compose_config

    def weights(scheme):
        cfg = LSTMConfig(hidden_size=8, sequence="rows", recurrent_init=scheme)
        core = build_model(cfg, NormConfig(name=norm), (1, 28, 28), 10).core
        if norm == "none":
            return core.lstm.weight_ih_l0, core.lstm.weight_hh_l0
        return core.w_x.weight, core.w_h.weight

    eye = torch.eye(8)
    w_x, w_h = weights("identity")
    assert all(torch.equal(block, eye) for block in w_h.detach().chunk(4))
    for block in w_x.detach().chunk(4):  # (8, 28): orthonormal rows
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
    _, w_h = weights("orthogonal")
    for block in w_h.detach().chunk(4):
        torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
        assert not torch.allclose(block, eye)
    _, w_h = weights("uniform")
    assert w_h.abs().max() <= 1 / math.sqrt(8) and w_h.std() > 0.1
    assert compose_config("model=lstm", "model.recurrent_init=identity").model.recurrent_init == "identity"
    result = call_cli(*TINY, "model=mlp", "+model.recurrent_init=identity", cwd=tmp_path)
    assert result.returncode == 2 and "model.recurrent_init=identity is not allowed for model=mlp" in result.stderr
    result = call_cli(*TINY, "model=lstm", "model.recurrent_init=eye", cwd=tmp_path)
    assert result.returncode == 2 and "model.recurrent_init='eye' is not allowed; choose from" in result.stderr
