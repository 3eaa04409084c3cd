"""Drift (reference profiles, PSI, the scoring run's drift report) and the backtest, on small hand-made frames."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from serving.monitoring import (
    DriftReport,
    backtest_table,
    champion_of_month,
    drift_status,
    drift_table,
    model_population,
    read_drift,
    split_role,
    write_drift,
)
from training.drift import categorical_shares, numeric_edges, numeric_shares, profile_psi, psi, reference_profile


def test_psi_known_answer_and_zero_for_identical_shares():
    # (0.25-0.5) ln(0.25/0.5) + (0.75-0.5) ln(0.75/0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_numeric_bins_put_values_on_an_edge_left_and_count_missing_last():
    values = pd.Series([1.0, 2.0, 3.0, 4.0, None])
    edges = numeric_edges(values, 2)
    assert edges == [2.5]
    assert numeric_shares(values, edges) == [0.4, 0.4, 0.2]
    assert numeric_shares(pd.Series([2.5]), edges) == [1.0, 0.0, 0.0]


def test_categorical_shares_send_unseen_values_to_other_and_nulls_to_missing():
    assert categorical_shares(pd.Series(["a", "b", "z", None]), ["a", "b"]) == [0.25, 0.25, 0.25, 0.25]


def _training_rows(n=2_000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": np.arange(n),
        "as_of": pd.Timestamp("2024-06-30"),
        "salary_amount_3m": rng.lognormal(9, 0.5, n),
        "logins_3m": rng.poisson(10, n).astype("float64"),
        "gender": rng.choice(["F", "M"], n),
        "is_dormant": 0,
        "value_tier": "mass",
    })


def _profile(frame):
    score = 1 / (1 + np.exp(-(np.log(frame["salary_amount_3m"]) - 9)))
    return reference_profile(frame, ["salary_amount_3m", "logins_3m", "gender"], {"gender": ["F", "M"]}, score=score,
                             importance={"salary_amount_3m": 5.0, "logins_3m": 2.0, "gender": 0.1}, bins=10)


def test_halved_income_is_a_major_shift_and_an_unchanged_feature_is_stable():
    train = _training_rows()
    profile = _profile(train)
    now = _training_rows(seed=1).assign(salary_amount_3m=lambda f: f["salary_amount_3m"] / 2)
    table = profile_psi(profile, now).set_index("column")
    assert table.loc["salary_amount_3m", "psi"] > 0.25
    assert table.loc["logins_3m", "psi"] < 0.1
    assert table.loc["gender", "psi"] < 0.1
    assert list(table.index) == ["salary_amount_3m", "logins_3m", "gender"]  # by importance rank


def test_drift_report_warns_naming_the_shifted_features_and_score_and_round_trips(tmp_path):
    config = Config()
    train = _training_rows()
    now = _training_rows(seed=1).assign(salary_amount_3m=lambda f: f["salary_amount_3m"] / 2)
    score_now = 1 / (1 + np.exp(-(np.log(now["salary_amount_3m"]) - 9)))
    scores = pd.DataFrame({"customer_id": now["customer_id"], "churn_probability": score_now,
                           "upgrade_probability": 0.1, "clv_12m": 100.0})
    table = drift_table(now, scores, {"churn": _profile(train)}, config)
    report = DriftReport("2024-07", table, config.monitoring.psi_warn, config.monitoring.psi_alert, ["clv"])
    warnings = report.warnings()
    assert "salary_amount_3m" in warnings[0] and "score" in warnings[0] and "logins_3m" not in warnings[0]
    assert "clv model has no reference profile" in warnings[1]
    write_drift(report, tmp_path)
    again = read_drift(tmp_path)
    assert again.shifted()["column"].tolist() == report.shifted()["column"].tolist()
    assert read_drift(tmp_path / "nowhere") is None


def test_drift_of_a_model_trained_on_truncated_history_says_why():
    config = Config()
    train = _training_rows()
    now = _training_rows(seed=1).assign(salary_amount_3m=lambda f: f["salary_amount_3m"] / 2)
    scores = pd.DataFrame({"customer_id": now["customer_id"], "churn_probability": 0.1,
                           "upgrade_probability": 0.1, "clv_12m": 100.0})
    table = drift_table(now, scores, {"churn": _profile(train)}, config)
    short = {"data_start": "2023-01", "train_months": "2023-01..2023-06", "months_before_training": 0}
    report = DriftReport("2025-12", table, config.monitoring.psi_warn, config.monitoring.psi_alert, [], {},
                         {"churn": short})
    note = report.warnings()[-1]
    assert note.startswith("note: the churn model's training months (2023-01..2023-06) begin 0 month(s) after the data does")
    long = {**short, "train_months": "2024-01..2024-06", "months_before_training": 12}
    assert not any(w.startswith("note:") for w in DriftReport("2025-12", table, config.monitoring.psi_warn,
                                                              config.monitoring.psi_alert, [], {}, {"churn": long}).warnings())


def test_drift_status_thresholds():
    settings = Config().monitoring
    assert [drift_status(v, settings) for v in (0.05, 0.1, 0.2, 0.25, 1.0)] == ["stable", "moderate", "moderate", "major", "major"]


def test_model_population_follows_the_training_spec():
    config = Config()
    frame = pd.DataFrame({"is_dormant": [0, 1, 0], "value_tier": ["mass", "mass", "private"]})
    assert model_population(frame, "churn", config).tolist() == [True, False, True]
    assert model_population(frame, "upgrade", config).tolist() == [True, True, False]
    assert model_population(frame, "clv", config).tolist() == [True, True, True]


SPLIT = {"train": ["2024-01-31", "2024-02-29"], "validation": ["2024-04-30"], "test": ["2024-06-30"]}


def test_split_role_names_every_position():
    roles = [split_role(m, SPLIT) for m in ("2023-12", "2024-01", "2024-03", "2024-04", "2024-05", "2024-06", "2024-09")]
    assert roles == ["before training", "train", "gap", "validation", "gap", "test", "after test"]


def test_champion_of_a_month_is_the_newest_trained_only_on_earlier_months():
    old = SimpleNamespace(metadata={"split": {"train": ["2024-01-31", "2024-02-29"]}})
    new = SimpleNamespace(metadata={"split": {"train": ["2024-01-31", "2024-08-31"]}})
    lineage = [("1", old), ("2", new)]
    assert champion_of_month("2024-02", lineage)[0] == "1"  # none precedes: the oldest
    assert champion_of_month("2024-05", lineage)[0] == "1"
    assert champion_of_month("2024-09", lineage)[0] == "2"


class _Fixed:
    """A bundle stand-in predicting a fixed probability."""

    def __init__(self, p, split):
        self.p, self.metadata = p, {"split": split}

    def predict(self, frame):
        return np.full(len(frame), self.p)


def test_backtest_sets_realized_against_predicted_per_matured_month():
    config = Config()
    months = pd.to_datetime(["2024-05-31"] * 4 + ["2024-06-30"] * 4 + ["2024-07-31"] * 4)
    frame = pd.DataFrame({"customer_id": np.tile(np.arange(4), 3), "as_of": months, "is_dormant": 0,
                          "churn_3m": [1, 0, 0, 0, 1, 1, 0, 0] + [np.nan] * 4})
    table = backtest_table(frame, {"churn": [("3", _Fixed(0.25, SPLIT))]}, config, months=5)
    assert table["as_of"].tolist() == ["2024-05", "2024-06"]  # 2024-07 has not matured
    assert table["realized"].tolist() == [0.25, 0.5]
    assert table["predicted"].tolist() == [0.25, 0.25]
    assert table["split_role"].tolist() == ["gap", "test"]
    assert table["model_version"].tolist() == ["3", "3"]


def test_a_seasonal_month_is_compared_with_the_same_month_of_the_training_data():
    rng = np.random.default_rng(2)
    months = pd.date_range("2023-01-31", periods=24, freq="ME")
    as_of = np.repeat(months, 300)
    december = as_of.month == 12
    salary = rng.lognormal(9, 0.3, len(as_of)) * np.where(december, 3.0, 1.0)  # a December bonus
    train = pd.DataFrame({"as_of": as_of, "salary_1m": salary})
    profile = reference_profile(train, ["salary_1m"], {}, score=np.zeros(len(train)), importance={}, bins=10)
    now = pd.DataFrame({"salary_1m": rng.lognormal(9, 0.3, 300) * 3.0})
    seasonal = profile_psi(profile, now, month=12).set_index("column")
    assert seasonal.loc["salary_1m", "psi"] < 0.1
    assert "calendar month 12" in seasonal.loc["salary_1m", "baseline"]
    assert profile_psi(profile, now).set_index("column").loc["salary_1m", "psi"] > 0.25  # against all months: drift
    assert profile_psi(profile, now.assign(salary_1m=now["salary_1m"] / 2), month=12).loc[0, "psi"] > 0.25
