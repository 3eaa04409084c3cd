"""Uplift: Qini on known answers, meta-learners recover a planted effect, contact rows are point in time."""

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from training.uplift import (
    UPLIFT_SPECS,
    average_effect,
    contact_rows,
    fit_uplift,
    predict_uplift,
    qini_coefficient,
    qini_curve,
)


def test_qini_curve_counts_incremental_responders_known_answer():
    # sorted by score: T responder, C non-responder, T non-responder, C responder
    outcome = [1, 0, 0, 1]
    treated = [1, 0, 1, 0]
    share, q = qini_curve(outcome, treated, [4, 3, 2, 1])
    # k=1: 1 - 0; k=2: 1 - 0 x 1/1; k=3: 1 - 0 x 2/1 = 1; k=4: 1 - 1 x 2/2 = 0
    assert q.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_qini_ranks_the_true_effect_above_random_and_its_reverse():
    rng = np.random.default_rng(0)
    n = 20_000
    effect = rng.uniform(-0.1, 0.3, n)
    treated = rng.random(n) < 0.5
    outcome = rng.random(n) < 0.3 + treated * effect
    good = qini_coefficient(outcome, treated, effect)
    assert good > 0
    assert qini_coefficient(outcome, treated, -effect) < 0 < good
    assert abs(qini_coefficient(outcome, treated, rng.random(n))) < good / 3
    assert average_effect(outcome, treated) == pytest.approx(effect.mean(), abs=0.02)


@pytest.mark.parametrize("learner", ["t", "x", "shift"])
def test_meta_learners_recover_a_planted_effect(learner):
    rng = np.random.default_rng(1)
    n = 8_000
    X = pd.DataFrame({"saver": rng.random(n), "noise": rng.random(n)})
    effect = np.where(X["saver"] > 0.5, 0.25, -0.1)
    treated = rng.random(n) < 0.5
    outcome = (rng.random(n) < 0.3 + treated * effect).astype(float)
    hp = {"learner": learner, "num_leaves": 4, "min_child_samples": 200, "learning_rate": 0.1, "rounds": 60,
          "feature_fraction": 1.0, "lambda_l2": 1.0}
    boosters = fit_uplift(X, treated, outcome, hp)
    assert ("shift" in boosters) == (learner == "shift")
    uplift = predict_uplift(boosters, X, 0.5)
    assert uplift[X["saver"] > 0.5].mean() > 0.15 and uplift[X["saver"] <= 0.5].mean() < 0
    assert np.corrcoef(uplift, effect)[0, 1] > 0.8


def test_one_arm_is_refused():
    X = pd.DataFrame({"a": np.arange(50.0)})
    with pytest.raises(ValueError, match="both arms"):
        fit_uplift(X, np.ones(50, bool), np.zeros(50), {"learner": "t"})


def test_contact_rows_take_the_features_of_the_month_before_the_contact():
    frame = pd.DataFrame({
        "customer_id": [1, 1, 2, 2],
        "as_of": pd.to_datetime(["2025-01-31", "2025-02-28", "2025-01-31", "2025-02-28"]),
        "is_dormant": [0, 0, 0, 0],
        "aum_month_end": [10.0, 20.0, 30.0, 40.0],
        "churn_3m": [0.0, 1.0, 1.0, np.nan],
    })
    contacts = pd.DataFrame({
        "customer_id": [1, 2, 2],
        "timestamp": pd.to_datetime(["2025-03-05 10:00", "2025-02-05 11:00", "2025-03-05 09:00"]),
        "campaign_id": ["2025-03-retention", "2025-02-retention", "2025-03-retention"],
        "offer": ["retention", "retention", "retention"],
        "treated": [True, False, True],
    })
    rows = contact_rows(frame, contacts, UPLIFT_SPECS["retention-uplift"], Config())
    # customer 1 contacted in March -> February features; customer 2's March contact has no label yet
    assert rows[["customer_id", "aum_month_end", "treated", "outcome"]].values.tolist() == [[1, 20.0, 1, 0.0], [2, 30.0, 0, 0.0]]


