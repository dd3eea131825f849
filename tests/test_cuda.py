"""On a CUDA device: every norm gives the CPU's numbers, runs under bf16 autocast (`amp=true`), and a training
run with device=auto lands on the GPU. Skipped where no GPU is present (CI has none); run on a lent GPU."""

import copy

import pytest
import torch

from normlab.models import compatible_norms
from normlab.norms import build_norm
from normlab.trainer import train

from conftest import compose_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NORMS_2D = [n for n in compatible_norms("cnn") if n not in ("none", "weight")]


def perturbed(name: str) -> torch.nn.Module:
    """A layer whose parameters are away from their initial values (BIN gates inside (0, 1), SN logits unequal)."""
    torch.manual_seed(0)
    layer = build_norm(name, 16, "2d")
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand_like(p) * 0.8 + 0.1)
    return layer


def forward_backward(layer, x, g):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.backward(g.to(y.dtype))
    return y.float(), x.grad.float(), [p.grad.float() for p in layer.parameters()]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", NORMS_2D)
def test_norm_on_cuda_matches_cpu(name, training):
    cpu = perturbed(name).train(training)
    gpu = copy.deepcopy(cpu).cuda()
    x, g = torch.randn(4, 16, 8, 8) * 2 + 1, torch.randn(4, 16, 8, 8)
    want, got = forward_backward(cpu, x, g), forward_backward(gpu, x.cuda(), g.cuda())
    for a, b in zip([want[0], want[1], *want[2]], [got[0], got[1], *got[2]], strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
    for key, buf in cpu.state_dict().items():
        torch.testing.assert_close(gpu.state_dict()[key].cpu(), buf, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NORMS_2D)
def test_norm_under_bf16_autocast_stays_close_to_float32(name):
    layer = perturbed(name).cuda()
    x = (torch.randn(8, 16, 8, 8, device="cuda") * 2 + 1).bfloat16()  # as a conv's output under autocast
    g = torch.randn(8, 16, 8, 8, device="cuda")
    want = forward_backward(copy.deepcopy(layer), x.float(), g)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = forward_backward(layer, x, g)
    if name == "switchable":  # its hand-written Function computes in float32 (custom_fwd)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    for a, b in zip([want[0], want[1], *want[2]], [got[0], got[1], *got[2]], strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=0.05, atol=0.05 * a.abs().max().item())


def test_training_run_with_device_auto_and_amp_uses_the_gpu(tmp_path):
    cfg = compose_config(
        "dataset=cifar10", "model=cnn", "norm=switchable", "batch_size=32", "amp=true", "max_steps=40", "eval_every=20"
    )
    summary = train(cfg, tmp_path)
    assert summary["device"].startswith("cuda") and summary["status"] == "completed"
    assert summary["train_loss"] < 2.3  # ln(10) = 2.30 at chance: it learned something in 40 steps
