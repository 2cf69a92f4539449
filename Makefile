# Quick start: `make demo` and `make test`. Both create/reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export GRADIO_ANALYTICS_ENABLED=False
export HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-fast eval bench clean

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
	$(BIN)/python demo/run_demo.py

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not integration"

eval: install
	$(BIN)/python bench/retrieval_eval.py

clean:
	rm -rf $(VENV) kb .pytest_cache
