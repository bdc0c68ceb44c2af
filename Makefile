# Two entry points (see README): `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sea-installed
DEMO_OUT ?= demo_out

.PHONY: demo test bench install clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sea run --out $(DEMO_OUT)

# tests/ensure_browser.sh installs Debian's chromium + chromium-driver for the report browser test.
test: $(STAMP)
	bash tests/ensure_browser.sh
	$(BIN)/python -m pytest

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
