#!/usr/bin/env bash
# The README's times, taken by running its commands as written (in a fresh folder, so nothing is skipped) and
# written to results/readme_times.md with the machine and its load beside them. Needs NORMLAB_DATA.
#   bash scripts/readme_times.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=${PY:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
commands=(
  "run.py norm=batch batch_size=2 dataset=cifar10 model=cnn max_steps=50"
  "run.py norm=group batch_size=2"
  "run.py -m norm=batch,group batch_size=2,8,32 epochs=1 data.train_subset=5000 lr_batch_size=32"
  "run.py -m norm=batch,group,layer batch_size=4,32 seed=1,2,3 lr_batch_size=32 epochs=1 data.train_subset=10000"
)
load=$(cut -d' ' -f1 /proc/loadavg)
rows=""
for command in "${commands[@]}"; do
  SECONDS=0
  # shellcheck disable=SC2086  # the command's words are its arguments
  (cd "$work" && "$PY" "$root"/$command progress=false > /dev/null 2>&1)
  rows+="| \`python $command\` | $SECONDS |"$'\n'
done
{
  echo "# How long the README's commands take"
  echo
  echo "Made by \`bash scripts/readme_times.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores ($(uname -m)), load"
  echo "average $load when it started, torch threads as each run sets them; wall seconds of each command as written,"
  echo "with progress=false (a fresh folder, so nothing is skipped; start-up and imports included). Beside another"
  echo "training job on the same cores each takes several times as long."
  echo
  echo "| command | seconds |"
  echo "|---|---|"
  printf '%s' "$rows"
} > results/readme_times.md
cat results/readme_times.md
