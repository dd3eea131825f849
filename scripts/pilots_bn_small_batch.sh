#!/usr/bin/env bash
# bn_small_batch's pilots (experiment=bn_small_batch_pilot: BN and GN at batch 32, seed 0, the cpu recipe: 3
# epochs of the 45k split, SGD momentum 0.9, lr 0.1, weight decay 1e-4, cosine), each looking for a CPU setup in
# which GN ends within 2 points of BN (the claim's precondition). Finished pilots are skipped; the table is
# results/bn_small_batch/pilots.md. Run from the repo root: bash scripts/pilots_bn_small_batch.sh [--jobs N]
set -euo pipefail
jobs=${2:-2}
python=${PYTHON:-python}
pilots=(
  "model.width=16"                                                   # the cpu reference's net
  "model.width=16 data.augment=false"                                # without crop+flip (BN's regulariser)
  "dataset=mnist model.width=16 data.augment=false epochs=1"         # an easier task (its ceiling compresses)
  "model=resnet model.zero_init_residual=true"                       # ResNet-20, γ = 0 in each block's last norm
  "model.width=16 epochs=10"                                         # a 3.3x longer schedule
)
for pilot in "${pilots[@]}"; do
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 $python run.py -m experiment=bn_small_batch_pilot $pilot progress=false \
    hydra/launcher=parallel hydra.launcher.n_jobs="$jobs"
done
{
  echo "# bn_small_batch: pilots for the precondition (GN within 2 points of BN at batch 32)"
  echo
  echo "Made by \`bash scripts/pilots_bn_small_batch.sh\` at commit $(git rev-parse --short HEAD): BN and GN at batch 32,"
  echo "seed 0 (not a reported seed), the cpu recipe (3 epochs of the 45k split, SGD momentum 0.9, lr 0.1, weight"
  echo "decay 1e-4, cosine decay) with each pilot's overrides, which are the columns that differ. Accuracies in [0, 1]."
  echo
  $python scripts/summarize.py runs/bn_small_batch_pilot --markdown
} > results/bn_small_batch/pilots.md
echo "wrote results/bn_small_batch/pilots.md"
