# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.acorn-installed

.PHONY: install demo test test-fast lint clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/acorn demo

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow and not labelstudio"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# forget the demo's state (labels, registry, local remote); keeps data and the base model
clean-demo:
	rm -rf dvc.lock .acorn/oracle .acorn/work .acorn/cache mlflow.db mlartifacts data/labels data/label-snapshot data/predictions data/queue.csv metrics models/model.pt models/champion.pt models/registry.json
