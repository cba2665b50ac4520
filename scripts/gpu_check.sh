#!/usr/bin/env bash
# `make gpu-check` on a GPU machine without internet whose python3 already holds a CUDA build of
# PyTorch: installs the wheels of .whl/ (made beforehand by `make gpu-wheels` on a machine with
# internet) into a scratch folder, puts it and this checkout on PYTHONPATH, and runs the check with
# that python3. Nothing is installed into python3 itself, and no venv is made (it would have no torch).
#   Usage: scripts/gpu_check.sh [--out DIR]      PYTHON=... picks another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
wheels=${GPU_WHEELS:-.whl}
site=${GPU_SITE:-${TMPDIR:-/tmp}/ddeqs-gpu-site}
if compgen -G "$wheels/*.whl" >/dev/null; then
  if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl; then
    ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "gpu-check: the wheels in $wheels/ do not install into $PYTHON (Python $ver); make them for it on a machine" \
         "with internet: make gpu-wheels GPU_PYTHON=$ver" >&2
    exit 2
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec "$PYTHON" -m ddeqs.bench.gpu_check "$@"
