"""Group Norm in torchvision's ResNet-18, trained on your own tensors by normlab's trainer (same logs, checkpoints
and summary.json as `python run.py`). Replace `make_data` with your data and `make_net` with your model.

    python examples/resnet18_group_norm.py                 # -> runs/examples/resnet18-group/
    tensorboard --logdir runs/examples

The same from the command line, with the factories named by their import path:

    python run.py model=custom model._target_=examples.resnet18_group_norm.make_net \
        dataset=custom dataset._target_=examples.resnet18_group_norm.make_data \
        norm=group norm.num_groups=32 batch_size=16 lr=0.01 max_steps=200 data.val_size=200
"""

import argparse
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing
import normlab  # noqa: E402


def make_net(num_classes: int) -> torch.nn.Module:
    """Your model, built with whatever norms it has (ResNet-18 comes with BatchNorm2d): normlab swaps them."""
    return torchvision.models.resnet18(num_classes=num_classes)


def make_data(n: int = 1200, classes: int = 4, seed: int = 0) -> dict:
    """A stand-in for your data: 3x32x32 float images of `classes` classes, each class a fixed smooth random
    pattern (4x4, upsampled) under pixel noise. Any {"train": (images, labels), "test": (images, labels)} of
    tensors or arrays will do."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(classes, 3, 4, 4, generator=g)
    patterns = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = 0.5 * patterns[labels] + torch.randn(n, 3, 32, 32, generator=g)
    split = n * 5 // 6
    return {"train": (images[:split], labels[:split]), "test": (images[split:], labels[split:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/examples/resnet18-group")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("overrides", nargs="*", help="more key=value overrides, as on the command line")
    args = parser.parse_args()
    overrides = [
        "norm=group",
        "norm.num_groups=32",  # the GN paper's G = 32 (ResNet-18 has 64-512 channels per layer)
        "batch_size=16",
        "lr=0.01",  # SGD with momentum 0.9; at 0.05 this net diverges early here and stays at chance
        f"max_steps={args.steps}",
        f"eval_every={max(args.steps // 4, 1)}",
        "data.val_size=200",
        *args.overrides,
    ]
    summary = normlab.train(args.run_dir, overrides, model=make_net, data=make_data())
    print(
        f"{summary['status']}: val_acc {summary['val_acc']:.3f}, test_acc {summary['test_acc']:.3f} "
        f"after {summary['steps']} steps · logs: {summary['run_dir']}"
    )


if __name__ == "__main__":
    main()
