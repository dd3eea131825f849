"""The loss landscape along the current gradient (Santurkar et al. 2018, Sec. 3.1, Fig. 4): from the weights w and
the gradient g of one training batch, steps of several sizes η along −g, and at each the batch's loss and gradient.
`landscape=true` logs them at every evaluation (trainer), and leaves the run's training exactly as it was."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the step sizes, in multiples of the run's lr (the paper gives none in the text; ours): from a quarter of the step
# the optimizer takes to four times it
STEP_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)


def loss_and_grad(model: nn.Module, params: list[nn.Parameter], x, y, seed: int) -> tuple[float, list[torch.Tensor]]:
    """The batch's loss in training mode and its gradient w.r.t. `params` (never written into .grad); the same
    `seed` before every call gives a noisy layer (norm=batch_noisy) the same noise at every point."""
    torch.manual_seed(seed)
    loss = F.cross_entropy(model(x), y)
    return loss.item(), [g.detach() for g in torch.autograd.grad(loss, params)]


def norm(tensors: list[torch.Tensor]) -> float:
    return torch.stack([(t.double() ** 2).sum() for t in tensors]).sum().sqrt().item()


def along_gradient(model: nn.Module, x, y, lr: float, seed: int = 0) -> dict[str, float]:
    """Fig. 4's three measurements at w, for steps η = lr × STEP_MULTIPLES along −g (g: the batch's gradient at w):
    `loss_range`, max − min of L(w − ηg) over the steps and w itself (Fig. 4(a), "loss landscape"); `grad_change`,
    the largest ‖∇L(w − ηg) − g‖ (Fig. 4(b), "gradient predictiveness"); `beta`, the largest ‖∇L(w − ηg) − g‖ /
    ‖ηg‖ (Fig. 4(c), "effective β-smoothness"); and `grad_norm`, ‖g‖. The weights, buffers (BN's running
    statistics) and random state are restored after, so training goes on as if nothing was measured."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [x.device] if x.device.type == "cuda" else []
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=devices):
        loss0, g0 = loss_and_grad(model, params, x, y, seed)
        start = [p.detach().clone() for p in params]
        losses, changes, betas, size = [loss0], [], [], norm(g0)
        for multiple in STEP_MULTIPLES:
            eta = lr * multiple
            with torch.no_grad():
                for p, w, g in zip(params, start, g0):
                    p.copy_(w - eta * g)
            loss, grad = loss_and_grad(model, params, x, y, seed)
            change = norm([a - b for a, b in zip(grad, g0)])
            losses.append(loss)
            changes.append(change)
            betas.append(change / (eta * size) if size > 0 else 0.0)
    model.load_state_dict(saved)
    model.train(was_training)
    return {"loss_range": max(losses) - min(losses), "grad_change": max(changes), "beta": max(betas), "grad_norm": size}
