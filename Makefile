# Churn MLOps — every recipe hands off to Python; Cloud Build calls the same targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION  := 0.13.9
TOOLS       := .tools
UV          := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
VENV        := .venv
PY          := $(VENV)/bin/python
VENV_MON    := .venv-monitoring
PY_MON      := $(VENV_MON)/bin/python
DRIFT_TRIGGER ?= local
DRIFT_ARGS  ?=
RAW_DIR     ?= data/raw
CUSTOMERS   ?= 5000
SEED        ?= 42
IMAGE       ?= churn-pipeline:local


.PHONY: help setup lock run data compile test test-fast mlflow-ui bench clean
.PHONY: setup-monitoring drift bench-drift calibrate-drift

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(TOOLS)/bin/uv:
	$(PYTHON_BOOT) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: uv, unlike pip, leaves installed packages uncompiled; where PYTHONDONTWRITEBYTECODE is set,
# every interpreter (each test worker, each CLI run) would then compile pandas, sklearn, kfp or TF from source.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON_BOOT) $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements-dev.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

setup: $(VENV)/.installed ## Create .venv from the pinned requirements (uv is installed if missing)

# TFDV needs protobuf < 6 (kfp needs >= 6.31): the drift check has its own environment.
$(VENV_MON)/.installed: monitoring/requirements.txt pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON_BOOT) $(VENV_MON)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY_MON) monitoring/requirements.txt
	$(UV) pip install --quiet --python $(PY_MON) --no-deps -e .
	@touch $@

setup-monitoring: $(VENV_MON)/.installed ## Create .venv-monitoring (TFDV) from monitoring/requirements.txt

lock: | $(UV) ## Re-pin requirements.txt (runtime) and requirements-dev.txt (tests) from the .in files
	$(UV) pip compile --quiet requirements.in --python-version 3.11 -o requirements.txt
	$(UV) pip compile --quiet requirements-dev.in --python-version 3.11 -o requirements-dev.txt
	$(UV) pip compile --quiet monitoring/requirements.in --python-version 3.11 -o monitoring/requirements.txt

data: $(VENV)/.installed ## Generate sample raw data into data/raw (CUSTOMERS=5000 SEED=42)
	$(PY) -m churn.sample_data --customers $(CUSTOMERS) --seed $(SEED) --out $(RAW_DIR)

run: $(VENV)/.installed ## Run the whole pipeline locally (generates sample data if data/raw is empty)
	@if [ -z "$$(ls -A $(RAW_DIR) 2>/dev/null)" ]; then $(MAKE) --no-print-directory data; fi
	$(PY) pipeline.py run --raw-dir $(RAW_DIR) --summary-json data/run_summary.json

compile: $(VENV)/.installed ## Compile the pipeline to churn_pipeline.yaml (IMAGE=...)
	$(PY) pipeline.py compile --image $(IMAGE) --output churn_pipeline.yaml

# The fast tier runs on TEST_WORKERS pytest-xdist workers; gcp and serving tests each stay on one worker
# (tests/conftest.py) so their trained models and stand-in servers are built once.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadgroup

test: lint $(VENV_MON)/.installed ## The whole suite (CI): lint (ruff, mypy, import contract), fast tier in parallel, slow end-to-end tests one at a time, then the monitoring tests in .venv-monitoring
	$(PY) -m pytest --ignore=tests/monitoring -m "not slow" $(PYTEST_PARALLEL)
	$(PY) -m pytest --ignore=tests/monitoring -m slow
	$(PY_MON) -m pytest tests/monitoring

.PHONY: lint
lint: $(VENV)/.installed ## ruff, mypy and the import-layer contract
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The monitoring tests (one process, no xdist) run beside the main tier's workers, filling the core those leave
# idle; their report is printed when both are done, and the target fails if either does.
test-fast: $(VENV)/.installed $(VENV_MON)/.installed ## The fast tier: every module's unit and behaviour tests, not the slow end-to-end ones (TEST_WORKERS=2)
	@log=$$(mktemp); $(PY_MON) -m pytest tests/monitoring -m "not slow" >$$log 2>&1 & monitoring=$$!; \
	$(PY) -m pytest --ignore=tests/monitoring -m "not slow" $(PYTEST_PARALLEL); main=$$?; \
	wait $$monitoring; mon=$$?; echo "== tests/monitoring, fast tier (.venv-monitoring):"; cat $$log; rm -f $$log; \
	exit $$(( main || mon ))

drift: $(VENV_MON)/.installed $(VENV)/.installed ## Nightly drift check: newest data/predictions/*_outputs.csv vs the training split of the model that served it → data/monitoring/; retrains on drift (cron-ready; DRIFT_TRIGGER=none|local, DRIFT_ARGS='--current gs://B/predictions/ ...')
	$(PY_MON) monitoring/drift_check.py --trigger $(DRIFT_TRIGGER) $(DRIFT_ARGS)

mlflow-ui: $(VENV)/.installed ## Browse tracked runs and registered models at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root mlruns/artifacts

bench: $(VENV)/.installed ## Benchmark data_prep + feature_engineering against a DuckDB floor (targets: ours/floor <= 1.5x, peak RSS <= 6 GB)
	$(PY) bench/bench_prep.py

bench-drift: $(VENV_MON)/.installed ## Benchmark the drift check on 1M logged predictions (wall time, TF import, peak RSS)
	$(PY_MON) bench/bench_drift.py

calibrate-drift: $(VENV_MON)/.installed ## Measure the drift check's detection and false-alarm rates (100 seeded trials per cell; slow)
	$(PY_MON) bench/calibrate_drift.py --detect-sizes 10000,10000:100000,100000 --alarm-sizes 1000,10000,100000,10000:100000

.PHONY: demo
demo: $(VENV)/.installed $(VENV_MON)/.installed ## The closed loop offline in demo/: train v1 → serve → drifted traffic → drift check → retrain → v2 promoted and served
	$(PY) -m pipelines.demo --workdir demo

.PHONY: serve bench-serving
serve: $(VENV)/.installed ## Start the prediction server on :8080 (local champion)
	$(PY) -m serving

bench-serving: $(VENV)/.installed ## Benchmark the prediction server against no-op and JSON-decode floors and a joblib server
	$(PY) bench/bench_serving.py

clean: ## Remove generated data, models, runs and local pipeline outputs (keeps environments)
	rm -rf demo data/interim data/processed data/features data/predictions data/monitoring data/run_summary.json models mlruns local_outputs churn_pipeline.yaml
