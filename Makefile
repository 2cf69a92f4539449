# Quick start: `make demo` and `make test`. Both create/reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export GRADIO_ANALYTICS_ENABLED=False
export TOKENIZERS_PARALLELISM=false
# Tests never touch the network; the demo may fetch its model (`make demo DEMO_ARGS=--no-download` does not).
test test-fast: export HF_HUB_OFFLINE=1
DEMO_ARGS ?=

.PHONY: install demo lint test test-fast eval bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU build lies on this disk; an unpinned torch pulls GBs of CUDA.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python demo/run_demo.py $(DEMO_ARGS)

# Doctests of every package run with the tests; ruff first (fast, and a lint failure says more than a test's).
PACKAGES := common ingest index finetune assistant ui

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q -m "not slow" --doctest-modules tests $(PACKAGES)

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow and not integration" --doctest-modules tests $(PACKAGES)

eval: install
	$(BIN)/python bench/retrieval_eval.py

clean:
	rm -rf $(VENV) kb .pytest_cache
