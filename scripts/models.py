"""Parameter counts and training throughput (images/s) of every model at its default size, and the model x norm
compatibility matrix. `--docs` rewrites the generated sections of docs/norms-and-models.md.

    python scripts/models.py            # print the tables
    python scripts/models.py --docs     # and write them into docs/norms-and-models.md
"""

import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from normlab.argtypes import command_parser, positive_int
from normlab.config import NormConfig
from normlab.datasets import DATASETS
from normlab.models import MODELS, build_model, compatibility_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "norms-and-models.md"  # where the generated tables live


def images_per_s(model: torch.nn.Module, shape, batch_size: int, steps: int, warmup: int = 3) -> float:
    """Training throughput: forward, backward and an SGD step on random data, median of `steps` timings."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch_size, *shape)
    y = torch.randint(0, 10, (batch_size,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch_size / sorted(times)[len(times) // 2]


def model_table(batch_size: int, steps: int) -> str:
    lines = [
        "| model | norm | params (MNIST) | params (CIFAR-10) | images/s MNIST | images/s CIFAR-10 |",
        "|---|---|---|---|---|---|",
    ]
    for name in [m for m, spec in MODELS.items() if spec.own_norms]:  # not model=custom: it is yours
        cfg = MODELS[name].config()  # conf/model/<name>.yaml's defaults (a test keeps them equal)
        norm = NormConfig(name="batch")
        cells = []
        for dataset in ("mnist", "cifar10"):
            torch.manual_seed(0)
            spec = DATASETS[dataset]
            model = build_model(cfg, norm, spec.shape, spec.num_classes)
            params = sum(p.numel() for p in model.parameters())
            cells.append((params, images_per_s(model, spec.shape, batch_size, steps)))
        lines.append(
            f"| {name} | batch | {cells[0][0]:,} | {cells[1][0]:,} | {cells[0][1]:,.0f} | {cells[1][1]:,.0f} |"
        )
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOCS.name} has no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    parser = command_parser(__doc__)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--steps", type=positive_int, default=10, help="timed training steps per model and dataset")
    parser.add_argument("--docs", action="store_true", help="write the tables into docs/norms-and-models.md")
    args = parser.parse_args()
    matrix = compatibility_table()
    models = model_table(args.batch_size, args.steps)
    note = (
        f"Measured by `python scripts/models.py --docs` (batch {args.batch_size}, training step incl. backward, "
        f"median of {args.steps}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU)."
    )
    print(matrix, models, note, sep="\n\n")
    if args.docs:
        text = replace_section(DOCS.read_text(), "matrix", matrix)
        DOCS.write_text(replace_section(text, "models", models + "\n\n" + note))


if __name__ == "__main__":
    main()
