# One venv per checkout; torch is pinned to the CPU build that lies on the local disk.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= runs/lines

.PHONY: setup main test lint

$(BIN)/cnnlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev]'
	touch $@

setup: $(BIN)/cnnlab

main: setup
	$(BIN)/cnnlab data lines --out $(OUT) --png

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
