"""Contributions add up to the raw score; reason codes pick the right drivers and read well."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.runtime.reasons import Reason, contributions, reason_codes, sentence
from training.explain import global_importance

TIERS = ["mass", "affluent", "high_net_worth", "private"]


@pytest.fixture(scope="module")
def churn_like():
    """A small binary booster where complaints and a falling AUM raise the score, holding a fund lowers it."""
    rng = np.random.default_rng(3)
    n = 1500
    X = pd.DataFrame({
        "aum_change_ratio_3m": rng.normal(0, 0.3, n),
        "complaints_3m": rng.poisson(0.4, n).astype(float),
        "holds_fund": rng.integers(0, 2, n),
        "value_tier": pd.Categorical(rng.choice(TIERS[:3], n), categories=TIERS),
        "noise": rng.normal(size=n),
    })
    tier_effect = X["value_tier"].map({"mass": 0.8, "affluent": 0.0, "high_net_worth": -0.8}).astype(float)
    logit = -1.5 - 4 * X["aum_change_ratio_3m"] + 1.2 * X["complaints_3m"] - 1.0 * X["holds_fund"] + tier_effect
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "num_leaves": 15, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=40)
    return booster, X


def test_contributions_plus_bias_equal_the_raw_score(churn_like):
    booster, X = churn_like
    contrib = contributions(booster, X)
    assert contrib.shape == (len(X), X.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), booster.predict(X, raw_score=True), atol=1e-9)
    assert np.abs(contrib[:, 3]).max() > 0  # the categorical column contributes


def test_contributions_follow_the_model_not_the_frame_column_order(churn_like):
    booster, X = churn_like
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)
    np.testing.assert_allclose(contributions(booster, shuffled), contributions(booster, X))


def test_contributions_refuse_text_columns(churn_like):
    booster, X = churn_like
    with pytest.raises(ValueError, match="category dtype"):
        contributions(booster, X.assign(value_tier=X["value_tier"].astype(str)))


def test_regression_contributions_add_up_too():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"net_revenue_12m": rng.gamma(2, 50, 400), "tenure_months": rng.integers(1, 120, 400)})
    y = X["net_revenue_12m"] * 1.1 + rng.normal(0, 5, 400)
    booster = lgb.train({"objective": "tweedie", "num_threads": 1, "verbose": -1}, lgb.Dataset(X, y.clip(0)), 20)
    np.testing.assert_allclose(contributions(booster, X).sum(axis=1), booster.predict(X, raw_score=True), atol=1e-9)


def test_reason_codes_pick_the_drivers_of_a_risky_customer(churn_like):
    booster, X = churn_like
    risky = pd.DataFrame({
        "aum_change_ratio_3m": [-0.45], "complaints_3m": [3.0], "holds_fund": [0],
        "value_tier": pd.Categorical(["mass"], categories=TIERS), "noise": [0.0],
    })
    (reasons,) = reason_codes(booster, risky, k=3)
    assert {r.feature for r in reasons} <= {"aum_change_ratio_3m", "complaints_3m", "holds_fund", "value_tier", "noise"}
    assert {"aum_change_ratio_3m", "complaints_3m"} <= {r.feature for r in reasons}
    assert [r.contribution for r in reasons] == sorted((r.contribution for r in reasons), reverse=True)
    assert all(r.contribution > 0 for r in reasons)
    by_feature = {r.feature: r for r in reasons}
    assert by_feature["aum_change_ratio_3m"].sentence == "AUM down 45% over 3 months"
    assert by_feature["complaints_3m"].sentence == "3 complaints in the last 3 months"
    assert isinstance(by_feature["complaints_3m"].value, float)


def test_reason_codes_decrease_direction_gives_protective_factors(churn_like):
    booster, X = churn_like
    safe = pd.DataFrame({
        "aum_change_ratio_3m": [0.5], "complaints_3m": [0.0], "holds_fund": [1],
        "value_tier": pd.Categorical(["high_net_worth"], categories=TIERS), "noise": [0.0],
    })
    (reasons,) = reason_codes(booster, safe, k=2, direction="decrease")
    assert len(reasons) == 2
    assert all(r.contribution < 0 for r in reasons)
    assert reasons[0].contribution <= reasons[1].contribution


def test_reason_codes_one_list_per_row_and_reuse_precomputed_contributions(churn_like):
    booster, X = churn_like
    head = X.head(50)
    contrib = contributions(booster, head)
    reasons = reason_codes(booster, head, k=2, contrib=contrib)
    assert len(reasons) == 50
    assert all(len(r) <= 2 and all(isinstance(x, Reason) for x in r) for r in reasons)
    assert reasons == reason_codes(booster, head, k=2)
    # The reported contribution is the row's own.
    first = reasons[0][0]
    assert first.contribution == pytest.approx(contrib[0, list(head.columns).index(first.feature)])


def test_categorical_reason_reads_the_category(churn_like):
    booster, X = churn_like
    mass = X[X["value_tier"] == "mass"].head(200)
    sentences = {r.sentence for row in reason_codes(booster, mass, k=5) for r in row if r.feature == "value_tier"}
    assert sentences == {"Value tier: mass"}


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("aum_change_ratio_3m", -0.45, "AUM down 45% over 3 months"),
        ("aum_change_ratio_3m", 0.2, "AUM up 20% over 3 months"),
        ("aum_change_ratio_6m", -0.5, "AUM down 50% over 6 months"),
        ("months_since_last_salary", 4, "No salary credit for 4 months"),
        ("months_since_last_salary", np.nan, "No salary credit on record"),
        ("months_since_last_activity", 1, "No activity for 1 month"),
        ("complaints_3m", 2, "2 complaints in the last 3 months"),
        ("complaints_12m", 1, "1 complaint in the last 12 months"),
        ("complaints_3m", 0, "No complaints in the last 3 months"),
        ("holds_fund", 0, "Holds no fund"),
        ("holds_insurance", 1, "Holds an insurance policy"),
        ("txn_count_mobile_3m", 0, "No mobile transactions in the last 3 months"),
        ("txn_count_atm_1m", 12, "12 ATM transactions in the last month"),
        ("txn_count_6m", 40, "40 transactions in the last 6 months"),
        ("txn_amount_card_spend_3m", 3200.5, "Card spending of 3,200 in the last 3 months"),
        ("txn_amount_salary_3m", 0, "No salary credits in the last 3 months"),
        ("digital_share_3m", 0.8, "80% of transactions digital (3 months)"),
        ("logins_1m", 0, "No logins in the last month"),
        ("branch_visits_12m", 3, "3 branch visits in the last 12 months"),
        ("campaign_contacts_6m", 1, "1 campaign contact in the last 6 months"),
        ("salary_months_6m", 2, "Salary credited in 2 of the last 6 months"),
        ("balance_wealth_management", 120000.0, "Wealth management product balance of 120,000"),
        ("aum_month_end", 52000.0, "AUM of 52,000 at month end"),
        ("aum_avg_3m", 51000.0, "Average AUM of 51,000 over the last 3 months"),
        ("tenure_months", 27, "Customer for 2 years 3 months"),
        ("value_tier", "high_net_worth", "Value tier: high net worth"),
        ("is_dormant", 1, "Dormant customer"),
        ("tenure_months", 0, "Onboarded this month"),
        ("txn_net_flow_3m", -1500.0, "Net outflow of 1,500 over the last 3 months"),
        ("active_months_12m", 4, "Active in 4 of the last 12 months"),
        ("campaign_contacts_retention_12m", 1, "1 retention offer in the last 12 months"),
        ("previous_value_tier", None, "No value-tier change on record"),
        ("aum_change_ratio_3m", np.nan, "AUM change ratio 3m: missing"),
        ("some_unknown_score", 0.1234, "some_unknown_score = 0.123"),
    ],
)
def test_sentences_from_the_definitions_reason_phrases(feature, value, expected):
    assert sentence(feature, value) == expected


def test_descriptions_are_the_fallback_for_unknown_names():
    descriptions = {"risk_band_score": "Internal risk band score.", "complaints_3m": "ignored: a pattern exists"}
    assert sentence("risk_band_score", 7, descriptions) == "Internal risk band score: 7"
    assert sentence("risk_band_score", None, descriptions) == "Internal risk band score: missing"
    assert sentence("complaints_3m", 2, descriptions) == "2 complaints in the last 3 months"


def test_global_importance_orders_by_mean_absolute_contribution():
    contrib = np.array([[1.0, -3.0, 0.5], [-1.0, 1.0, 0.5]])
    importance = global_importance(contrib, ["a", "b"])
    assert list(importance.index) == ["b", "a"]
    assert importance["b"] == pytest.approx(2.0)
