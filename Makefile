# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if
# it is missing, installs the package with all extras and the test tools, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow docs lint clean

demo: $(STAMP)
	$(BIN)/diffops demo

# The documentation site, so that a broken docstring or example fails, then the suite,
# which also checks the built pages (tests/test_site.py).
test: $(STAMP)
	$(MAKE) docs
	$(BIN)/python -m pytest

# The site, into docs/_build/html; any warning (a broken reference or docstring, an
# example that raises) is an error. The gallery's examples run as it builds.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The property and fuzz tests with 300 Hypothesis examples each instead of 25.
test-slow: $(STAMP)
	HYPOTHESIS_PROFILE=slow $(BIN)/python -m pytest tests/test_properties.py tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy src

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	# The CPU build of torch lies on this machine's disk; asking for it first keeps pip
	# from fetching a CUDA build for the torch>=2.1 of the extras.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all,bench,distributed]" --group dev
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf docs/_build docs/auto_examples
