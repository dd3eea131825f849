"""LN paper (Ba et al. 2016): layer-normalized RNNs train faster. Tested as an LN-LSTM against the LSTM on MNIST
read as 28 rows of 28 pixels: a vector per step, which LN's input term needs (one pixel per step defeats it)."""

from normlab import protocol
from normlab.claims.base import Analysis, Claim, tests_table
from normlab.claims.lstm import TARGET, table, validation_plot
from normlab.protocol import Statement
from normlab.runs import arm_test, common_steps, group, mean, steps_test

FASTER = Statement(
    "a_ln_trains_faster",
    "Empirically, we show that layer normalization can substantially reduce the training time compared with "
    "previously published techniques.",
    "Ba, Kiros & Hinton 2016, abstract; Sec. 6",
    "LN-LSTM − LSTM, the validation curve's mean over evaluations > 0",
)

MARGIN = 0.0  # points: "trains faster" = a higher validation curve over the run
LEARNS = 50.0  # % validation accuracy at best, mean over seeds: the LSTM learns (chance: 10%)
ROOM = 90.0  # % validation accuracy at the first evaluation, mean over seeds: the LSTM has a curve to speed up
NORMS = ("none", "layer")


def analyze(runs, out):
    groups = group(runs, lambda r: r.config["norm"]["name"])
    plain, ln = groups.get("none", []), groups.get("layer", [])
    grid = common_steps(runs)
    budget = max(grid, default=0)
    tests = [
        arm_test(
            "LN-LSTM − LSTM, mean validation accuracy over the run (points)",
            ln,
            plain,
            lambda r: r.curve_mean("val_acc", grid),
            MARGIN,
        ),
    ]
    reported = [
        arm_test("final test accuracy: LN-LSTM − LSTM (points)", ln, plain, lambda r: r.endpoint("test_acc")),
        steps_test(f"steps to {TARGET:.0%} validation accuracy: LSTM − LN-LSTM", ln, plain, TARGET, budget),
    ]
    preconditions = [
        protocol.precondition(
            "the LSTM learns: its best validation accuracy, mean over seeds (%)",
            100 * mean(max(r.curve("val_acc")[1], default=0.0) for r in plain) if plain else float("nan"),
            at_least=LEARNS,
            need="an lr or a length at which the plain LSTM learns the task",
        ),
        protocol.precondition(
            "the LSTM's validation accuracy at the first evaluation, mean over seeds (%)",
            100 * mean(r.curve("val_acc")[1][0] for r in plain if r.metrics) if plain else float("nan"),
            at_most=ROOM,
            need="evaluations early enough (or a task hard enough) that there is a curve to speed up",
        ),
    ]
    numbers, text = table({n: groups[n] for n in NORMS if n in groups}, grid, {}, "paper")
    failed = [p for p in preconditions if not p.holds]
    reason = "".join(
        f"not testable here: {p.name} is {p.value:.1f}, the precondition needs {p.required}. " for p in failed
    )
    reason += f"LN-LSTM − LSTM over the run: {tests[0].estimate:+.2f} points ({tests[0].outcome})."
    plots = [validation_plot({n: groups[n] for n in NORMS if n in groups}, out, runs)]
    findings = [protocol.decide(FASTER, tests)]
    return Analysis(
        text + "\n\n" + tests_table(tests, reported),
        numbers,
        tests,
        reason,
        plots,
        reported=reported,
        findings=findings,
        preconditions=preconditions,
    )


CLAIM = Claim(
    name="ln_rnn",
    title="A layer-normalized LSTM trains faster (LN paper)",
    paper=(
        "Ba et al. 2016 (https://arxiv.org/abs/1607.06450), Sec. 3.1 and 6: LN for RNNs, the statistics of each "
        "time step's summed inputs, LN(W_h h_{t-1}) + LN(W_x x_t) in the LSTM (eq. 20-22); \"RNNs benefit the "
        'most", LN-LSTMs converge faster (their Figs. 2-6: order embeddings, reading comprehension, skip-thoughts, '
        "DRAW). The paper ran no MNIST classifier, so it gives no number to compare with."
    ),
    setup=(
        "`lstm` with 100 hidden units, batch 64, Adam (the LN paper's optimizer in most of its experiments), "
        "gradient clipping at 1, h_0 primed with noise (std 0.1) in training; norms none (nn.LSTM) and layer "
        "(LN-LSTM, LN on W_x·x_t and W_h·h_{t-1} per step and on the cell, as eq. 20-22). MNIST read as 28 rows "
        "of 28 pixels, a vector input per step as the paper's tasks have: with one pixel per step (the recurrent-BN "
        "paper's task, bn_lstm), W_x·x_t is x_t·w for the 4H gate units, and LN(x_t·w) = sign(x_t)·LN(w): LN's "
        "input term would only see whether a pixel is above the mean. quick: 800 steps, evaluated every 100, "
        "lr 1e-3. cpu: 2,400 steps, evaluated every 200 (its tuned report is the reference). full: 20 epochs "
        "(GPU). 5 seeds."
    ),
    criterion=(
        f"Primary, paired by seed, margin {MARGIN:g}: LN-LSTM − LSTM in mean validation accuracy over the run (the "
        "normalized area under the validation curve: a faster-training net is higher over the run). Final test "
        f"accuracy and steps to {TARGET:.0%} are reported beside it. Preconditions of the whole claim: the LSTM "
        f"learns (best validation accuracy, mean over seeds, at least {LEARNS:g}%) and has a curve to speed up "
        f"(its validation accuracy at the first evaluation at most {ROOM:g}%)."
    ),
    analyze=analyze,
    reference="cpu/tuned",
    reference_why=(
        "the cpu profile (2,400 steps, 3x the quick profile's) with each arm at its own learning rate (tuned on "
        "validation at seed 5, not reported: both arms chose 3e-3, 3x the paper's, the grid extended to 9x, inside), "
        "5 seeds: one lr for both arms could favour either. Near the task's ceiling: the LSTM is at 89.7% "
        "validation accuracy at the first evaluation (step 200; the precondition allows at most 90%) and ends at 97.6%"
    ),
)
