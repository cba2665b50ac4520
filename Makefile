# Two user commands: `make demo` and `make test`. Both create .venv and install
# everything on a fresh machine (torch first, pinned in constraints.txt, so pip
# does not pull a CUDA build; open3d's Debian dependency libusb when apt exists).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Results root of every profile; the demo (the digits runs of the cpu profile) writes results/demo/.
RESULTS ?= results
DEMO_RESULTS := $(RESULTS)/demo
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg

.PHONY: install test test-fast demo paper clean-results mlflow-screenshot dvc-snapshot dvc-restore gpu-check gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo ">> installing libusb-1.0-0 (needed by open3d)"; \
	    apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	  else echo "!! open3d needs libusb-1.0 (Debian/Ubuntu: sudo apt-get install libusb-1.0-0)"; fi; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# On a machine with a CUDA GPU (<= 8 minutes): CUDA tests, bench step fast vs naive at batch 64 and 200
# iterations, a short digits training on cuda, the MNIST-pc-partial epoch estimate, the attention kernels per
# SDPA backend (which solver.attention=auto takes on CUDA), the bf16 tolerance study (bench bf16); report in $$OUT
# or results/gpu-check/ (docs/benchmarks.md, "GPU"). Without CUDA it stops at once with one line.
# With .whl/ present and no venv (a GPU machine without internet whose python3 has a CUDA PyTorch), it
# runs there through scripts/gpu_check.sh instead of making a venv; `make gpu-wheels` fills .whl/ beforehand.
# GPU_CHECK_ARGS: e.g. "--only cuda-tests" to rerun one part after a fix.
GPU_CHECK_ARGS ?=
gpu-check:
	@if [ ! -x $(PY) ] && ls .whl/*.whl >/dev/null 2>&1; then bash scripts/gpu_check.sh $(GPU_CHECK_ARGS); \
	 else $(MAKE) --no-print-directory install && $(PY) -m ddeqs.bench.gpu_check $(GPU_CHECK_ARGS); fi

# The few wheels gpu-check needs beyond a CUDA PyTorch image (pydantic, torchdeq), for Python
# $(GPU_PYTHON) on x86-64 Linux, into .whl/ (git-ignored), at the versions this venv tested.
GPU_PYTHON ?= 3.12
gpu-wheels: $(STAMP)
	PY=$(PY) bash scripts/gpu_wheels.sh $(GPU_PYTHON)

demo: $(STAMP)
	DDEQS_CLAIMS_SUMMARY=0 $(VENV)/bin/snakemake --profile profiles/local --configfile params/cpu.yaml params/demo.yaml --cores 2 all
	@echo
	@$(VENV)/bin/ddeqs paper claims --summary --json $(DEMO_RESULTS)/claims.json
	@echo
	@echo "Tables and figures: $(DEMO_RESULTS)/  (overview: $(DEMO_RESULTS)/README.md, claims: $(DEMO_RESULTS)/claims.md; the paper writes results/paper/)"
	@echo "Browse the runs:    $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db  (experiments ddeqs-demo-*)"

paper: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/local all

# Headless-Chromium screenshot of the MLflow UI on the demo store (docs/mlflow-ui.png); needs chromium.
mlflow-screenshot: $(STAMP)
	PYTHON=$(PY) MLFLOW=$(VENV)/bin/mlflow scripts/mlflow_screenshot.sh sqlite:///results/mlflow/mlflow.db docs/mlflow-ui.png

# DVC (docs/pipeline.md, "DVC"): results/$(PROFILE), the MLflow store and the prepared data into the
# DVC cache as snapshots/$(PROFILE) (then: git commit snapshots/$(PROFILE).dvc, dvc push); in
# another clone, after dvc pull, copy them back (never overwriting) and mark the DAG up to date.
PROFILE ?= smoke
dvc-snapshot: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) scripts/dvc_snapshot.py save $(PROFILE)

dvc-restore: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) scripts/dvc_snapshot.py restore $(PROFILE)

clean-results:
	rm -rf $(RESULTS) .snakemake/metadata
