# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick test-all lint format figures reference clean

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

# The test suite CI runs: unit, integration and end-to-end tests (the installed command, every command of
# the docs), on both cores; slow statistical and GPU tests are left for make test-all.
# --dist loadfile: a test file runs on one worker, in order: the commands of a document (tests/e2e) need the
# ones before them, and a module's shared fixtures are built once.
# OMP_NUM_THREADS=1: each of the two workers gets one core's share of torch's threads (torch reads it at start-up,
# and so does every regbench process a test starts), as a parallel launcher gives each job its share. With torch's
# default (every core) in both workers, their OpenMP threads spin-wait for each other: a two-step ResNet-110 test
# took 26 s beside the other worker and 1.2 s alone.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile
test: $(STAMP)
	$(PYTEST) -m "not slow and not gpu"

# While working: the unit tests only (no whole commands, sweeps or processes), about 2 minutes.
test-quick: $(STAMP)
	$(PYTEST) -m "not slow and not gpu and not integration and not e2e"

test-all: $(STAMP)
	$(PYTEST)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

# Regenerate every figure and report in results/ from the committed CSVs (no training).
figures: $(STAMP)
	scripts/make_figures.sh

# Retrain the reference sweeps in results/ with seed=auto (2-3 h on 2 CPU cores; the ViT sweep alone ~30 min).
reference: $(STAMP)
	scripts/reference_results.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
