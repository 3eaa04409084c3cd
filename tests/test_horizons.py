"""Label, oracle and model names follow the configured horizons, and the oracle is the labeled event's probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from raw_factory import simulated_customer_months

from custbase.config import Config, Labels
from features.contract import GROUND_TRUTH_TABLE
from features.feature_set import read_feature_table
from training.spec import get_spec
from training.train import metrics_of, oracle_predictions, prepare_modeling_data

LABELS = Labels(churn_horizon_months=6, upgrade_horizon_months=2, clv_horizon_months=6)
CONFIG = Config(labels=LABELS)


def test_names_derive_from_the_horizons_and_default_to_todays():
    assert Labels().names.labels == ("churn_3m", "upgrade_3m", "clv_12m")
    assert Labels().names.churn_oracle == "churn_probability_3m" and Labels().names.clv_oracle == "expected_clv_12m"
    names = LABELS.names
    assert names.labels == ("churn_6m", "upgrade_2m", "clv_6m")
    assert (names.churn_oracle, names.upgrade_oracle, names.clv_oracle) == (
        "churn_probability_6m", "upgrade_probability_2m", "expected_clv_6m")
    spec = get_spec("churn", LABELS)
    assert (spec.label, spec.oracle_column, spec.horizon_months(LABELS)) == ("churn_6m", "churn_probability_6m", 6)
    assert spec.label_window_months(LABELS) == 6 + LABELS.dormancy_inactive_months - 1


@pytest.fixture(scope="module")
def bank_6m(tmp_path_factory):
    return simulated_customer_months(tmp_path_factory.mktemp("horizons"), CONFIG, customers=2_500, months=30, seed=4)


def test_every_name_says_the_configured_horizon(bank_6m):
    raw, path = bank_6m
    frame, metadata = read_feature_table(path)
    assert metadata["label_columns"] == ["churn_6m", "upgrade_2m", "clv_6m"]
    assert {"churn_6m", "upgrade_2m", "clv_6m"} <= set(frame.columns)
    assert not {"churn_3m", "upgrade_3m", "clv_12m"} & set(frame.columns)
    truth = pd.read_parquet(raw / GROUND_TRUTH_TABLE)
    assert {"churn_probability_6m", "upgrade_probability_2m", "expected_clv_6m"} <= set(truth.columns)
    assert not {"churn_probability_3m", "expected_clv_12m"} & set(truth.columns)


@pytest.mark.parametrize("model", ["churn", "upgrade", "clv"])
def test_the_oracle_is_for_exactly_the_labeled_event(bank_6m, model):
    """A spec built with the default names is renamed from the table's metadata; its oracle matches the label's
    horizon: calibrated in the mean (a 3-month probability against a 6-month label would be about half)."""
    raw, path = bank_6m
    frame, metadata = read_feature_table(path)
    data = prepare_modeling_data(frame, metadata, get_spec(model), CONFIG)
    assert data.spec.label == getattr(LABELS.names, model)
    assert data.spec.oracle_column == getattr(LABELS.names, f"{model}_oracle")
    oracle = oracle_predictions(data.test, data.spec, raw)
    assert oracle is not None and not np.isnan(oracle).any()
    y = data.y(data.test)
    tolerance = 0.25 * y.mean()
    assert abs(oracle.mean() - y.mean()) < tolerance, (oracle.mean(), y.mean())
    figures = metrics_of(data.spec, y, oracle)
    primary = figures[data.spec.primary_metric]
    assert (0.7 < primary < 1.0) if model != "clv" else (0.5 < primary <= 1.0)
