"""Each claim's pilot runs (scripts/pilots.py): lines of overrides on conf/experiment/<claim>_pilot.yaml at seed
0, which no report counts, looking for a setup in which the claim's tests can speak. Kept apart from the claim
modules, whose last change dates their criteria (a pilot added later does not change a test)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Pilots:
    why: str  # what the pilots look for
    lines: tuple[str, ...]  # each a pilot: overrides on the claim's pilot experiment
    claim: str = ""  # the claim whose report shows them ("": the set's own name)
    experiment: str = ""  # conf/experiment/<experiment>.yaml ("": <claim>_pilot)
    table: str = "pilots.md"  # results/<claim>/<table>

    def claim_of(self, name: str) -> str:
        return self.claim or name

    def experiment_of(self, name: str) -> str:
        return self.experiment or f"{self.claim_of(name)}_pilot"


PILOTS = {
    "bn_small_batch": Pilots(
        why="BN and GN at batch 32, looking for a CPU setup in which GN ends within 2 points of BN (the precondition "
        'of "GN beats BN at batch 2"; the GN paper: 0.5): the cpu reference\'s net and recipe (3 epochs of the 45k '
        "split, SGD momentum 0.9, lr 0.1, weight decay 1e-4, cosine), without augmentation, on MNIST, ResNet-20 "
        "with γ = 0 in each block's last norm, and a 3.3x longer schedule.",
        lines=(
            "model.width=16",
            "model.width=16 data.augment=false",
            "dataset=mnist model.width=16 data.augment=false epochs=1",
            "model=resnet model.zero_init_residual=true",
            "model.width=16 epochs=10",
        ),
    ),
    "bn_small_batch_batch2": Pilots(
        why='BN and GN at batch 32 and 2 on MNIST (no augmentation), looking for a CPU regime in which "GN beats BN '
        "at batch 2\" can speak: GN competing at batch 32 (error at most 1.25x BN's; the GN paper: 1.02x), BN failing "
        "at batch 2, GN not budget-limited. The cpu reference's recipe (SGD momentum 0.9, lr 0.1·N/32, weight decay "
        "1e-4, cosine) with: width 16 for 1 epoch, width 32 with 8 channels per group for 1 epoch, width 16 for 3 "
        "epochs, and 10 epochs of a 5k-image subset.",
        lines=(
            "model.width=16 epochs=1",
            "model.width=32 ++norm.group_size=8 epochs=1",
            "model.width=16 epochs=3",
            "model.width=16 data.train_subset=5000 epochs=10",
        ),
        claim="bn_small_batch",
        experiment="bn_small_batch_pilot_batch2",
        table="pilots_batch2.md",
    ),
    "bn_convergence": Pilots(
        why="The `paper` profile's plain net (no norm) stays near chance, where the paper's Fig. 1(a) baseline "
        "learns. Each pilot changes one of the profile's choices (plain SGD at lr 0.1, weights ~ N(0, 0.01²), "
        "pixels in [0, 1]): the profile as it is (lr=0.1), torch's default init, momentum 0.9, standardized "
        "pixels, a 10x lr.",
        lines=("lr=0.1", "model.init_std=null", "optimizer.momentum=0.9", "data.standardize=true", "lr=1.0"),
    ),
}
