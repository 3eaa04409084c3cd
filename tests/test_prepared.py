"""Training on a prepared table: leak screen, single-snapshot cross-validation, registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from training.prepared import screen_columns, shape_prepared_table, train_prepared_table
from training.spec import get_spec


def _snapshot(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """One row per customer: a churn target driven by balance trend, tenure and segment; plus a leak and an id."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 120, n)
    trend = rng.normal(0, 1, n)
    segment = rng.choice(["mass", "affluent", "private"], n, p=[0.6, 0.3, 0.1])
    logit = -1.5 - 1.2 * trend - 0.01 * tenure + np.where(segment == "mass", 0.8, 0.0)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "client": [f"C{100000 + i}" for i in rng.permutation(n)],   # the id column (text)
        "balance_trend": trend,
        "tenure_months": tenure,
        "segment": segment,
        "region": rng.choice(["north", "south", "east", "west"], n),  # noise
        "card_spend": np.round(rng.gamma(2, 300, n), 2),              # noise
        "days_since_closure": np.where(churned == 1, rng.integers(1, 90, n), np.nan),  # planted leak: only churners have it
        "account_number": rng.permutation(n) + 5_000_000,            # identifier-like (named like one)
        "churned": churned,
    })


def test_screen_finds_the_identifier_and_the_leak():
    frame = _snapshot()
    y = frame["churned"].to_numpy(dtype="float64")
    columns = [c for c in frame.columns if c not in ("client", "churned")]
    report = screen_columns(frame, columns, y, binary=True, seed=0)
    assert [f.column for f in report.identifiers] == ["account_number"]
    assert [f.column for f in report.leaks] == ["days_since_closure"]
    # Real signal is not a leak, and continuous unique values are not identifiers.
    assert "balance_trend" not in report.excluded and "card_spend" not in report.excluded


def test_a_perfect_category_mapping_is_a_leak_but_high_cardinality_is_not():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    frame = pd.DataFrame({
        "status": np.where(y == 1, rng.choice(["closed", "closing"], n), rng.choice(["open", "active"], n)),
        "branch": rng.choice([f"b{i}" for i in range(150)], n),  # many categories, no signal
    })
    report = screen_columns(frame, ["status", "branch"], y, binary=True, seed=0)
    assert report.excluded == ["status"]


def test_shape_rejects_several_rows_per_customer_without_as_of():
    frame = pd.concat([_snapshot(50), _snapshot(50)])
    with pytest.raises(ValueError, match="several rows per 'client'"):
        shape_prepared_table(frame, get_spec("churn"), target="churned", id_column="client", as_of_column=None)


def test_single_snapshot_falls_back_to_cross_validation_and_registers(tmp_path):
    path = tmp_path / "snapshot.csv"
    _snapshot().to_csv(path, index=False)
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "training": {"num_threads": 1, "trials": 3, "early_stopping_rounds": 20, "max_boost_rounds": 300, "log_figures": False},
    })
    result = train_prepared_table("churn", config, table=path, target="churned", id_column="client", progress=False)
    assert result.mode == "cross_validation"
    assert set(result.screen.excluded) == {"account_number", "days_since_closure"}
    assert "segment" in result.categorical_columns and "region" in result.categorical_columns
    assert not set(result.feature_columns) & {"account_number", "days_since_closure", "client", "churned"}
    assert 0.6 < result.cv_default <= result.cv_tuned < 0.98
    text = result.render()
    assert "FELL BACK to stratified 5-fold cross-validation" in text and "LEAK 'days_since_closure'" in text
    assert result.version == "1"

    from training.model_bundle import load_bundle
    from training.registry import CHALLENGER, alias_version

    assert alias_version("custbase-churn", CHALLENGER) == "1"
    bundle = load_bundle("models:/custbase-churn@challenger")
    p = bundle.predict(pd.read_csv(path).head(20))
    assert p.shape == (20,) and np.all((p >= 0) & (p <= 1))


def test_several_months_use_the_out_of_time_split(tmp_path):
    rng = np.random.default_rng(5)
    customers, months = 150, pd.date_range("2023-01-31", periods=24, freq="ME")
    n = customers * len(months)
    trend = rng.normal(0, 1, n)
    frame = pd.DataFrame({
        "cust": np.repeat(np.arange(1, customers + 1), len(months)),
        "month": np.tile(months, customers),
        "balance_trend": trend,
        "segment": rng.choice(["mass", "affluent"], n),
        "account_number": np.arange(n) + 7_000_000,  # unique per row: an identifier within every month
        "left": (rng.random(n) < 1 / (1 + np.exp(2.0 + 1.5 * trend))).astype(int),
    })
    path = tmp_path / "months.parquet"
    frame.to_parquet(path, index=False)
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "training": {"num_threads": 1, "trials": 1, "max_boost_rounds": 200, "log_figures": False},
    })
    result = train_prepared_table("churn", config, table=path, target="left", id_column="cust", as_of_column="month", progress=False)
    assert result.mode == "out_of_time" and result.months == 24
    assert result.screen.excluded == ["account_number"]
    trained = result.train_result
    assert [str(m) for m in trained.split.test_months] == ["2024-10", "2024-11", "2024-12"]
    assert trained.evaluation.test["roc_auc"] > 0.65
    assert "out-of-time split" in result.render() and result.version == "1"
