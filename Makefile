# One venv per checkout; torch is pinned to the CPU build that lies on the local disk.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup main test lint

$(BIN)/cnnlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev,ray,export,tensorboard]'
	touch $@

setup: $(BIN)/cnnlab

# The main job: the whole study reproduced into reproduction/ (report.html). MNIST comes from
# $CNNLAB_MNIST_DIR or is downloaded; finished steps are not redone when run again.
main: setup
	$(BIN)/cnnlab reproduce --out reproduction

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
