"""Short histories: an 18-month purchase history with a 9-month CLV horizon trains out of time on censored windows.

The synthetic table has what a transactions-only build gives: monthly net revenue per customer (``net_revenue_1m``),
trailing sums, tenure, and the ``clv_9m`` label (null where the 9 months run past the data). Customers differ in
their purchase rate, and some stop buying for good; the trailing features carry that signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from features.feature_set import write_feature_table
from training.splits import discounted_exposure

HORIZON = 9
RATE = 0.10


def purchase_history(customers: int = 400, months: int = 18, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    as_of = pd.date_range("2024-07-31", periods=months, freq="ME")
    rate = rng.gamma(1.5, 40.0, customers)
    stops = rng.integers(3, 60, customers)  # month after which the customer buys nothing (many beyond the data)
    m = np.arange(months)
    revenue = np.where(m[None, :] < stops[:, None], rng.poisson(rate[:, None] / 10.0, (customers, months)) * 10.0, 0.0)
    cumulative = np.cumsum(revenue, axis=1)

    def trailing(k):
        return cumulative - np.concatenate([np.zeros((customers, k)), cumulative[:, :-k]], axis=1)

    label = np.full((customers, months), np.nan)
    weights = (1 + RATE) ** (-np.arange(1, HORIZON + 1) / 12)
    for t in range(months - HORIZON):
        label[:, t] = revenue[:, t + 1:t + 1 + HORIZON] @ weights
    return pd.DataFrame({
        "customer_id": np.repeat(np.arange(1, customers + 1), months),
        "as_of": np.tile(as_of, customers),
        "tenure_months": np.tile(m, customers).astype("int64"),
        "net_revenue_1m": revenue.ravel(),
        "net_revenue_3m": trailing(3).ravel(),
        "net_revenue_12m": trailing(12).ravel(),
        "months_since_last_purchase": np.tile(m, customers) - np.maximum.accumulate(
            np.where(revenue > 0, m[None, :], -1), axis=1).ravel(),
        "clv_9m": label.ravel(),
    })


def _config(tmp_path, **labels) -> Config:
    return Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "labels": {"clv_horizon_months": HORIZON, "clv_annual_discount_rate": RATE, **labels},
        "revenue": {"transaction_rate": {"card_spend": 1.0}, "annual_rate": {}, "cost_to_serve_monthly": 0},
        "training": {"num_threads": 1, "trials": 2, "early_stopping_rounds": 20, "max_boost_rounds": 300, "log_figures": False},
    })


def _write(frame: pd.DataFrame, path, config: Config):
    features = ["tenure_months", "net_revenue_1m", "net_revenue_3m", "net_revenue_12m", "months_since_last_purchase"]
    return write_feature_table(frame, path, {"feature_set": {"name": "t", "version": 1, "columns": features},
                                             "label_columns": ["clv_9m"], "labels": config.labels.model_dump()})


@pytest.mark.slow
def test_an_18_month_history_trains_clv_9m_out_of_time_on_censored_windows(tmp_path):
    import mlflow

    from training.jobs import train_model

    config = _config(tmp_path)
    path = _write(purchase_history(), tmp_path / "cm.parquet", config)
    result = train_model("clv", config, features_path=path, progress=False)
    split = result.split
    assert split.strategy == "censored" and "CENSORED" in split.choice
    assert [str(m) for m in split.test_months] == ["2025-02", "2025-03"]
    assert result.evaluation.test["normalized_gini"] > result.evaluation.baseline["normalized_gini"] - 0.05
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["split_strategy"] == "censored" and run.data.params["label"] == "clv_9m"
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card.md")
    assert "Split chosen for a short history (censored)" in card
    # The model predicts the whole 9-month value: its mean is of the order of the test labels', not one month's.
    test_mean = float(np.mean(result.evaluation.test_prediction))
    table = pd.read_parquet(path)
    months = pd.to_datetime(table["as_of"]).dt.to_period("M").astype("str")
    label_mean = float(table.loc[months.isin(["2025-02", "2025-03"]), "clv_9m"].mean())
    assert 0.5 * label_mean < test_mean < 2.0 * label_mean


def test_an_all_zero_value_is_a_one_line_error(tmp_path):
    from training.spec import get_spec
    from training.train import prepare_modeling_data

    config = _config(tmp_path)
    frame = purchase_history(120)
    frame = frame.assign(clv_9m=frame["clv_9m"] * 0.0, net_revenue_1m=0.0)
    with pytest.raises(ValueError, match=r"label clv_9m is 0 in all [\d,]+ training rows .*config revenue") as err:
        prepare_modeling_data(frame, {"labels": config.labels.model_dump(), "label_columns": ["clv_9m"]}, get_spec("clv"), config)
    assert "\n" not in str(err.value)


def test_the_clv_label_follows_the_horizon(tmp_path):
    from training.spec import get_spec
    from training.train import prepare_modeling_data

    config = _config(tmp_path)
    data = prepare_modeling_data(purchase_history(120), {"labels": config.labels.model_dump()}, get_spec("clv"), config)
    assert data.spec.label == "clv_9m" and data.split.censored
    # Censored rows carry their exposure; the offset is the log of its discounted months.
    exposure = data.train["label_exposure_months"].to_numpy()
    assert exposure.min() >= 1 and exposure.max() <= HORIZON
    assert np.allclose(np.exp(data.offset(data.train)), discounted_exposure(exposure, RATE))
    wrong = Config.model_validate({**config.model_dump(mode="json"), "labels": {"clv_horizon_months": 6}})
    with pytest.raises(ValueError, match="has no label column clv_6m .*clv_9m"):
        prepare_modeling_data(purchase_history(50), {"labels": wrong.labels.model_dump()}, get_spec("clv"), wrong)
    # A table that declares its CLV label column (tables written before the name followed the horizon) keeps it.
    kept = prepare_modeling_data(purchase_history(120), {"labels": config.labels.model_dump(), "label_columns": ["clv_9m"]},
                                 get_spec("clv"), wrong)
    assert kept.spec.label == "clv_9m"


def test_shifting_the_raw_score_scales_a_tweedie_prediction():
    import lightgbm as lgb

    from training.train import shift_raw_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0])).astype("float64")
    booster = lgb.train({"objective": "tweedie", "verbosity": -1, "num_threads": 1}, lgb.Dataset(X, y), num_boost_round=20)
    before = booster.predict(X)
    shift_raw_score(booster, np.log(9.0))
    assert np.allclose(booster.predict(X), 9.0 * before)
