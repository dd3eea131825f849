"""SN paper: with smaller batches, the learned importance moves from BN to IN and LN."""

from normlab.claims import Analysis, Claim
from normlab.claims.plots import new_figure, save
from normlab.runs import group, mean, mean_std

BATCHES = (32, 8, 2)


def bn_importance(run) -> float:
    """Mean over layers of the BN share of the mean and the variance mixtures."""
    layers = run.summary["norm_layers"].values()
    return mean((v["mean_bn"] + v["var_bn"]) / 2 for v in layers)


def analyze(runs, out):
    groups = group(runs, lambda r: r.config["batch_size"])
    numbers, rows = {}, []
    for bs in BATCHES:
        rs = groups.get(bs, [])
        shares = {
            k: mean(mean(v[k] for v in r.summary["norm_layers"].values()) for r in rs)
            for k in ("mean_in", "mean_ln", "mean_bn", "var_in", "var_ln", "var_bn")
        }
        numbers[f"bs{bs}"] = {
            "bn_importance": mean(bn_importance(r) for r in rs),
            **shares,
            "acc": mean(r.final_acc for r in rs),
        }
        rows.append(
            f"| {bs} | "
            + " | ".join(f"{shares[k]:.3f}" for k in shares)
            + f" | {mean_std([r.final_acc for r in rs], 100)} |"
        )
    table = (
        "Importance weights (softmax), mean over layers and seeds:\n\n| batch | mean IN | mean LN | mean BN | var IN | "
        "var LN | var BN | test acc % |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nThe paper (ResNet-50 ImageNet top-1, (GPUs, batch/GPU)): SN 76.9 at (8,32) and 75.6 at (8,2); BN 76.4 "
        "and 65.3. \"The smaller the minibatch, the smaller BN's weight and the larger IN's and LN's.\""
    )
    lo, hi = numbers["bs2"]["bn_importance"], numbers["bs32"]["bn_importance"]
    verdict = "reproduced" if lo < hi else "not_reproduced"
    reason = f"Mean BN importance over layers: {lo:.3f} at batch 2 vs {hi:.3f} at batch 32."
    layers = list(runs[0].summary["norm_layers"])
    fig, axes = new_figure(1, 2, figsize=(11, 3.8), sharey=True)
    width = 0.8 / len(BATCHES)
    for ax, kind in zip(axes, ("mean", "var")):
        for i, bs in enumerate(BATCHES):
            rs = groups.get(bs, [])
            values = [mean(r.summary["norm_layers"][layer][f"{kind}_bn"] for r in rs) for layer in layers]
            ax.bar([j + i * width for j in range(len(layers))], values, width, label=f"batch {bs}")
        ax.set_xticks([j + width for j in range(len(layers))], [f"layer {j}" for j in range(len(layers))])
        ax.set_title(f"BN share of the {kind} per layer")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("softmax importance of BN")
    return Analysis(table, numbers, verdict, reason, [save(fig, out / "bn_importance_per_layer.png")])


CLAIM = Claim(
    name="sn_switches",
    title="Switchable Norm moves importance away from BN at small batches (SN paper)",
    paper=(
        "Luo et al. 2018 (https://arxiv.org/abs/1806.10779), ResNet-50 ImageNet top-1 % at (GPUs, batch/GPU): "
        "(8,32) BN 76.4 / GN 75.9 / SN 76.9; (8,2) BN 65.3 / GN 75.9 / SN 75.6. From the authors' write-up: smaller "
        "batches give BN a smaller weight and IN/LN larger ones; at batch 1 BN's weight is zero."
    ),
    setup=(
        "`cnn` (width 16) with `norm=switchable` on CIFAR-10 (crop+flip), batch 32, 8 and 2, lr 0.1·N/32 (SGD "
        "momentum 0.9), 1 epoch over the first 10k images, 2 seeds (quick). Importances are the softmaxed "
        "`mean_weight` / `var_weight` of each of the 4 SN layers at the end of training."
    ),
    criterion="Reproduced when the mean BN importance over layers (mean of its mean and variance shares, mean over "
    "seeds) is lower at batch 2 than at batch 32.",
    analyze=analyze,
)
