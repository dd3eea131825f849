#!/usr/bin/env bash
# The README's TensorBoard screenshots, taken as a person would see them: a small sweep, TensorBoard on a
# loopback port, headless Chromium (Debian's `chromium` package). Writes results/dashboard/*.png.
#   bash scripts/screenshot_dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
work=$(mktemp -d)
trap 'kill $tb 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$work" && "$OLDPWD/$PY" "$OLDPWD/run.py" -m norm=none,batch,group,layer model.activation=relu max_steps=600 \
  eval_every=50 progress=false > /dev/null)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m tensorboard.main --logdir "$work/runs" --host 127.0.0.1 --port "$port" --load_fast=false > /dev/null 2>&1 &
tb=$!
sleep 10
mkdir -p results/dashboard
for view in custom_scalars hparams; do
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/chromium" --window-size=1400,900 \
    --virtual-time-budget=20000 --screenshot="results/dashboard/$view.png" "http://127.0.0.1:$port/#$view" \
    > /dev/null 2>&1
done
echo "wrote results/dashboard/custom_scalars.png results/dashboard/hparams.png"
