# edgeport developer tasks. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-fast fuzz bench zoo docs lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-6s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install edgeport with its dev extra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: $(STAMP) ## make the demo model and data, then run recipes/demo.yaml
	$(BIN)/python scripts/make_demo_model.py
	$(BIN)/edgeport run recipes/demo.yaml

test: $(STAMP) ## run the test suite (extra pytest flags: PYTEST_ARGS=...)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) ## the suite without the slow Keras Applications conversions
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

fuzz: $(STAMP) ## 10,000 generated recipes per fuzz test: only RecipeError may escape the loader
	EDGEPORT_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q tests/e2e/test_fuzz_recipe.py

bench: $(STAMP) ## edgeport against direct library calls: overhead, cache, throughput, memory
	$(BIN)/python scripts/make_demo_model.py
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/architecture.py
	$(BIN)/python benchmarks/multi_output.py

zoo: $(STAMP) ## the zoo (Keras Applications, keras-hub backbones) through edgeport and the raw calls: docs/zoo.md
	$(BIN)/python scripts/zoo.py

docs: $(STAMP) ## regenerate the docs' generated parts: the recipe reference (docs/recipes.md), the metric tables
	$(BIN)/python scripts/make_docs.py

lint: $(STAMP) ## ruff over the repository
	$(BIN)/ruff check .

clean: ## remove generated artifacts (keeps artifacts/README.md) and caches
	find artifacts -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build *.egg-info
