# tfad: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (Debian packages, the .venv) on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.tfad-installed
SYSTEM_STAMP := build/.system-deps
DEMO_DIR ?= demo_out

.PHONY: help setup system-deps venv ops protos cc-build demo test test-python lint qualify-pc clean

help:
	@echo "make demo   - generate synthetic vial data, train line-cpu, calibrate, export, evaluate"
	@echo "make test   - install everything needed and run the whole test suite (Python + C++)"
	@echo "make lint   - ruff and the import contracts (lint-imports)"
	@echo "make qualify-pc - on a candidate line PC, idle: can it serve the recommended models in the cycle?"

setup: system-deps venv ops protos

# Debian packages for the C++ service (Bazel, gRPC, protobuf, gtest). Skipped when already present.
system-deps: $(SYSTEM_STAMP)
$(SYSTEM_STAMP): scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	@mkdir -p build && touch $@

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml
	bash scripts/install_system_deps.sh --python-only
	test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# tfad's fused scoring kernels (tfad/scoring/kernels), compiled once into ~/.cache/tfad/ops.
ops: venv
	$(PY) -m tfad.scoring.native

protos: venv
	bash scripts/gen_protos.sh $(PY)

cc-build: system-deps venv protos
	bash scripts/build_cc.sh

demo: venv ops
	$(VENV)/bin/tfad demo --out $(DEMO_DIR)

test: setup cc-build
	bash scripts/test_all.sh $(PY)

lint: venv
	$(VENV)/bin/ruff check tfad tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

# Qualify this PC for the line (docs/performance.md, "Qualifying a line PC"): about 50 minutes, run idle; the
# report goes to QUALIFY_JSON. A model that fails exits 1, which make reports as "Error 1". QUALIFY_ARGS passes
# more options, e.g. the two-thread server mode for a full line:
#   make qualify-pc QUALIFY_JSON=qualify_2threads.json \
#       QUALIFY_ARGS="--cc-flag=--inference_threads=2 --cc-flag=--tf_intra_op_threads=1"
# or, for a line that shows the operator a heatmap of every patch (the worst case):
#   make qualify-pc QUALIFY_JSON=qualify_heatmaps.json QUALIFY_ARGS="--heatmaps all"
QUALIFY_ARGS ?=
QUALIFY_JSON ?= qualify_pc.json
qualify-pc: setup cc-build
	$(PY) benchmarks/qualify_pc.py --json-out $(QUALIFY_JSON) $(QUALIFY_ARGS)

clean:
	rm -rf build $(DEMO_DIR) .pytest_cache
