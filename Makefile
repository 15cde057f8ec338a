# Set-up and entry points. `make demo` and `make test` each create the virtual environment
# and install matscreen into it first (only Python 3.11 or newer and pip are needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

## Run the demo screening campaign on the real perovskite data in ../shared/data.
demo: $(STAMP)
	$(BIN)/matscreen campaign run

## Run the whole test suite (what CI runs): the type check, then the tests.
test: typecheck
	$(BIN)/python -m pytest -q

## Run the tests without the slow ones.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check flows tasks catalog tests benchmarks

## Type-check flows/, tasks/ and catalog/ as the package matscreen they install as: mypy
## reads them through a tree of links laid out like the installed package.
TYPECHECK := $(VENV)/typecheck
typecheck: $(STAMP)
	rm -rf $(TYPECHECK)/matscreen
	mkdir -p $(TYPECHECK)/matscreen
	ln -s $(CURDIR)/flows/api/__init__.py $(TYPECHECK)/matscreen/__init__.py
	ln -s $(CURDIR)/flows $(CURDIR)/tasks $(CURDIR)/catalog $(TYPECHECK)/matscreen/
	cd $(TYPECHECK) && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		-p matscreen

clean:
	rm -rf $(VENV) .matscreen runs
