# One venv per checkout; torch is pinned to the CPU build that lies on the local disk.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup main test lint

$(BIN)/cnnlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev]'
	touch $@

setup: $(BIN)/cnnlab

# The main job: the Lines dataset with its preview, and the study's prescribed CNN on both
# datasets. Finished steps are not redone.
main: setup data/lines/lines.npz runs/part1-mnist/model.safetensors runs/part1-lines/model.safetensors

data/lines/lines.npz:
	$(BIN)/cnnlab data lines --out data/lines --png

runs/%/model.safetensors:  # an interrupted run is resumed, not restarted
	if [ -f runs/$*/checkpoints/last.pt ]; then $(BIN)/cnnlab train --resume runs/$*; \
	else rm -rf runs/$* && $(BIN)/cnnlab train $* --out runs/$*; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
