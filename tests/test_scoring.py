"""The one scoring function: fields, arithmetic, reasons, policy."""

import numpy as np
import pandas as pd
import pytest

from serving.runtime.models import ModelInputError, prepare_features
from serving.runtime.policy import Policy, recommend_actions, segment_customers
from serving.runtime.scoring import SCORE_COLUMNS, score_customers
from synthetic import scoring_month, train_tiny_models


@pytest.fixture(scope="module")
def models():
    return train_tiny_models()


@pytest.fixture(scope="module")
def frame():
    return scoring_month(120, seed=3)


def test_scores_have_every_field_and_value_at_risk_is_churn_times_clv(models, frame):
    before = frame.copy()
    scores = score_customers(frame, models, Policy())
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert scores["customer_id"].tolist() == frame["customer_id"].tolist()
    np.testing.assert_allclose(scores["value_at_risk"], scores["churn_probability"] * scores["clv_12m"])
    assert scores["churn_probability"].between(0, 1).all() and (scores["clv_12m"] >= 0).all()
    top = frame["value_tier"].eq("private").to_numpy()
    assert top.any() and scores.loc[top, "upgrade_probability"].isna().all()
    assert scores.loc[~top, "upgrade_probability"].notna().all()
    assert all(r == [] for r in scores.loc[top, "upgrade_reasons"])
    assert all(len(r) <= 3 for r in scores["churn_reasons"]) and max(map(len, scores["churn_reasons"])) == 3
    assert set(scores["churn_model_version"]) == {"1"}


def test_probabilities_match_the_models(models, frame):
    scores = score_customers(frame, models, Policy(), reasons="none")
    X = prepare_features(frame, models.churn)
    np.testing.assert_allclose(scores["churn_probability"], models.churn.booster.predict(X))
    assert all(r == [] for r in scores["clv_reasons"])


def test_reason_codes_are_the_largest_contributions_that_sum_to_the_raw_score(models, frame):
    from serving.runtime.reasons import contributions, sentence

    X = prepare_features(frame, models.churn)
    contrib = contributions(models.churn.booster, X)
    np.testing.assert_allclose(contrib.sum(axis=1), models.churn.booster.predict(X, raw_score=True), atol=1e-9)
    scores = score_customers(frame.head(5), models, Policy(), reason_k=1)
    names = models.churn.feature_names
    for i in range(5):
        best = names[int(np.argmax(contrib[i, :-1]))]
        value = frame.iloc[i][best]
        expected = [sentence(best, value if not isinstance(value, float) or not np.isnan(value) else None)]
        # a reason is a feature that pushes the risk up: a customer with none has no churn reason
        assert scores["churn_reasons"][i] == (expected if contrib[i, :-1].max() > 0 else [])


def test_actionable_mode_explains_only_customers_with_an_action(models, frame):
    # costly contacts, so that some customers are worth no action
    policy = Policy(retention_contact_cost=50.0, nurture_contact_cost=5.0, cross_sell_contact_cost=50.0)
    scores = score_customers(frame, models, policy, reasons="actionable")
    acting = scores["recommended_action"] != "none"
    assert acting.any() and (~acting).any()
    explained = scores[["churn_reasons", "upgrade_reasons", "clv_reasons"]].map(len).sum(axis=1) > 0
    assert explained[acting].all()
    assert all(r == [] for r in scores.loc[~acting, "churn_reasons"])


def test_missing_feature_is_named(models, frame):
    with pytest.raises(ModelInputError, match="complaints_3m"):
        score_customers(frame.drop(columns=["complaints_3m"]), models, Policy())


def test_unknown_category_scores_as_missing(models, frame):
    odd = frame.head(3).assign(gender="X")
    X = prepare_features(odd, models.churn)
    assert X["gender"].isna().all()
    assert score_customers(odd, models, Policy(), reasons="none")["churn_probability"].notna().all()


