# normlab — `make help` lists the targets.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Tests read the real datasets; default to the shared copy beside the checkout.
TEST_DATA ?= $(if $(NORMLAB_DATA),$(NORMLAB_DATA),$(abspath ../shared/data))

.PHONY: help install run test test-full lint format clean reproduce

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q 'torch==2.14.1' 'torchvision==0.29.1'
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install normlab with its dev tools

run: $(STAMP) ## Train the default experiment (MNIST, BN paper MLP, norm=batch)
	$(PY) run.py $(ARGS)

lint: $(STAMP) ## ruff lint + format check, mypy over src/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# one torch thread per pytest worker: -n auto workers of torch's default threads each oversubscribe the cores
test: lint ## Fast test suite (real data, tiny subsets), on every core, the 15 slowest tests named
	NORMLAB_DATA=$(TEST_DATA) OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q -n auto --durations=15

test-full: lint ## Every test, the slow ones included
	NORMLAB_DATA=$(TEST_DATA) $(PY) -m pytest -q -n auto --durations=15

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove runs/ and caches (keeps .venv)
	rm -rf runs outputs multirun .pytest_cache .ruff_cache

reproduce: $(STAMP) ## Every claim's quick profile, then the reports in results/ (about 47 min here, 2 cores)
	$(PY) scripts/reproduce.py all --profile quick
