# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.acorn-installed

.PHONY: install lock demo test test-fast lint docs clean-demo

# .venv holds exactly the lock (requirements.txt: every package, exact versions, hashes); a changed
# lock re-syncs it, removing what the lock no longer holds. Label Studio's own venv is installed by
# acorn from requirements-labelstudio.txt (and rebuilt when that lock changes).
$(STAMP): requirements.txt pyproject.toml tools/lock.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/lock.py sync $(BIN)/python requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/acorn demo

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow and not labelstudio"

# refresh both locks from requirements.in / requirements-labelstudio.in (needs the package index)
lock:
	$(PYTHON) tools/lock.py compile requirements.in requirements.txt
	$(PYTHON) tools/lock.py compile requirements-labelstudio.in requirements-labelstudio.txt

# the documentation site (docs/, mkdocs.yml) into site/; `.venv/bin/mkdocs serve` to browse it live
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# forget the demo's state (labels, registry, local remote); keeps data and the base model
clean-demo:
	rm -rf dvc.lock .acorn/oracle .acorn/work .acorn/cache mlflow.db mlartifacts data/labels data/label-snapshot data/predictions data/queue.csv metrics models/model.pt models/champion.pt models/registry.json
