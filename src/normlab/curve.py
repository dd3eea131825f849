"""The training curve's window: each step's loss and number correct since the last evaluation, kept on the device
(written every step, read only at a curve point or an evaluation, so the loop never waits on the device)."""

from __future__ import annotations

import torch


class CurveWindow:
    """Steps since the last evaluation, one column each: row 0 the loss, row 1 the number correct. A curve point
    (every `log_every` steps) is the mean over the columns since the previous point; an evaluation's is the mean
    over the whole window, after which it starts over. The window is saved with the checkpoint, so a resumed run
    draws the same points."""

    def __init__(self, eval_every: int, total_steps: int, device) -> None:
        self.eval_every = eval_every
        self.stats = torch.zeros(2, min(eval_every, max(total_steps, 1)), device=device)
        self.logged = 0  # the column after the last curve point

    def resume(self, stats: torch.Tensor, step: int, log_every: int) -> None:
        """The window saved at `step`, and where its last curve point was."""
        self.stats.copy_(stats)
        self.logged = max(0, step // log_every * log_every - (step - step % self.eval_every))

    def record(self, step: int, loss: torch.Tensor, correct: torch.Tensor) -> None:
        """Step `step`'s (0-based, before it is counted) loss and number correct."""
        with torch.no_grad():
            column = step % self.eval_every
            self.stats[0, column] = loss.detach()
            self.stats[1, column] = correct

    def steps(self, step: int) -> int:
        """Columns filled after `step` steps (1-based: the step just counted): the steps since the last evaluation."""
        return (step - 1) % self.eval_every + 1

    def point(self, step: int, reduce=lambda t: t) -> tuple[torch.Tensor, torch.Tensor]:
        """After `step` steps: the whole window (summed over ranks by `reduce`) and the columns since the previous
        curve point, which the next point starts after."""
        window = reduce(self.stats[:, : self.steps(step)].clone())
        recent = window[:, self.logged :]
        self.logged = 0 if step % self.eval_every == 0 else self.steps(step)
        return window, recent
