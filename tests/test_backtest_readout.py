"""Backtest strategies and the campaign read-out on hand-made rows with known answers."""

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config, Policy
from serving.backtest import BacktestResult, choose
from serving.readout import campaign_readout, difference

CONFIG = Config(policy=Policy(retention_contact_cost=5.0, retention_offer_rate=0.0, holdout_share=0.0))


@pytest.fixture
def month():
    return pd.DataFrame({
        "customer_id": [1, 2, 3, 4],
        "value_tier": ["mass", "affluent", "affluent", "mass"],
        "churn_probability": [0.9, 0.5, 0.2, 0.05],
        "upgrade_probability": [0.1, 0.2, 0.3, 0.4],
        "clv_12m": [1_000.0, 5_000.0, 4_000.0, 100.0],
        "aum_month_end": [5_000.0, 100_000.0, 90_000.0, 1_000.0],
        # customer 1 is a sleeping dog: highest risk, contact pushes them out
        "retention_uplift": [-0.05, 0.01, 0.04, 0.0],
        "true_incremental_value": [-55.0, 45.0, 155.0, -5.0],
        "true_effect": [-0.05, 0.0, 0.04, 0.0],
    })


def test_strategies_pick_what_they_promise(month):
    assert choose(month, "risk_top_n", "retention", 2, CONFIG).tolist() == [0, 1]
    # risk x CLV: 0.5 x 5,000 = 2,500 > 0.9 x 1,000 = 900 > 0.2 x 4,000 = 800
    assert choose(month, "risk_x_value", "retention", 2, CONFIG).tolist() == [1, 0]
    # uplift x value: 0.04 x 4,000 - 5 = 155 > 0.01 x 5,000 - 5 = 45; the sleeping dog and the zero are left alone
    assert choose(month, "uplift_x_value", "retention", 3, CONFIG).tolist() == [2, 1]
    assert choose(month, "oracle", "retention", 3, CONFIG).tolist() == [2, 1]
    # the same rule with the true effect: customer 2's true effect is 0, so only customer 3 pays
    assert choose(month, "true_uplift_x_value", "retention", 3, CONFIG).tolist() == [2]
    assert sorted(choose(month, "random", "retention", 4, CONFIG).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="strategy"):
        choose(month, "psychic", "retention", 1, CONFIG)


def test_backtest_json_carries_every_strategy_figure_and_its_interval():
    strategies = [
        {"name": "risk_x_value", "contacts": 10, "true_incremental_value": 20.0, "estimate": 15.0, "standard_error": 5.0,
         "ci_low": 5.2, "ci_high": 24.8, "randomized_contacts": 4, "differences": {}},
        {"name": "oracle", "contacts": 10, "true_incremental_value": 100.0, "estimate": 90.0, "standard_error": 5.0,
         "ci_low": 80.2, "ci_high": 99.8, "randomized_contacts": 4,
         "differences": {"risk_x_value": {"estimate": 75.0, "standard_error": 3.0, "ci_low": 69.1, "ci_high": 80.9}}},
        {"name": "uplift_x_value", "contacts": 8, "true_incremental_value": 80.0, "estimate": None, "differences": {}},
    ]
    result = BacktestResult("retention", 10, ["2025-07"], "CNY", strategies)
    assert result.to_json()["strategies"] == strategies and result.to_json()["budget"] == 10
    text = result.render()
    assert "closes 75% of the oracle's margin" in text
    assert "90 [80, 100]" in text and "+75 [+69, +81]" in text


def test_difference_and_its_interval():
    diff, low, high = difference(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0]))
    assert diff == pytest.approx(0.5) and low < diff < high
    assert np.isnan(difference(np.array([1.0]), np.array([0.0, 1.0]))[0])


def test_readout_compares_treated_and_holdout_by_tier():
    contacts = pd.DataFrame({
        "customer_id": [1, 2, 3, 4, 5, 6],
        "timestamp": pd.Timestamp("2025-03-05 10:00"),
        "campaign_id": "2025-03-retention",
        "offer": "retention",
        "treated": [True, True, False, True, True, False],
        "responded": [True, False, False, True, False, False],
    })
    frame = pd.DataFrame({
        "customer_id": [1, 2, 3, 4, 5, 6],
        "as_of": pd.Timestamp("2025-02-28"),
        "value_tier": ["mass", "mass", "mass", "affluent", "affluent", "affluent"],
        "churn_3m": [0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        "clv_12m": [100.0, 120.0, 0.0, 900.0, 0.0, 0.0],
    })
    readout = campaign_readout("2025-03-retention", contacts, frame)
    overall = readout.table.set_index("tier").loc["all"]
    assert overall["treated"] == 4 and overall["holdout"] == 2
    assert overall["churn_difference"] == pytest.approx(0.25 - 1.0)
    assert set(readout.table["tier"]) == {"all", "mass", "affluent"}
    assert "churn" in readout.render()
    with pytest.raises(ValueError, match="no campaign_id"):
        campaign_readout("nope", contacts, frame)
