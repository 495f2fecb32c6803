# vidgen developer commands. `make install` then `make test` is all the set-up a fresh machine needs.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-suite test-unit test-dist test-wheel test-slow test-all lint format clean

install:  ## virtual environment with vidgen in editable mode and its dev tools
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch, torchvision, lightning, hydra, timm, open_clip, diffusers, av, moviepy; print('vidgen install ok: torch', torch.__version__, 'torchvision', torchvision.__version__)"

test: test-suite test-wheel  ## the CI test suite (CPU, < 10 minutes on two cores)

test-suite:  ## every test not marked slow in one session: two workers, one test file each at a time, the files with multiprocess tests first (tests/conftest.py)
	$(BIN)/python -m pytest -q -n 2 -m 'not slow' --dist loadfile --no-loadscope-reorder --max-worker-restart=0 --durations=15

test-unit:  ## the single-process part of test-suite, two pytest workers
	$(BIN)/python -m pytest -q -n 2 --durations=15

test-dist:  ## the multi-process part of test-suite (DDP / FSDP on 2 CPU ranks, sweeps), two test files at a time (1 thread per rank)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m 'multiprocess and not slow' --durations=15

test-wheel:  ## the installed package: build the wheel, install it into a new environment, run the CLIs from outside the repository
	.ci/test_wheel.sh $(BIN)/python

test-slow:  ## heavier checks marked `slow`
	$(BIN)/python -m pytest -q -m slow --timeout=2400 -o faulthandler_timeout=1200 --durations=15

test-all: test test-slow

lint:
	$(BIN)/ruff check vidgen tests experiments
	$(BIN)/ruff format --check vidgen tests experiments

format:
	$(BIN)/ruff format vidgen tests experiments
	$(BIN)/ruff check --fix vidgen tests experiments

clean:
	rm -rf outputs multirun lightning_logs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
