"""scripts/bench.py runs end to end and writes what its README promises (speed itself is never asserted)."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import call_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("part", [pytest.param("norms", marks=pytest.mark.slow), "lstm"])  # norms: 3 sizes x 13
def test_bench_part_writes_its_ratios(part, tmp_path):
    result = call_script("bench.py", "--only", part, "--repeats", "1", "--results", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "bench" / f"bench-{part}.json").read_text())[part]
    if part == "norms":
        assert {r["batch_size"] for r in rows} == {2, 32, 128}
        twins = {r["norm"] for r in rows if "ratio_to_torch_twin" in r}
        assert twins == {"batch", "group", "layer", "instance"}
        compiled = {"batch_instance", "switchable"}  # and on CPU their Python Functions beside them
        assert compiled | {f"{n} (Python)" for n in compiled} <= {r["norm"] for r in rows}
        assert all(r["ms"] > 0 and r["ratio_to_bn"] > 0 for r in rows)
    else:
        ratios = {r["cell"]: r["ratio_to_nn_lstm"] for r in rows}
        cells = {"layer-LSTM", "batch-LSTM"}
        assert set(ratios) == {"nn.LSTM", *cells, *(f"{c} (Python)" for c in cells)} and ratios["nn.LSTM"] == 1.0


def test_the_tradeoff_quotes_the_accuracies_of_bn_small_batchs_reference(tmp_path):
    """A quick report beside the reference must not be what the trade-off quotes (it once did)."""
    from normlab.claims import registry

    reference = registry()["bn_small_batch"].reference
    for profile, err in (("", 60.0), (reference, 30.0)):
        directory = tmp_path / "bn_small_batch" / profile
        directory.mkdir(parents=True, exist_ok=True)
        numbers = {"batch": {"err_bs32": err, "err_bs2": err + 5}}
        (directory / "summary.json").write_text(json.dumps({"profile": profile or "quick", "numbers": numbers}))
    result = call_script("bench.py", "--only", "tradeoff", "--repeats", "1", "--results", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["norm"]: r for r in json.loads((tmp_path / "bench" / "bench-tradeoff.json").read_text())["tradeoff"]}
    assert rows["batch"]["test_acc_bs32"] == pytest.approx(0.70) and rows["batch"]["test_acc_bs2"] == pytest.approx(
        0.65
    )
    assert f"({reference} profile" in (tmp_path / "tradeoff" / "README.md").read_text()


@pytest.mark.slow  # compiles twelve models (about two minutes here)
def test_bench_compile_part_times_eager_and_compiled_steps(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--only",
            "compile",
            "--repeats",
            "1",
            "--results",
            tmp_path,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = json.loads((tmp_path / "bench" / "bench-compile.json").read_text())["compile"]
    norms = ("batch", "batch_instance", "switchable")
    layouts = ("NCHW", "channels_last")
    assert sorted((r["case"], r["layout"]) for r in rows) == sorted(
        (f"cnn {n} bs{b}", layout) for n in norms for b in (2, 32) for layout in layouts
    )
    assert all(r["eager_ms"] > 0 and r["compiled_ms"] > 0 and r["compile_s"] > 0 for r in rows)


def test_bench_measurements_times_a_run_with_and_without_landscape_and_eval_train(tmp_path, monkeypatch):
    from normlab.commands import bench
    from normlab.models.mlp import MLPConfig

    monkeypatch.setattr(bench, "MEASURED_CASES", [("mlp/MNIST bs60, eval every 10", "mnist", MLPConfig(), 60, 20, 10)])
    assert bench.main(["--only", "measurements", "--repeats", "1", "--results", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "bench" / "bench-measurements.json").read_text())["measurements"]
    assert {"off_s", "landscape_s", "eval_train 5000_s"} <= set(row) and all(row[k] > 0 for k in row if k != "case")
    table = (tmp_path / "bench" / "measurements.md").read_text()
    assert "| mlp/MNIST bs60, eval every 10 |" in table and "landscape ×" in table


def test_bench_cadence_sets_the_chosen_evaluations_beside_the_earlier_rule(tmp_path, monkeypatch):
    """A validation-only evaluation is cheaper than one that also reads the test set: at the same share, more of
    them, the first sooner."""
    from normlab.commands import bench
    from normlab.models.mlp import MLPConfig

    monkeypatch.setattr(bench, "CADENCE_CASES", [("mlp/MNIST group bs2", "mnist", MLPConfig(), "group", 2, 27_500)])
    monkeypatch.setattr(bench, "bench_cadence", functools.partial(bench.bench_cadence, steps=100))
    assert bench.main(["--only", "cadence", "--repeats", "1", "--results", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "bench" / "bench-cadence.json").read_text())["cadence"]
    assert row["now"]["evaluations"] == 6 and row["before"]["evaluations"] == 2  # docs/running.md's numbers
    assert row["now"]["first_s"] < row["before"]["first_s"] and 0 < row["now"]["share"] < 1
    assert "| mlp/MNIST group bs2 | " in (tmp_path / "bench" / "cadence.md").read_text()
