# Set-up and entry points. `make demo` and `make test` each create the virtual environment
# and install matscreen into it first (only Python 3.11 and pip are needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

## Run the demo screening campaign on the real perovskite data in ../shared/data.
demo: $(STAMP)
	$(BIN)/matscreen campaign run

## Run the whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Run the tests without the slow ones.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check flows tasks catalog tests benchmarks

clean:
	rm -rf $(VENV) .matscreen runs
