# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint format figures reference clean

# Create the virtualenv and install regbench (editable) with its dev tools and the optional
# launchers, Ray included, and loggers (so their tests run); redone when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,cluster,tensorboard,ray,mlflow]"
	touch $(STAMP)

# Train the default experiment (MLP on scikit-learn digits) and print where the results are.
run: $(STAMP)
	$(BIN)/regbench run

# The test suite (slow and GPU tests are skipped unless asked for: make test-all).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

# Regenerate every figure and report in results/ from the committed CSVs (no training).
figures: $(STAMP)
	scripts/make_figures.sh

# Retrain the reference sweeps in results/ with seed=auto (1-2 h on 2 CPU cores).
reference: $(STAMP)
	scripts/reference_results.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
