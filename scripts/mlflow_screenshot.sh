#!/usr/bin/env bash
# Screenshot of the MLflow UI in a real (headless) browser: checks that runs show their Dataset,
# Source and Models columns and nest under their grid parents. Only 127.0.0.1 traffic.
#
#   scripts/mlflow_screenshot.sh [STORE_URI] [OUT_PNG] [EXPERIMENT]
#     STORE_URI   default sqlite:///results/mlflow/mlflow.db (after `make demo`)
#     OUT_PNG     default docs/mlflow-ui.png
#     EXPERIMENT  default ddeqs-classification
#   make mlflow-screenshot        # the same with the defaults
#
# Needs: mlflow (the project's environment) and Chromium (Debian/Ubuntu: apt-get install chromium).
# The PNG is reduced to a 256-colour palette with Pillow (a matplotlib dependency) to stay small.
set -euo pipefail

STORE="${1:-sqlite:///results/mlflow/mlflow.db}"
OUT="${2:-docs/mlflow-ui.png}"
EXPERIMENT="${3:-ddeqs-classification}"
PY="${PYTHON:-python}"
MLFLOW="${MLFLOW:-mlflow}"
CHROMIUM="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$CHROMIUM" ] || { echo "no Chromium found (apt-get install chromium)" >&2; exit 1; }

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
LOG="$(mktemp)"
PROFILE_DIR="$(mktemp -d)"

# own process group, so that stopping it also stops the server's workers
setsid "$MLFLOW" ui --backend-store-uri "$STORE" --host 127.0.0.1 --port "$PORT" >"$LOG" 2>&1 &
SERVER=$!
cleanup() { kill -- "-$SERVER" 2>/dev/null || true; rm -rf "$PROFILE_DIR" "$LOG"; }
trap cleanup EXIT

for _ in $(seq 120); do
  curl -fs "$URL/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 1
done
EXP_ID="$(curl -fs "$URL/api/2.0/mlflow/experiments/get-by-name?experiment_name=$EXPERIMENT" \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])')" \
  || { echo "experiment $EXPERIMENT not found in $STORE" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
RAW="$PROFILE_DIR/raw.png"
# --virtual-time-budget: let the single-page app load and render its run table before the shot
"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$PROFILE_DIR" \
  --window-size=1900,800 --virtual-time-budget=20000 --screenshot="$RAW" \
  "$URL/#/experiments/$EXP_ID/runs" >/dev/null 2>&1
"$PY" - "$RAW" "$OUT" <<'EOF'
import sys
from PIL import Image

img = Image.open(sys.argv[1]).convert("RGB")
img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(sys.argv[2], optimize=True)
EOF
echo "wrote $OUT ($(du -k "$OUT" | cut -f1) KiB) from $URL/#/experiments/$EXP_ID/runs"