def test_untreated_pool_leaves_out_customer_months_under_an_offer():
    from training.uplift import untreated_customer_months

    months = pd.to_datetime(["2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30", "2025-05-31"])
    frame = pd.DataFrame({
        "customer_id": np.repeat([1, 2], 5),
        "as_of": np.tile(months, 2),
        "is_dormant": 0,
        "churn_3m": 0.0,
    })
    contacts = pd.DataFrame({
        "customer_id": [1, 2], "timestamp": pd.to_datetime(["2025-02-05", "2025-02-05"]),
        "campaign_id": "2025-02-retention", "offer": "retention", "treated": [True, False],
    })
    pool = untreated_customer_months(frame, contacts, UPLIFT_SPECS["retention-uplift"], Config(), max_rows=100)
    # customer 1 treated in February (as_of January): January..March are under the offer's effect
    kept = pool.groupby("customer_id")["as_of"].apply(lambda s: [d.month for d in s]).to_dict()
    assert kept == {1: [4, 5], 2: [1, 2, 3, 4, 5]}
    assert (pool["outcome"] == 1.0).all()


def test_the_control_arm_can_learn_from_the_untreated_pool():
    rng = np.random.default_rng(2)
    n = 2_000
    X = pd.DataFrame({"a": rng.random(n)})
    treated = rng.random(n) < 0.5
    outcome = (rng.random(n) < 0.3).astype(float)
    hp = {"learner": "t", "control_pool": "all", "num_leaves": 4, "min_child_samples": 50, "learning_rate": 0.1,
          "rounds": 20, "feature_fraction": 1.0, "lambda_l2": 1.0}
    pool = (pd.DataFrame({"a": rng.random(5_000)}), np.zeros(5_000))
    with_pool = fit_uplift(X, treated, outcome, hp, untreated=pool)
    without = fit_uplift(X, treated, outcome, {**hp, "control_pool": "contacts"}, untreated=pool)
    # the pool never responds: the control arm's predicted response falls, the uplift rises
    assert predict_uplift(with_pool, X, 0.5).mean() > predict_uplift(without, X, 0.5).mean() + 0.1


def test_the_blend_leans_on_the_treated_arm_when_the_control_arm_has_the_untreated_pool():
    from training.uplift import blend_weight

    assert blend_weight({"control_pool": "contacts"}, 600, 400, 10_000) == pytest.approx(0.6)
    assert blend_weight({"control_pool": "all"}, 600, 400, 10_000) == pytest.approx(600 / 11_000)


def test_the_shift_learner_keeps_a_relative_effect_proportional_to_the_risk():
    # the offer halves the odds of leaving for everyone: the absolute effect is largest where the risk is
    rng = np.random.default_rng(3)
    n = 30_000
    X = pd.DataFrame({"risk": rng.random(n)})
    base = 0.02 + 0.3 * X["risk"].to_numpy()
    treated = rng.random(n) < 0.5
    leave = np.where(treated, base / (2 - base), base)  # odds halved
    outcome = (rng.random(n) >= leave).astype(float)  # outcome = stayed
    hp = {"learner": "shift", "control_pool": "contacts", "num_leaves": 2, "min_child_samples": 400,
          "learning_rate": 0.05, "rounds": 100, "feature_fraction": 1.0, "lambda_l2": 10.0}
    uplift = predict_uplift(fit_uplift(X, treated, outcome, hp), X, 0.5)
    true = base - base / (2 - base)
    assert np.corrcoef(uplift, true)[0, 1] > 0.9
    assert abs(uplift.mean() - true.mean()) < 0.01


def test_expected_qini_known_answers():
    from training.uplift import expected_qini

    tau = np.array([0.3, 0.1, 0.0, -0.2])
    # ranked by the truth: cumulative 0, .3, .4, .4, .2 against the random line 0, .05, .1, .15, .2
    assert expected_qini(tau, tau) == pytest.approx(np.trapezoid([0, 0.25, 0.3, 0.25, 0], np.linspace(0, 1, 5)) / 4)
    assert expected_qini(tau, -tau) == pytest.approx(-expected_qini(tau, tau))
    assert expected_qini(tau, [2, 3, 1, 0]) < expected_qini(tau, tau)  # the top two swapped


