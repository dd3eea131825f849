"""LN paper Sec. 6.6, Fig. 6: LN is robust to the batch size; BN is not (permutation-invariant MNIST)."""

from normlab.claims import Analysis, Claim
from normlab.claims.plots import curves
from normlab.runs import group, mean, mean_std


def analyze(runs, out):
    groups = group(runs, lambda r: (r.config["norm"]["name"], r.config["batch_size"]))
    numbers, rows = {}, []
    for norm in ("batch", "layer"):
        accs = {bs: [r.final_acc for r in groups.get((norm, bs), [])] for bs in (128, 4)}
        change = abs(mean(accs[128]) - mean(accs[4]))
        numbers[norm] = {"acc_bs128": mean(accs[128]), "acc_bs4": mean(accs[4]), "change": change}
        rows.append(f"| {norm} | {mean_std(accs[128], 100)} | {mean_std(accs[4], 100)} | {100 * change:.2f} |")
    table = "| norm | test acc % at batch 128 | at batch 4 | abs. change (points) |\n|---|---|---|---|\n" + "\n".join(
        rows
    )
    verdict = "reproduced" if numbers["layer"]["change"] < numbers["batch"]["change"] else "not_reproduced"
    reason = (
        f"LN's accuracy changed {100 * numbers['layer']['change']:.2f} points between batch 128 and 4, "
        f"BN's {100 * numbers['batch']['change']:.2f}."
    )
    labelled = {f"{n} bs{b}": v for (n, b), v in sorted(groups.items())}
    plots = [curves(labelled, out / "test_accuracy.png", "784-1000-1000-10 MLP, Adam: test accuracy")]
    return Analysis(table, numbers, verdict, reason, plots)


CLAIM = Claim(
    name="ln_small_batch",
    title="LN is robust to the batch size, BN is not (LN paper, Sec. 6.6, Fig. 6)",
    paper=(
        "Ba, Kiros & Hinton 2016 (https://arxiv.org/abs/1607.06450), Fig. 6: permutation-invariant MNIST, "
        '784-1000-1000-10, Adam, batch 128 (left) and 4 (right): "layer normalization is robust to the batch-sizes '
        'and exhibits a faster training convergence comparing to batch normalization" (curves only, no numbers).'
    ),
    setup=(
        "`mlp` with `model.hidden=[1000,1000]`, relu, MNIST (60k training images, the paper uses 55k), Adam lr 1e-3 "
        "at both batch sizes, batch 128 vs 4 × batch, layer; 1 epoch (quick) or 20 (full), 3 seeds. The norm is on "
        "the hidden layers only, as in the paper."
    ),
    criterion="Reproduced when LN's final test accuracy changes less between batch 128 and 4 than BN's does.",
    analyze=analyze,
)
