"""Campaign lists by expected incremental value: one offer per customer, no negative value, budgets, holdout, reasons."""

import json

import numpy as np
import pandas as pd
import pytest

from custbase.config import Policy
from serving.runtime.campaign import best_offers, campaign_list, offer_values, select_within_budget, write_campaign


@pytest.fixture
def scores():
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "as_of": pd.Timestamp("2025-06-30"),
            "value_tier": ["mass", "affluent", "private", "mass", "affluent"],
            "segment": ["low_value_at_risk", "key_customer_at_risk", "stable_core", "low_value_stable", "growth_potential"],
            "churn_probability": [0.4, 0.6, 0.1, 0.01, 0.2],
            "upgrade_probability": [0.3, 0.05, np.nan, 0.01, 0.6],
            "clv_12m": [1_000.0, 8_000.0, 50_000.0, 300.0, 8_000.0],
            "aum_month_end": [10_000.0, 200_000.0, 8_000_000.0, 2_000.0, 300_000.0],
            "retention_uplift": [0.02, 0.05, -0.01, 0.0, 0.01],
            "upgrade_uplift": [0.01, 0.0, np.nan, 0.0, 0.08],
            "churn_reasons": [["a"], ["b", "c"], ["d"], [], ["e"]],
            "upgrade_reasons": [["u1"], [], [], [], ["u5", "u6"]],
        }
    )


POLICY = Policy(retention_contact_cost=5.0, retention_offer_rate=0.0003, retention_offer_take_up=0.5,
                upgrade_contact_cost=30.0, upgrade_offer_rate=0.002, upgrade_offer_take_up=0.1, holdout_share=0.0)


def test_values_are_uplift_times_value_minus_contact_and_offer_costs(scores):
    retention = offer_values(scores, "retention", POLICY)
    # customer 2: 0.05 x 8,000 - 5 - 0.5 x 0.0003 x 200,000 = 400 - 5 - 30 = 365
    assert retention.loc[1, "expected_incremental_value"] == pytest.approx(365.0)
    # customer 3 is a sleeping dog: negative uplift, negative value
    assert retention.loc[2, "expected_incremental_value"] < 0
    upgrade = offer_values(scores, "upgrade", POLICY)
    # customer 5: 0.08 x 6,000 - 30 - 0.1 x 0.002 x 300,000 = 480 - 30 - 60 = 390; the top tier has no upgrade
    assert upgrade.loc[4, "expected_incremental_value"] == pytest.approx(390.0)
    assert np.isnan(upgrade.loc[2, "expected_incremental_value"])
    assert (retention["uplift_source"] == "model").all()


def test_without_an_uplift_model_the_rule_of_thumb_stands_in_and_says_so(scores):
    values = offer_values(scores.drop(columns=["retention_uplift"]), "retention", POLICY)
    assert values.loc[0, "uplift"] == pytest.approx(0.4 * POLICY.retention_acceptance_rate)
    assert (values["uplift_source"] == "rule").all()


def test_each_customer_gets_at_most_its_best_offer_and_never_a_negative_one(scores):
    best = best_offers(scores, POLICY)
    # customer 1: retention 0.02 x 1,000 - 5 - 1.5 = 13.5 beats upgrade 0.01 x 1,500 - 30 - 2 < 0
    assert best["best_offer"].tolist() == ["retention", "retention", "none", "none", "upgrade"]
    retention, _ = campaign_list(scores, "retention", POLICY, budget=10)
    upgrade, _ = campaign_list(scores, "upgrade", POLICY, budget=10)
    assert not set(retention["customer_id"]) & set(upgrade["customer_id"])
    assert retention["customer_id"].tolist() == [2, 1]
    assert (retention["expected_incremental_value"] > 0).all()


def test_count_budget_holdout_reasons_and_money(scores):
    many = pd.concat([scores.assign(customer_id=scores["customer_id"] + 10 * i) for i in range(40)], ignore_index=True)
    policy = POLICY.model_copy(update={"holdout_share": 0.1})
    out, summary = campaign_list(many, "retention", policy, budget=45, currency="CNY", seed=1)
    assert len(out) == 50 and out["holdout"].sum() == 5 and summary.contacts == 45
    assert out["customer_id"].is_unique
    assert out["reasons"].str.len().min() > 0 and out["reasons"].str.contains("CNY").all()
    assert (out["currency"] == "CNY").all()
    assert (out["expected_incremental_value"] == out["expected_incremental_value"].round(2)).all()
    assert summary.why_shorter == ""
    short, summary = campaign_list(many, "retention", policy, budget=1_000)
    assert len(short) == 80 and "positive expected incremental value" in summary.why_shorter


def test_money_budget_keeps_the_expected_cost_of_contacts_within_it():
    value = np.array([100.0, 90.0, 50.0, -5.0, 30.0])
    cost = np.array([50.0, 10.0, 10.0, 1.0, 100.0])
    chosen, short = select_within_budget(value, cost, budget_amount=70.0)
    # value per cost: 9, 5, 2, (negative), 0.3 -> 10 + 10 + 50 = 70 fits, the 100-cost one does not
    assert chosen.tolist() == [1, 2, 0] and short == ""
    with pytest.raises(ValueError, match="exactly one"):
        select_within_budget(value, cost, budget=3, budget_amount=1.0)


def test_written_list_and_summary(scores, tmp_path):
    out, summary = campaign_list(scores, "upgrade", POLICY, budget=10)
    path, summary_path = write_campaign(out, summary, tmp_path / "upgrade.csv")
    back = pd.read_csv(path)
    assert back["customer_id"].tolist() == [5] and back["as_of"].iloc[0] == "2025-06-30"
    written = json.loads(summary_path.read_text())
    assert written["contacts"] == 1 and written["kind"] == "upgrade"
    assert "ROI" in summary.render()


def test_bad_kind_is_refused(scores):
    with pytest.raises(ValueError, match="retention"):
        campaign_list(scores, "winback", POLICY, budget=5)


def test_the_summary_says_how_large_a_holdout_reads_the_list_out(scores):
    # a strong offer: +30 pts of staying on customers worth 8,000 (value ~2,365 a contact against a noise of ~3,900)
    strong = scores.assign(retention_uplift=0.3, churn_probability=0.6, clv_12m=8_000.0, aum_month_end=200_000.0)
    many = pd.concat([strong.assign(customer_id=strong["customer_id"] + 10 * i) for i in range(400)], ignore_index=True)
    policy = POLICY.model_copy(update={"holdout_share": 0.1})
    _, small = campaign_list(many, "retention", policy, budget=15)
    _, large = campaign_list(many, "retention", policy, budget=700)
    # (2.80 x 3,920 / 2,365)^2 ~ 22 beside a huge treated arm; 15 contacts are too few for any holdout
    assert small.holdout_for_power is None and "no holdout detects" in small.render()
    assert 20 <= large.holdout_for_power <= 30 and "80% power" in large.render()
    assert ("is enough" in large.render()) == (large.holdout >= large.holdout_for_power)
    assert json.loads(json.dumps(large.__dict__))["holdout_for_power"] == large.holdout_for_power