def test_the_search_keeps_the_defaults_unless_a_trial_beats_them_beyond_noise():
    from training.uplift import beats_beyond_noise

    rng = np.random.default_rng(4)
    n = 4_000
    effect = rng.uniform(-0.1, 0.3, n)
    treated = (rng.random(n) < 0.5).astype(float)
    outcome = (rng.random(n) < 0.3 + treated * effect).astype(float)
    assert beats_beyond_noise(outcome, treated, effect, rng.random(n)) > 0.95
    # two equally uninformed rankings: neither wins beyond noise
    assert 0.05 < beats_beyond_noise(outcome, treated, rng.random(n), rng.random(n)) < 0.95


@pytest.mark.slow
def test_a_retrained_uplift_model_no_better_than_the_champion_is_not_promoted(tmp_path, monkeypatch):
    """The gate rescores the champion on the same test contacts: a challenger whose Qini does not beat it beyond the
    noise of a paired bootstrap stays a challenger (the same data and seed give the same model: 0 % of resamples)."""
    from raw_factory import simulated_customer_months
    from training import registry
    from training.uplift import train_uplift

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = Config.model_validate({"paths": {"mlruns_dir": str(tmp_path / "mlruns")},
                                    "training": {"num_threads": 1, "trials": 1, "log_figures": False}})
    bank, table = simulated_customer_months(tmp_path, config, customers=1500, months=24, seed=2)
    first = train_uplift("retention-uplift", config, features_path=table, raw_dir=bank, progress=False)
    assert first.promoted
    second = train_uplift("retention-uplift", config, features_path=table, raw_dir=bank, progress=False)
    assert second.test["qini"] == pytest.approx(first.test["qini"])
    assert not second.promoted and "below the required margin" in second.gate_reason, second.gate_reason
    assert registry.alias_version("custbase-retention-uplift", registry.CHAMPION) == first.version


def test_a_qini_gain_within_the_noise_does_not_replace_the_champion():
    from training.uplift import beyond_noise

    rng = np.random.default_rng(3)
    n = 6_000
    effect = rng.normal(0.0, 0.05, n)
    treated = rng.random(n) < 0.5
    outcome = (rng.random(n) < 0.5 + treated * effect).astype(float)
    champion = effect + rng.normal(0, 0.05, n)
    # a challenger that is the champion plus a hair of noise: whatever its point Qini, it wins about half the resamples
    promoted, reason = beyond_noise("qini up", outcome, treated, champion + rng.normal(0, 1e-4, n), champion)
    assert not promoted and "within the noise" in reason
    # the true effect against a ranking that ignores it: better in (nearly) every resample
    promoted, reason = beyond_noise("qini up", outcome, treated, effect, rng.random(n))
    assert promoted and "paired bootstrap resamples" in reason


def test_the_uplift_rows_read_batch_by_batch_are_those_of_the_whole_table(tmp_path):
    """train_uplift reads only the contacted and sampled customer-months: the same rows, in the same order, as
    contact_rows and untreated_customer_months on the table read whole."""
    from features.feature_set import read_feature_table
    from raw_factory import simulated_customer_months
    from training.uplift import read_contacts, read_uplift_rows, untreated_customer_months

    config = Config()
    bank, table = simulated_customer_months(tmp_path, config, customers=600, months=18, seed=5)
    frame, _ = read_feature_table(table)
    contacts = read_contacts(bank)
    for spec in UPLIFT_SPECS.values():
        rows, pool = read_uplift_rows(table, contacts, spec, config, max_rows=2_000, seed=3)
        assert len(rows) > 50 and len(pool) == 2_000
        pd.testing.assert_frame_equal(rows, contact_rows(frame, contacts, spec, config))
        pd.testing.assert_frame_equal(pool, untreated_customer_months(frame, contacts, spec, config, max_rows=2_000, seed=3))
