# custbase: every target is a one-line call to the `custbase` CLI (or pytest), on an environment
# that `uv` creates from the lock file when it is missing. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH when there is one, else the uv package of $(PYTHON) (installed by the rule below): `python -m uv`
# works wherever pip put it (site-packages or the user site), with no PATH to fix.
UV := $(or $(shell command -v uv 2>/dev/null),$(PYTHON) -m uv)
ENV := .venv/.synced
RUN := $(UV) run --frozen --all-extras --no-sync
CB := $(RUN) custbase

$(ENV): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv
	$(UV) sync --frozen --all-extras && touch $(ENV)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: env
env: $(ENV) ## create the environment from uv.lock (done by every target that needs it)

.PHONY: demo
demo: $(ENV) ## run the main job on a simulated bank (simulate, validate, features, ...)
	$(CB) demo

.PHONY: test
test: $(ENV) ## run the whole test suite (fails if no test ran)
	$(RUN) pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

.PHONY: simulate
simulate: $(ENV) ## simulate a bank into data/bank (SIM_ARGS="--customers 50000 ...")
	$(CB) simulate --out data/bank $(SIM_ARGS)

.PHONY: validate
validate: $(ENV) ## validate the raw tables in data/bank
	$(CB) validate --raw data/bank

.PHONY: features
features: $(ENV) ## build customer-month features and labels from data/bank
	$(CB) features --raw data/bank --out data/customer_months.parquet

.PHONY: train
train: $(ENV) ## tune, log and register the three models on data/customer_months.parquet
	$(CB) train clv && $(CB) train churn && $(CB) train upgrade

.PHONY: promote
promote: $(ENV) ## champion/challenger gate for the three models
	$(CB) promote clv && $(CB) promote churn && $(CB) promote upgrade

.PHONY: mlflow-ui
mlflow-ui: $(ENV) ## start the MLflow UI on http://127.0.0.1:5000
	$(CB) mlflow-ui

.PHONY: build
build: $(ENV) ## package the champion models as a bento
	$(CB) build

.PHONY: serve
serve: $(ENV) ## start the online endpoint (set CUSTBASE_API_KEYS first)
	$(CB) serve

.PHONY: bench
bench: $(ENV) ## speed figures beside their limits, same run (10-15 min, after make demo) -> benchmarks/results/
	$(RUN) python -m benchmarks.run

.PHONY: bench-full
bench-full: $(ENV) ## longer runs and more repeats of make bench
	$(RUN) python -m benchmarks.run --full

.PHONY: clean
clean: ## remove generated data and the local MLflow home (keeps the environment)
	rm -rf data && find mlruns -mindepth 1 ! -name .gitignore -exec rm -rf {} +
