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
	$(BIN)/ktransfer assets fetch minilm glove50

demo: assets
	$(BIN)/ktransfer demo

test: assets
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) saved_models/sst2_minilm
