"""BN paper Sec. 4.1, Fig. 1: with BN the MNIST MLP reaches higher test accuracy sooner, and the inputs to its
sigmoids keep a stable distribution."""

import math

from normlab.claims import Analysis, Claim
from normlab.claims.plots import curves, new_figure, save
from normlab.runs import fmt_steps, group, mean, mean_std

TARGETS = (0.95, 0.97)


def analyze(runs, out):
    by_norm = group(runs, lambda r: r.config["norm"]["name"])
    numbers, rows = {}, []
    for norm in ("none", "batch"):
        rs = by_norm.get(norm, [])
        steps = {t: mean(r.steps_to(t) for r in rs) for t in TARGETS}
        numbers[norm] = {
            **{f"steps_to_{round(t * 100)}": (None if math.isinf(v) else v) for t, v in steps.items()},
            "final_acc": mean(r.final_acc for r in rs),
            "seeds": len(rs),
        }
        rows.append(
            f"| {norm} | {fmt_steps(steps[0.95])} | {fmt_steps(steps[0.97])} | "
            f"{mean_std([r.final_acc for r in rs], 100)} | {len(rs)} |"
        )
    table = "| norm | steps to 95% | steps to 97% | final test accuracy (%) | seeds |\n|---|---|---|---|---|\n"
    table += "\n".join(rows)
    table += "\n\nSteps are the mean over seeds of the first evaluation at or above the target."

    def steps(norm, t):
        v = numbers[norm][f"steps_to_{round(t * 100)}"]
        return math.inf if v is None else v

    faster = all(steps("batch", t) < steps("none", t) for t in TARGETS)
    better = numbers["batch"]["final_acc"] >= numbers["none"]["final_acc"]
    if all(math.isinf(steps(n, t)) for n in ("none", "batch") for t in TARGETS):
        verdict = "inconclusive"
    else:
        verdict = "reproduced" if faster and better else "not_reproduced"
    reason = (
        f"BN reached 95%/97% at step {fmt_steps(steps('batch', 0.95))}/{fmt_steps(steps('batch', 0.97))} vs "
        f"{fmt_steps(steps('none', 0.95))}/{fmt_steps(steps('none', 0.97))} without; final accuracy "
        f"{numbers['batch']['final_acc']:.4f} vs {numbers['none']['final_acc']:.4f}."
    )
    plots = [
        curves(
            {n: by_norm.get(n, []) for n in ("none", "batch")},
            out / "fig1a_test_accuracy.png",
            "Fig. 1(a): test accuracy (mean over seeds)",
        )
    ]
    fig, axes = new_figure(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, norm in zip(axes, ("none", "batch")):
        run = sorted(by_norm.get(norm, []), key=lambda r: r.config["seed"])[0]
        steps_ = [r["step"] for r in run.metrics]
        for p in ("p15", "p50", "p85"):
            ax.plot(steps_, [r["last_hidden_input"][p][0] for r in run.metrics], label=p)
        ax.set_title(f"Fig. 1({'b' if norm == 'none' else 'c'}): {'without' if norm == 'none' else 'with'} BN")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("input to a last-layer sigmoid (unit 0)")
    plots.append(save(fig, out / "fig1bc_sigmoid_input_percentiles.png"))
    return Analysis(table, numbers, verdict, reason, plots)


CLAIM = Claim(
    name="bn_convergence",
    title="BN trains the MNIST MLP faster (BN paper, Sec. 4.1, Fig. 1)",
    paper=(
        "Ioffe & Szegedy 2015 (https://arxiv.org/abs/1502.03167), Sec. 4.1, Fig. 1: 3 fully connected hidden layers of "
        '100 sigmoid units, batch 60, 50,000 steps. Fig. 1(a): "the batch-normalized network enjoys the higher test '
        'accuracy" (curves only; no final number and no learning rate or optimizer given; y-axis 0.7–1). '
        "Fig. 1(b, c): the 15/50/85th percentiles of one last-layer sigmoid's input drift without BN and stay stable "
        "with it."
    ),
    setup=(
        "`mlp` (3×100 sigmoid units, norm before each sigmoid), MNIST, batch 60, SGD lr 0.1 momentum 0.9 (the "
        "paper states no optimizer), `norm=none` vs `norm=batch`, 6,000 steps and 3 seeds (quick) or the paper's "
        "50,000 steps and 5 seeds (full; about 10 minutes on this CPU), evaluation on the 10k test images every "
        "250 steps. Fig. 1(b, c) follows unit 0 of the last hidden layer over 1,000 test images."
    ),
    criterion=(
        "Reproduced when BN needs fewer steps than no-BN to reach both 95% and 97% test accuracy (mean over seeds; "
        "never reaching counts as infinity) and its final accuracy is at least no-BN's; inconclusive when neither "
        "reaches either target."
    ),
    analyze=analyze,
)
