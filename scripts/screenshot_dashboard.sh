#!/usr/bin/env bash
# The README's TensorBoard screenshots, taken as a person would see them: the card's sweep (norm x batch size) made
# short, at 2 seeds, with `normlab compare --tensorboard`'s answer beside its curves, TensorBoard on a loopback port, headless Chromium (Debian's `chromium` package, installed here with apt-get
# where it is missing and this user may). Writes results/dashboard/*.png. Needs NORMLAB_DATA (MNIST).
#   bash scripts/screenshot_dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! command -v chromium > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium > /dev/null
  else
    echo "error: chromium is not installed: run 'sudo apt-get install -y chromium' (Debian) and try again" >&2
    exit 2
  fi
fi
work=$(mktemp -d)
trap 'kill $tb 2>/dev/null || true; rm -rf "$work"' EXIT
# the card's `-m norm=batch,group batch_size=2,8,32` at seeds 1 and 2, 300 steps each on the MNIST MLP at lr 0.1
# per 32 images (about two minutes in all); TensorBoard pointed at the sweep's own folder, as docs/sweeps.md says
(cd "$work" && "$OLDPWD/$PY" "$OLDPWD/run.py" -m norm=batch,group batch_size=2,8,32 seed=1,2 lr=0.1 \
  lr_batch_size=32 model.activation=relu max_steps=300 eval_every=25 progress=false > /dev/null)
sweep=$(dirname "$(ls -d "$work"/runs/default/*/*/ | head -1)")
"$PY" - "$sweep" <<'EOF'
import json, sys
from pathlib import Path
statuses = [json.loads(p.read_text())["status"] for p in Path(sys.argv[1]).glob("*/summary.json")]
if statuses != ["completed"] * 12:
    sys.exit(f"error: the sweep's runs ended {statuses}, not 12 completed: no screenshot taken")
EOF
"$PY" -m normlab compare "$sweep" --by batch_size --tensorboard > /dev/null
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m tensorboard.main --logdir "$sweep" --host 127.0.0.1 --port "$port" --load_fast=false > /dev/null 2>&1 &
tb=$!
sleep 10
mkdir -p results/dashboard
# a loaded machine draws TensorBoard's charts only with swiftshader's WebGL and ~30 s of virtual time
for view in custom_scalars hparams images; do
  chromium --headless=new --no-sandbox --enable-unsafe-swiftshader --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$work/chromium" \
    --window-size=1800,900 --virtual-time-budget=30000 --screenshot="results/dashboard/$view.png" \
    "http://127.0.0.1:$port/#$view" > /dev/null 2>&1
done
echo "wrote results/dashboard/custom_scalars.png results/dashboard/hparams.png results/dashboard/images.png"
