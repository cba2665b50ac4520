#!/usr/bin/env bash
# `make gpu-wheels`: fetch, on a machine with internet, the wheels that `make gpu-check` needs on a GPU
# machine that has a CUDA build of PyTorch in its python3 but no internet (a lent cloud GPU, a cluster
# node). gpu-check imports, beyond torch and the usual scientific stack (numpy, scipy, PyYAML, tqdm,
# filelock, pytest), only these packages: pydantic (with pydantic-core and its small helpers) and
# torchdeq. They are taken at the versions this venv tested, for the target's Python and x86-64 Linux,
# into .whl/ (git-ignored); scripts/gpu_check.sh installs them into a scratch folder there.
#   Usage: scripts/gpu_wheels.sh [PYTHON_VERSION]   (default 3.12; the target's `python3 --version`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
target=${1:-3.12}
dest=${GPU_WHEELS:-.whl}
packages=(pydantic pydantic-core annotated-types typing-inspection typing-extensions torchdeq)
pins=$("$PY" - "${packages[@]}" <<'PYEOF'
import importlib.metadata as md, sys
print(" ".join(f"{name}=={md.version(name)}" for name in sys.argv[1:]))
PYEOF
)
mkdir -p "$dest"
rm -f "$dest"/*.whl  # one version of each: two versions of a package stop the offline install
# manylinux tags from 2_17 to 2_39, newest first: pip matches each tag exactly.
platforms=()
for n in 39 35 34 31 28 27 24 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# --no-deps: the list above is the whole closure (pydantic-core pins come from this venv's pydantic).
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
  "${platforms[@]}" -d "$dest" $pins
echo "wrote $(ls "$dest"/*.whl | wc -l) wheels to $dest/ for Python $target: $pins"
