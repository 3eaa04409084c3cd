"""Campaign lists: ordering by expected value of contact, budget, eligibility."""

import numpy as np
import pandas as pd
import pytest

from serving.campaign import campaign_list, write_campaign_csv
from serving.policy import Policy


@pytest.fixture
def scores():
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "as_of": pd.Timestamp("2025-06-30"),
            "value_tier": ["mass", "affluent", "private", "mass", "affluent"],
            "segment": ["low_value_at_risk", "key_customer_at_risk", "stable_core", "low_value_stable", "growth_potential"],
            "recommended_action": ["nurture", "retain", "none", "none", "upgrade_offer"],
            "churn_probability": [0.4, 0.6, 0.1, 0.01, 0.2],
            "upgrade_probability": [0.3, 0.05, np.nan, 0.01, 0.6],
            "clv_12m": [1_000.0, 8_000.0, 50_000.0, 300.0, 8_000.0],
            "churn_reasons": [["a"], ["b", "c"], ["d"], [], ["e"]],
            "upgrade_reasons": [["u1"], [], [], [], ["u5", "u6"]],
        }
    ).assign(value_at_risk=lambda f: f.churn_probability * f.clv_12m)


def test_retention_list_is_ordered_by_expected_value_and_cut_at_the_budget(scores):
    policy = Policy()
    out = campaign_list(scores, "retention", 2, policy)
    # EV = p x clv x 0.25 - 50: customer 2: 1,150; 3: 1,200; 5: 350; 1: 50; 4: < 0
    assert out["customer_id"].tolist() == [3, 2]
    assert out["rank"].tolist() == [1, 2]
    assert out["campaign_expected_value"].tolist() == pytest.approx([1_200.0, 1_150.0])
    assert out["reasons"].tolist() == ["d", "b; c"]
    assert campaign_list(scores, "retention", 10, policy)["customer_id"].tolist() == [3, 2, 5, 1]


def test_upgrade_list_skips_the_top_tier_and_unprofitable_contacts(scores, tmp_path):
    out = campaign_list(scores, "upgrade", 10, Policy())
    # EV = p x 0.5 x gain - 30: customer 5: 1,770; 1: 0.3 x 0.5 x 1,500 - 30 = 195; 2: 0.05 x 0.5 x 6,000 - 30 = 120
    assert out["customer_id"].tolist() == [5, 1, 2]
    assert out["reasons"].iloc[0] == "u5; u6"
    path = write_campaign_csv(out, tmp_path / "upgrade.csv")
    back = pd.read_csv(path)
    assert back["customer_id"].tolist() == [5, 1, 2] and back["as_of"].iloc[0] == "2025-06-30"


def test_bad_kind_is_refused(scores):
    with pytest.raises(ValueError, match="retention"):
        campaign_list(scores, "winback", 5, Policy())
