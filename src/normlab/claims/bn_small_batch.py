"""GN paper Tables 1-2: BN's error rises sharply at small batches; GN's (and LN's, IN's) does not."""

from normlab.claims import Analysis, Claim
from normlab.claims.plots import lines
from normlab.runs import group, mean, mean_std

BATCHES = (32, 16, 8, 4, 2)
NORMS = ("batch", "group", "layer", "instance", "switchable")
MARGIN = 2.0  # percentage points


def analyze(runs, out):
    groups = group(runs, lambda r: (r.config["norm"]["name"], r.config["batch_size"]))

    def errors(norm, bs):
        return [100 * (1 - r.final_acc) for r in groups.get((norm, bs), []) if r.final_acc is not None]

    header = "| norm | " + " | ".join(f"bs {b}" for b in BATCHES) + " | rise 32→2 |\n|---|" + "---|" * 6
    rows, numbers = [], {}
    for norm in NORMS:
        errs = {b: errors(norm, b) for b in BATCHES}
        rise = mean(errs[2]) - mean(errs[32])
        numbers[norm] = {f"err_bs{b}": mean(errs[b]) for b in BATCHES} | {"rise": rise}
        rows.append(f"| {norm} | " + " | ".join(mean_std(errs[b], digits=1) for b in BATCHES) + f" | {rise:+.1f} |")
    table = "Test error (%), mean ± std over seeds:\n\n" + header + "\n" + "\n".join(rows)
    table += (
        "\n\nThe paper's Table 2 (ResNet-50, ImageNet, val error %): BN 23.6 / 23.7 / 24.8 / 27.3 / 34.7 (rise +11.1), "
        "GN 24.1 / 24.2 / 24.0 / 24.2 / 24.1 (rise 0.0); Table 1 at batch 32: BN 23.6, LN 25.3, IN 28.4, GN 24.1."
    )
    gap = numbers["batch"]["rise"] - numbers["group"]["rise"]
    numbers["bn_rise_minus_gn_rise"] = gap
    verdict = "reproduced" if gap > MARGIN else "not_reproduced" if gap <= 0 else "inconclusive"
    reason = (
        f"From batch 32 to 2, BN's error rose {numbers['batch']['rise']:+.1f} points and GN's "
        f"{numbers['group']['rise']:+.1f} (difference {gap:+.1f}, margin {MARGIN})."
    )
    plot = lines(
        BATCHES,
        {norm: [numbers[norm][f"err_bs{b}"] for b in BATCHES] for norm in NORMS},
        out / "error_vs_batch.png",
        "CIFAR-10 CNN: error vs batch size (cf. GN paper Fig. 1)",
        "batch size (lr = 0.1·N/32, same epochs)",
        "test error (%)",
        log2_reversed=True,
    )
    return Analysis(table, numbers, verdict, reason, [plot])


CLAIM = Claim(
    name="bn_small_batch",
    title="BN fails at small batches, GN does not (GN paper, Tables 1-2)",
    paper=(
        "Wu & He 2018 (https://arxiv.org/abs/1803.08494), Table 2: ResNet-50 ImageNet val error at batch/GPU "
        "32/16/8/4/2 — BN 23.6/23.7/24.8/27.3/34.7, GN 24.1/24.2/24.0/24.2/24.1; lr 0.1·N/32, same epochs. "
        "Table 1 at batch 32: BN 23.6, LN 25.3, IN 28.4, GN 24.1."
    ),
    setup=(
        "`cnn` (width 16, ~60k parameters) on CIFAR-10 with crop+flip, batch 32/16/8/4/2 × batch, group (32 groups "
        "or the largest divisor), layer, instance, switchable; SGD momentum 0.9, lr 0.1·N/32, the same number of "
        "epochs at every batch size. Quick: 1 epoch over the first 10k training images, 1 seed (25 runs); cpu: 2 "
        "epochs of 20k, 1 seed; full: 30 epochs of 50k, width 32, step decay, 3 seeds. Test error on all 10k "
        "test images."
    ),
    criterion=(
        f"Reproduced when BN's test error rises from batch 32 to batch 2 by more than {MARGIN} points more than "
        "GN's does; not reproduced when it rises no more than GN's; inconclusive in between."
    ),
    analyze=analyze,
)
