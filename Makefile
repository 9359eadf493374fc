# `make demo` and `make test` work on a fresh machine: they create .venv,
# install ktransfer with its pinned dependencies, and fetch the real
# pretrained assets (checksummed, cached in $KTRANSFER_HOME) before running.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install assets bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

assets: $(STAMP)
	$(BIN)/ktransfer assets fetch minilm glove50 multilingual-e5-small

demo: assets
	$(BIN)/ktransfer demo

# Two pytest processes with one TensorFlow intra-op thread each (tests/conftest.py):
# most tests are small graphs whose time is Python and tracing, which one
# process leaves single-threaded. Tests go out a file at a time, the docstring
# examples (the longest file) in 4 parts (tests/conftest.py), so neither
# process waits on the other at the end.
test: assets
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25

clean:
	rm -rf $(VENV) saved_models/sst2_minilm
