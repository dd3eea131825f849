"""BIN paper: learned gates mix BN and IN per channel; BIN beats BN on CIFAR-10 classification."""

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.plots import new_figure, save
from normlab.protocol import Statement
from normlab.runs import arm_test, group, mean, mean_std

BIN_BEATS_BN = Statement(
    "a_bin_beats_bn",
    "CIFAR-10 (ResNet-110) top-1 accuracy: BN 93.72 ± 0.18, BIN 94.29 ± 0.09",
    "Nam & Kim 2018, Table 1 (the authors' repository)",
    "BIN − BN, final test accuracy > 0",
)

PAPER = {"batch": "93.72 ± 0.18", "instance": "—", "batch_instance": "94.29 ± 0.09"}
MARGIN = 0.0  # points: the paper claims BIN beats BN (+0.57 on CIFAR-10)
LEARNS = 50.0  # % best validation accuracy of BN, mean over seeds (5x chance): a baseline that learns, for BIN to beat
MOVED = 0.05  # BIN's gates start at 1 (pure BN): they must end this far below it on average, or BIN computed BN


def analyze(runs, out):
    groups = group(runs, lambda r: r.config["norm"]["name"])
    numbers, rows = {}, []
    for norm in ("batch", "instance", "batch_instance"):
        accs = [r.endpoint("test_acc") for r in groups.get(norm, [])]
        numbers[norm] = {"acc": mean(accs), "seeds": len(accs)}
        rows.append(f"| {norm} | {mean_std(accs)} | {PAPER[norm]} | {len(accs)} |")
    bin_runs = groups.get("batch_instance", [])
    final_gates = (
        {
            layer: mean(r.summary["norm_layers"][layer]["gate_mean"] for r in bin_runs)
            for layer in bin_runs[0].summary["norm_layers"]
        }
        if bin_runs
        else {}
    )
    numbers["final_gate_mean_per_layer"] = final_gates
    tests = [
        arm_test(
            "BIN − BN, final test accuracy (points)",
            bin_runs,
            groups.get("batch", []),
            lambda r: r.endpoint("test_acc"),
            MARGIN,
        )
    ]
    reported = [
        arm_test(
            "BIN − IN, final test accuracy (points)",
            bin_runs,
            groups.get("instance", []),
            lambda r: r.endpoint("test_acc"),
        )
    ]
    table = (
        "| norm | test acc % (ours) | paper, ResNet-110 CIFAR-10 top-1 % | seeds |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nFinal mean gate ρ per layer (1 = pure BN, 0 = pure IN), mean over seeds: "
        + ", ".join(f"`{k}` {v:.3f}" for k, v in final_gates.items())
        + "\n\n"
        + tests_table(tests, reported)
    )
    preconditions = [
        protocol.precondition(
            "BN learns: its best validation accuracy, mean over seeds (%)",
            100 * mean(max(r.curve("val_acc")[1], default=0.0) for r in groups.get("batch", [])),
            at_least=LEARNS,
            need="an lr or a length at which the BN net learns CIFAR-10: against a baseline near chance any norm wins",
        ),
    ]
    gates_moved = protocol.precondition(
        "BIN's gates left their start: 1 − the final mean gate ρ, mean over layers (1 = pure BN)",
        1 - mean(final_gates.values()) if final_gates else float("nan"),
        at_least=MOVED,
        scope=BIN_BEATS_BN.key,
        need="gates that learn (a larger gate lr, more steps): with every gate at 1 BIN computes BN, and a gain over "
        "BN is not BIN's mixing",
    )
    preconditions.append(gates_moved)
    t = tests[0]
    reason = "".join(
        f"not testable here: {p.name} is {p.value:.1f}, the precondition needs {p.required}. "
        for p in preconditions
        if not p.holds
    )
    reason += (
        f"BIN {numbers['batch_instance']['acc']:.2f}% vs BN {numbers['batch']['acc']:.2f}%: {t.estimate:+.2f} points "
        f"[{t.ci95[0]:+.2f}, {t.ci95[1]:+.2f}] ({t.outcome})."
    )
    fig, ax = new_figure(figsize=(6, 4))
    if bin_runs:
        run = sorted(bin_runs, key=lambda r: r.config["seed"])[0]
        for layer in final_gates:
            ax.plot(
                [r["step"] for r in run.metrics],
                [r["norm_layers"][layer]["gate_mean"] for r in run.metrics],
                label=layer,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("mean gate ρ")
    ax.set_title("BIN gates per layer over training (seed 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plots = [save(fig, out / "gates_over_training.png")]
    findings = [protocol.decide(BIN_BEATS_BN, [t for t in tests if t.statement == "primary"], [gates_moved])]
    return Analysis(
        table, numbers, tests, reason, plots, reported=reported, preconditions=preconditions, findings=findings
    )


CLAIM = Claim(
    name="bin_gates",
    title="Batch-Instance Norm: learned gates and accuracy vs BN (BIN paper)",
    paper=(
        "Nam & Kim 2018 (https://arxiv.org/abs/1805.07925), ResNet-110 top-1 %: CIFAR-10 BN 93.72 ± 0.18 vs BIN "
        "94.29 ± 0.09; CIFAR-100 74.26 vs 75.88. Gates ρ start at 1 (pure BN), are clipped to [0, 1] and train at "
        "10× the learning rate; for classification most channels stay close to BN."
    ),
    setup=(
        "`cnn` (width 16) on CIFAR-10 with crop+flip, SGD lr 0.05 momentum 0.9, batch 64, batch / instance / "
        "batch_instance (gate lr ×10, no decay), 5 seeds; quick: 2 epochs of the first 15k images with cosine decay, "
        "no weight decay; cpu (tuned: the reference): 6 epochs of the 45k training split with cosine decay and the "
        "authors' weight decay, 1e-4 on every parameter but the gates (`optimizer.decay_all=true`) — minutes of a "
        "4-layer CNN, not ResNet-110's 164 epochs with lr steps. full (a GPU job, not run here): the authors' recipe "
        "on ResNet-110, lr 0.1, batch 128, weight decay 1e-4 on every parameter but the gates "
        "(`optimizer.decay_all=true`), lr × 0.1 at epochs 81 and 122 of 164."
    ),
    criterion=(
        "One test, paired by seed, margin 0: BIN's final test accuracy is higher than BN's. Precondition of the "
        f"whole claim: BN learns (its best validation accuracy, mean over seeds, at least {LEARNS:g}%; a BN that "
        "learns and then diverges counts as chance in the test). Precondition of the statement: BIN's gates left "
        f"their start, 1 − their final mean over layers at least {MOVED:g} (gates that stay at 1 compute BN, and a "
        "gain over BN is then not BIN's)."
    ),
    analyze=analyze,
    reference="cpu/tuned",
    reference_why=(
        "the cpu profile (6 epochs under the authors' weight decay) with each arm at its own learning rate (tuned "
        "on validation at seed 5, not reported: lr × 1/3, 1, 3, extended where an arm chose an edge), 5 seeds: one "
        "lr for all arms could favour any. Every arm chose 9x (lr 0.45; the grid extended to 27x, inside), BIN's "
        "choice over 3x within one seed's noise (0.22 points against a spread of 0.81 over seeds); BN learns (76% "
        "best validation accuracy, the precondition asks 50). 6 epochs of a 4-layer CNN end far below "
        "ResNet-110's 94%"
    ),
)
