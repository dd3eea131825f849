"""The training curve's window (normlab.curve) against the points written out: each curve point the mean of the
steps since the previous one, each evaluation the mean of the steps since the last evaluation, and a window
resumed from a checkpoint at any step drawing the same points as one never stopped."""

import pytest
import torch

from normlab.curve import CurveWindow

EVAL_EVERY, LOG_EVERY, TOTAL = 7, 3, 23
LOSSES = torch.arange(1.0, TOTAL + 1) ** 0.5  # step i's loss (0-based), all different
CORRECT = torch.arange(TOTAL) % 5


def expected() -> list[tuple[int, float, float]]:
    """(step, mean loss since the last point, mean loss since the last evaluation) at each point, written out."""
    points, last_point, last_eval = [], 0, 0
    for step in range(1, TOTAL + 1):
        at_eval = step % EVAL_EVERY == 0 or step == TOTAL
        if step % LOG_EVERY == 0 or at_eval:
            points.append((step, LOSSES[last_point:step].mean().item(), LOSSES[last_eval:step].mean().item()))
            last_point = step
        if at_eval:
            last_eval = last_point = step
    return points


def flat(points) -> list[float]:
    return [value for point in points for value in point]


def draw(window: CurveWindow, start: int, stop: int) -> list[tuple[int, float, float]]:
    points = []
    for step in range(start, stop):
        window.record(step, LOSSES[step], CORRECT[step])
        counted = step + 1
        if counted % LOG_EVERY == 0 or counted % EVAL_EVERY == 0 or counted == TOTAL:
            whole, recent = window.point(counted)
            points.append((counted, recent[0].mean().item(), whole[0].mean().item()))
            assert whole.shape[1] == window.steps(counted)
    return points


def test_each_point_is_the_mean_since_the_last_and_each_evaluation_the_mean_since_the_last_evaluation():
    got = draw(CurveWindow(EVAL_EVERY, TOTAL, "cpu"), 0, TOTAL)
    assert [p[0] for p in got] == [p[0] for p in expected()]
    assert flat(got) == pytest.approx(flat(expected()))


@pytest.mark.parametrize("stop", range(1, TOTAL))
def test_a_window_resumed_at_any_step_draws_the_same_points(stop):
    first = CurveWindow(EVAL_EVERY, TOTAL, "cpu")
    before = draw(first, 0, stop)
    resumed = CurveWindow(EVAL_EVERY, TOTAL, "cpu")
    resumed.resume(first.stats.clone(), stop, LOG_EVERY)
    assert flat(before + draw(resumed, stop, TOTAL)) == pytest.approx(flat(expected()))
