"""The training core's collaborators, on tiny in-memory inputs: the oracle joined to test rows, the retention CLV
chosen by the caller, the one run logger, and CLI options that default to the configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from custbase.config import Config
from custbase.cli import app
from training.oracle import OracleTables, oracle_for_rows
from training.runs import log_run, prefixed
from training.train import CARRIED_FORWARD, RetentionClv

ROWS = pd.DataFrame({"customer_id": [1, 2, 3], "as_of": pd.to_datetime(["2025-01-31"] * 3).astype("datetime64[us]"),
                     "net_revenue_12m": [10.0, 0.0, 5.0]})
TRUTH = pd.DataFrame({"customer_id": [1, 2, 3], "month": pd.to_datetime(["2025-01-01"] * 3), "p": [0.1, 0.2, 0.3]})


def _continuation(customers) -> pd.DataFrame:
    n = len(customers)
    return pd.DataFrame({"customer_id": customers, "month": pd.to_datetime(["2025-01-01"] * n), "p": [0.5] * n,
                         "p_se": [0.01] * n, "p_half": [0.4] * n, "replications": [32] * n})


def test_the_oracle_is_the_continuation_when_it_covers_every_row_else_the_ground_truth():
    value, detail = oracle_for_rows(ROWS, OracleTables("p", TRUTH, _continuation([1, 2, 3])))
    assert value.tolist() == [0.5, 0.5, 0.5] and detail["half"].tolist() == [0.4, 0.4, 0.4]
    value, detail = oracle_for_rows(ROWS, OracleTables("p", TRUTH, _continuation([1, 2])))  # customer 3 missing
    assert value.tolist() == [0.1, 0.2, 0.3] and detail is None
    assert oracle_for_rows(ROWS, None) == (None, None)
    assert oracle_for_rows(ROWS, OracleTables("p")) == (None, None)


class _Failing:
    def predict(self, rows):
        raise KeyError("a column the CLV model needs")


def test_the_retention_clv_is_the_callers_model_and_falls_back_to_carried_forward():
    labels = Config().labels

    class Doubling:
        def predict(self, rows):
            return rows["net_revenue_12m"].to_numpy() * 2

    values, source = RetentionClv("models:/custbase-clv/7", Doubling()).values(ROWS, labels)
    assert values.tolist() == [20.0, 0.0, 10.0] and source == "models:/custbase-clv/7"
    fallback, source = RetentionClv("models:/custbase-clv/7", _Failing()).values(ROWS, labels)
    assert source == CARRIED_FORWARD and np.array_equal(fallback, RetentionClv().values(ROWS, labels)[0])


class _Run:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_log_run_writes_each_kind_once_in_a_fixed_order():
    run = _Run()
    log_run(run, tags={"model": "churn"}, metrics=prefixed("test_", {"roc_auc": 0.7}), params={"seed": 42},
            dicts={"split.json": {"a": 1}}, texts={"model_card.md": "# card"})
    assert [c[0] for c in run.calls] == ["params", "metrics", "tags", "dict", "text"]
    assert run.calls[1] == ("metrics", {"test_roc_auc": 0.7})
    log_run(run)
    assert len(run.calls) == 5


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "custbase.yaml"
    path.write_text("simulation:\n  customers: 123\n  seed: 11\nfeatures:\n  engine: spark\n")
    (tmp_path / "data" / "bank").mkdir(parents=True)
    return path


def test_cli_options_default_to_the_configuration(config_file, monkeypatch):
    seen = {}

    class Summary:
        def render(self):
            return "done"

    def fake_simulate(settings, out, config=None, **kwargs):
        seen["simulation"] = settings
        return Summary()

    def fake_build(raw_dir, out_path, config, **kwargs):
        seen["engine"] = kwargs["engine"]
        return Summary()

    monkeypatch.setattr("features.simulate.simulate_bank", fake_simulate)
    monkeypatch.setattr("features.build.build_customer_months", fake_build)
    runner = CliRunner()
    assert runner.invoke(app, ["simulate", "--config", str(config_file)]).exit_code == 0
    assert (seen["simulation"].customers, seen["simulation"].seed, seen["simulation"].months) == (123, 11, 36)
    assert runner.invoke(app, ["simulate", "--customers", "50", "--config", str(config_file)]).exit_code == 0
    assert seen["simulation"].customers == 50 and seen["simulation"].seed == 11
    assert runner.invoke(app, ["features", "--config", str(config_file)]).exit_code == 0
    assert seen["engine"] == "spark"
    assert runner.invoke(app, ["features", "--engine", "duckdb", "--config", str(config_file)]).exit_code == 0
    assert seen["engine"] == "duckdb"
