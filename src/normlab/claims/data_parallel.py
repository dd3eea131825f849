"""The data-parallel study (no paper's claim; scripts/distributed_study.py runs it): global batch 16 as 1 process
× 16 or 4 processes × 4, BN local vs BN synced vs GN, and single-process BN at batch 4 (what local BN sees).
One decided test under the protocol, paired by seed: synced BN beats local BN (margin 0). The pairs that compute
the same function (they differ in float summation order only) are equivalence tests against ±DELTA, as their
hypothesis is equality; the rest are reported differences."""

from normlab.claims.base import tests_table
from normlab.runs import arm_equivalence, arm_test, mean_std

VARIANTS = [  # label, processes, overrides
    ("1x16 BN", 1, ["norm=batch"]),
    ("1x4 BN", 1, ["norm=batch", "batch_size=4", "lr=0.0125"]),
    ("1x16 GN", 1, ["norm=group"]),
    ("4x4 BN local", 4, ["norm=batch"]),
    ("4x4 BN synced", 4, ["norm=batch", "norm.sync=true"]),
    ("4x4 GN", 4, ["norm=group"]),
]
MARGIN = 0.0  # points: synced BN better than local BN, stated before running
DELTA = 1.0  # points: "the same function" = final test accuracies within ±DELTA (equivalence, 90% interval)
CRITERION = (
    f"Decided: synced BN − local BN at 4x4, final test accuracy, paired by seed, margin {MARGIN:+g}. Equivalence "
    f"(the same function, ±{DELTA:g} point): synced BN at 4x4 vs BN at 1x16, GN at 4x4 vs GN at 1x16. Reported "
    "differences: local BN at 4x4 vs BN at batch 4 in one process (the same statistics, not the same function), "
    "GN − local BN at 4x4, BN at batch 16 − at batch 4 in one process."
)


def analyze(runs: dict) -> dict:
    """`runs`: variant label -> its runs (one per seed). Returns the table, the decided test and the reported."""

    def measure(run):
        return run.endpoint("test_acc")

    def test(name, favoured, baseline, margin=MARGIN):
        return arm_test(
            f"{name}, final test accuracy (points)", runs.get(favoured, []), runs.get(baseline, []), measure, margin
        )

    def same(name, first, second):
        return arm_equivalence(
            f"{name}, final test accuracy (points; within ±{DELTA:g})",
            runs.get(first, []),
            runs.get(second, []),
            measure,
            DELTA,
        )

    tests = [test("4x4: synced BN − local BN", "4x4 BN synced", "4x4 BN local")]
    reported = [
        same("synced BN at 4x4 − single-process BN at batch 16 (the same function)", "4x4 BN synced", "1x16 BN"),
        same("GN at 4x4 − GN at 1x16 (the same function)", "4x4 GN", "1x16 GN"),
        test(
            "local BN at 4x4 − single-process BN at batch 4 (the same BN statistics; not the same function: "
            "4x4 averages gradients over 16 images, batch 4 takes 4x the steps at lr / 4)",
            "4x4 BN local",
            "1x4 BN",
        ),
        test("4x4: GN − local BN", "4x4 GN", "4x4 BN local"),
        test("single process: BN at batch 16 − at batch 4", "1x16 BN", "1x4 BN"),
    ]
    rows = [
        f"| {label} | {nproc} | {mean_std([r.endpoint('test_acc') for r in runs[label]])} | "
        f"{sum(r.status == 'completed' for r in runs[label])}/{len(runs[label])} |"
        for label, nproc, _ in VARIANTS
        if runs.get(label)
    ]
    table = (
        "| variant | processes | final test acc % | completed |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\n"
        + tests_table(tests, reported)
    )
    return {"table": table, "tests": tests, "reported": reported}
