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
# process leaves single-threaded. On 2 Intel Xeon vCPUs: 20 min, where a serial run
# had done 68% of the tests after 24 min.
test: assets
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

clean:
	rm -rf $(VENV) saved_models/sst2_minilm