def test_policy_known_answers():
    policy = Policy(retention_contact_cost=50.0)  # a relationship-manager call
    rows = pd.DataFrame(
        {
            "churn_probability": [0.5, 0.5, 0.05, 0.05, 0.05, 0.9],
            "upgrade_probability": [0.1, 0.01, 0.5, 0.05, np.nan, 0.1],
            "clv_12m": [20_000.0, 100.0, 1_000.0, 10_000.0, 200_000.0, 10_000.0],
            "value_tier": ["affluent", "mass", "mass", "affluent", "private", "mass"],
            "is_dormant": [0, 0, 0, 0, 0, 1],
            "product_count": [2, 2, 5, 5, 5, 1],
        }
    )
    assert segment_customers(rows, policy).tolist() == [
        "key_customer_at_risk", "low_value_at_risk", "growth_potential", "stable_core", "stable_core", "dormant"]
    actions, values = recommend_actions(rows, policy)
    # 0.5 x 20,000 x 0.25 - 50 = 2,450: a retention call pays.
    assert actions[0] == "retain" and values[0] == pytest.approx(2_450.0)
    # value at risk 50: an RM call costs more than it saves, a 0.5 message does not (0.5 x 100 x 0.01 - 0.5 = 0).
    assert actions[1] == "none" and values[1] == 0.0
    # 0.5 x 0.5 x 1,500 - 30 = 345
    assert actions[2] == "upgrade_offer" and values[2] == pytest.approx(345.0)
    assert actions[4] in ("retain", "none", "nurture") and actions[4] != "upgrade_offer"  # top tier: no upgrade


def test_customers_outside_the_churn_population_get_no_retention_contact():
    """Lapsing (quiet 1..k-1 months) and dormant customers: own segments, no retain / nurture / cross-sell."""
    from serving.runtime.campaign import campaign_list

    policy = Policy()
    rows = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "as_of": pd.Timestamp("2025-06-30"),
            "churn_probability": [0.6, 0.6, 0.6],
            "upgrade_probability": [0.01, 0.01, 0.01],
            "clv_12m": [20_000.0, 20_000.0, 20_000.0],
            "value_tier": ["affluent"] * 3,
            "is_dormant": [0, 0, 1],
            "months_quiet": [0, 1, 3],
            "product_count": [2, 2, 2],
        }
    )
    assert segment_customers(rows, policy).tolist() == ["key_customer_at_risk", "lapsing", "dormant"]
    actions, _ = recommend_actions(rows, policy)
    assert actions.tolist() == ["retain", "none", "none"]
    scored = rows.assign(segment=segment_customers(rows, policy), recommended_action=actions,
                         value_at_risk=rows.churn_probability * rows.clv_12m, churn_reasons=[[]] * 3)
    listed, _ = campaign_list(scored.assign(aum_month_end=0.0), "retention", policy, budget=10)
    assert listed["customer_id"].tolist() == [1]


def test_action_mode_explains_only_the_model_behind_the_action(models, frame):
    scores = score_customers(frame, models, Policy(), reasons="action")
    for _, row in scores.iterrows():
        expected = {"retain": "churn", "nurture": "churn", "upgrade_offer": "upgrade", "cross_sell": "clv"}.get(row.recommended_action)
        for name in ("churn", "upgrade", "clv"):  # the model behind the action may have no feature pushing it up
            assert len(row[f"{name}_reasons"]) == 0 or name == expected, (row.recommended_action, name)
    acting = scores["recommended_action"] != "none"
    assert scores.loc[acting, ["churn_reasons", "upgrade_reasons", "clv_reasons"]].map(len).to_numpy().sum() > 0


def test_scores_carry_the_best_offer_its_uplift_and_incremental_value(models, frame):
    plain = score_customers(frame, models, Policy(), reasons="none")
    assert set(plain["recommended_offer"]) <= {"retention", "upgrade", "none"}
    none = plain["recommended_offer"] == "none"
    assert (plain.loc[none, "offer_incremental_value"] == 0).all() and plain.loc[none, "offer_uplift"].isna().all()
    assert (plain.loc[~none, "offer_incremental_value"] > 0).all()
    # an uplift model that says every retention contact backfires takes retention off the table
    backfire = score_customers(frame, models, Policy(), reasons="none", uplift={"retention": lambda f: np.full(len(f), -0.5)})
    assert "retention" not in set(backfire["recommended_offer"])
    with pytest.raises(ValueError, match="keyed by offer"):
        score_customers(frame, models, Policy(), reasons="none", uplift={"winback": lambda f: np.zeros(len(f))})


def test_one_customer_fast_path_predicts_and_explains_exactly_as_the_batch_path(models, frame):
    from serving.runtime.models import matrix_models

    for model in matrix_models(models):
        X = model.encode_frame(frame.head(40))
        one_by_one = np.concatenate([model.predict(X[i:i + 1]) for i in range(len(X))])
        np.testing.assert_array_equal(one_by_one, model.predict(X))
        contributions = np.vstack([model.contributions(X[i:i + 1]) for i in range(len(X))])
        np.testing.assert_array_equal(contributions, model.contributions(X))
