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
# CONFIG=file.yaml passes a configuration file to every command (default: ./custbase.yaml when present)
CB := $(RUN) custbase
CFG = $(if $(CONFIG),--config $(CONFIG))
# parameters of `make campaign` and `make serve`
KIND ?= retention
BUDGET ?= 200
PORT ?= 3000

$(ENV): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv
	@echo "creating .venv from uv.lock (about a minute the first time)"
	@$(UV) sync --quiet --frozen --all-extras && touch $(ENV)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: env
env: $(ENV) ## create the environment from uv.lock (done by every target that needs it)

.PHONY: demo
demo: $(ENV) ## run the main job on a simulated bank into data/ and mlruns/ (CUSTOMERS=5000 TRIALS=5)
	$(CB) demo $(CFG) $(if $(CUSTOMERS),--customers $(CUSTOMERS)) $(if $(TRIALS),--trials $(TRIALS))

.PHONY: test
test: $(ENV) ## run the whole test suite (fails if no test ran)
	$(RUN) pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

.PHONY: simulate
simulate: $(ENV) ## simulate a bank into data/bank (SIM_ARGS="--customers 50000 ...")
	$(CB) simulate $(CFG) $(SIM_ARGS)

.PHONY: validate
validate: $(ENV) ## validate the raw tables in data/bank
	$(CB) validate $(CFG)

.PHONY: features
features: $(ENV) ## build customer-month features and labels from data/bank into data/customer_months.parquet
	$(CB) features $(CFG)

.PHONY: features-append
features-append: $(ENV) ## add data/bank's new month (and the labels that matured with it) to data/customer_months.parquet
	$(CB) features --append $(CFG)

.PHONY: train
train: $(ENV) ## tune, log and register the three models on data/customer_months.parquet
	$(CB) train clv $(CFG) && $(CB) train churn $(CFG) && $(CB) train upgrade $(CFG)

.PHONY: oracle
oracle: $(ENV) ## Monte Carlo continuation oracle for the CLV test months of data/bank (a true limit for `train clv`)
	$(CB) oracle clv --raw data/bank --features data/customer_months.parquet

.PHONY: promote
promote: $(ENV) ## champion/challenger gate for the three models
	$(CB) promote clv $(CFG) && $(CB) promote churn $(CFG) && $(CB) promote upgrade $(CFG)

.PHONY: models
models: $(ENV) ## each model's champion, challenger, history, model card and figures
	$(CB) models $(CFG)

.PHONY: uplift
uplift: $(ENV) ## tune, log, register and gate the retention and upgrade uplift models
	$(CB) train retention-uplift && $(CB) train upgrade-uplift

.PHONY: campaign-backtest
campaign-backtest: $(ENV) ## compare targeting strategies against the truth at BUDGET contacts a month (default 200)
	$(CB) campaign backtest retention --budget $(BUDGET) $(CFG) && $(CB) campaign backtest upgrade --budget $(BUDGET) $(CFG)

.PHONY: mlflow-ui
mlflow-ui: $(ENV) ## start the MLflow UI on http://127.0.0.1:5000
	$(CB) mlflow-ui $(CFG)

.PHONY: build
build: $(ENV) ## package the champion models as a bento
	$(CB) build $(CFG)

.PHONY: score
score: $(ENV) ## score the whole base at the latest month of data/customer_months.parquet into data/scores
	$(CB) score $(CFG)

.PHONY: campaign
campaign: $(ENV) ## write a campaign list from data/scores (KIND=retention|upgrade BUDGET=200) to data/campaigns/
	$(CB) campaign $(KIND) --budget $(BUDGET) $(CFG)

.PHONY: cycle
cycle: $(ENV) ## the month's work as one resumable command, recorded in data/ledger.parquet (MONTH=YYYY-MM)
	$(CB) cycle --month $(MONTH) $(CFG)

.PHONY: serve
serve: $(ENV) ## start the online endpoint on PORT=3000 (CUSTBASE_API_KEYS=secret make serve)
	$(CB) serve --port $(PORT)

.PHONY: report
report: $(ENV) ## write the HTML base report of the demo's data (after `make demo`) and print its path
	$(CB) report base

.PHONY: monitor-backtest
monitor-backtest: $(ENV) ## score the matured months with the champions of their time: realized vs predicted
	$(CB) monitor backtest

.PHONY: notebooks
notebooks: $(ENV) ## execute every notebook under notebooks/ on the demo's outputs (after `make demo`)
	$(CB) notebooks $(CFG)

.PHONY: bench
bench: $(ENV) ## speed figures beside their limits, same run (10-15 min, after make demo) -> benchmarks/results/
	$(RUN) python -m benchmarks.run

.PHONY: bench-full
bench-full: $(ENV) ## longer runs and more repeats of make bench
	$(RUN) python -m benchmarks.run --full

.PHONY: clean
clean: ## remove generated data and the local MLflow home (keeps the environment)
	rm -rf data && find mlruns -mindepth 1 ! -name .gitignore -exec rm -rf {} +

.PHONY: campaign-coverage
campaign-coverage: $(ENV) ## coverage and bias of the campaign estimates on 5 simulated banks (a few minutes) -> benchmarks/results/
	$(RUN) python -m benchmarks.campaign_coverage
