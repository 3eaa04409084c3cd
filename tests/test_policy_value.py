"""The AIPW policy value: known answers on hand-made rows, unbiasedness and coverage on synthetic experiments."""

import numpy as np
import pandas as pd
import pytest

from serving.policy_value import (CAMPAIGN, EXPLORATION, OutcomeModels, PolicyEvidence, customer_folds, gain, group_correction,
                                  paired_difference, policy_value, residuals)
from serving.runtime.evidence import Z95, conclusion, gain_sd, holdout_for_power


def _evidence(tau, on_campaign, rows, stratum, r, treated, propensity=0.5, month="2025-07"):
    population = pd.DataFrame({"customer_id": np.arange(len(tau)), "_month": pd.Period(month, "M"), "tau_model": tau,
                               "on_campaign": on_campaign})
    contacts = pd.DataFrame({"row": rows, "_month": pd.Period(month, "M"), "stratum": stratum, "r": r,
                             "treated": treated, "propensity": propensity})
    return PolicyEvidence(population, contacts)


def test_campaign_members_stand_for_themselves_and_the_exploration_sample_for_the_rest():
    # rows 0-3 on a campaign list (all randomized), 4-7 not; rows 4 and 5 are the exploration sample of those four
    evidence = _evidence(tau=np.arange(1.0, 9.0), on_campaign=[True] * 4 + [False] * 4, rows=[0, 1, 2, 3, 4, 5],
                         stratum=[CAMPAIGN] * 4 + [EXPLORATION] * 2, r=[2.0, 4.0, -1.0, 1.0, 2.0, -2.0],
                         treated=[1, 1, 0, 0, 1, 0])
    everyone = policy_value(np.ones(8, bool), evidence)
    # model effects 36; campaign: 4 x (mean treated residual 3 - mean control residual 0) = 12; exploration, one
    # contact per arm (no normalizing): the AIPW terms 2 / 0.5 and 2 / 0.5, scaled by 4 members / 2 contacts = 16
    assert everyone.estimate == pytest.approx(36 + 12 + 16)
    assert everyone.randomized_contacts == 6 and everyone.model_only_contacts == 0 and everyone.standard_error > 0
    # without an exploration contact among the chosen, the rest is valued by the model alone, and says so
    some = policy_value(np.array([True, True, True, True, False, False, True, True]), evidence)
    assert some.estimate == pytest.approx(1 + 2 + 3 + 4 + 12 + 7 + 8) and some.model_only_contacts == 2


def test_arm_imbalance_adds_no_noise_when_the_models_are_right_on_average():
    # every treated residual is 5 and every control residual 5: whatever the split, the correction is 0
    for treated in ([1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]):
        assert group_correction(np.full(6, 5.0), np.array(treated, bool), np.full(6, 0.5), 6)[0] == pytest.approx(0.0)


def test_a_strategy_against_itself_differs_by_exactly_zero():
    evidence = _evidence(tau=[1.0, 2.0, 3.0, 4.0], on_campaign=[True] * 4, rows=[0, 1, 2, 3], stratum=[CAMPAIGN] * 4,
                         r=[1.0, -2.0, 4.0, 0.5], treated=[1, 1, 0, 0])
    a = policy_value(np.ones(4, bool), evidence)
    assert paired_difference(a, a) == (0.0, 0.0)
    b = policy_value(np.array([True, True, False, False]), evidence)
    diff, se = paired_difference(a, b)
    assert np.isfinite(diff) and se > 0


def _experiment(rng, n=4_000):
    """A randomized contact experiment with a known per-customer effect on a 0/1 success, and a 0/1 acceptance."""
    x = rng.normal(size=n)
    value = np.exp(rng.normal(7, 1, n))
    price = rng.uniform(0, 50, n)
    p0 = 1 / (1 + np.exp(-(2 + x)))
    tau = 0.03 * (x > 0) - 0.02 * (x < -1)
    accept = 0.2 + 0.1 * (x > 0)
    return x, value, price, p0, tau, accept


def test_with_true_outcome_models_the_estimate_is_unbiased_and_its_interval_covers():
    rng = np.random.default_rng(3)
    x, value, price, p0, tau, accept = _experiment(rng)
    mu0, mu1 = (p0 - 1) * value, (p0 + tau - 1) * value - accept * price
    truth = (tau * value - accept * price).sum()
    errors, covered = [], []
    for _ in range(300):
        t = rng.random(len(x)) < 0.5
        success = rng.random(len(x)) < p0 + tau * t
        accepted = rng.random(len(x)) < accept
        y = gain(success, accepted, t, value, price, retention=True)
        # the models are off by a constant: the corrections must remove it
        evidence = _evidence(tau=mu1 - mu0 + 3.0, on_campaign=np.ones(len(x), bool), rows=np.arange(len(x)),
                             stratum=[CAMPAIGN] * len(x), r=residuals(y, t, mu0, mu1 + 3.0), treated=t)
        result = policy_value(np.ones(len(x), bool), evidence)
        errors.append(result.estimate - truth)
        covered.append(abs(result.estimate - truth) <= Z95 * result.standard_error)
    errors = np.array(errors)
    assert abs(errors.mean()) < 3 * errors.std() / np.sqrt(len(errors))
    assert 0.9 <= np.mean(covered) <= 0.99


def test_outcome_models_never_score_a_customer_with_its_own_outcome():
    rng = np.random.default_rng(0)
    n = 1_500
    rows = pd.DataFrame({"customer_id": np.arange(n), "x": rng.normal(size=n), "treated": rng.integers(0, 2, n)})
    rows["success"] = (rng.random(n) < 1 / (1 + np.exp(-rows["x"]))).astype(int)
    rows["accepted"] = rows["treated"] * (rng.random(n) < 0.3)
    before = OutcomeModels(["x"], rounds=20).fit(rows).predict(rows)
    flipped = rows.copy()
    fold = customer_folds(rows["customer_id"])
    flipped.loc[fold == 0, "success"] = 1 - flipped.loc[fold == 0, "success"]
    after = OutcomeModels(["x"], rounds=20).fit(flipped).predict(flipped)
    # fold 0's customers are scored by the models of the other folds, which did not change
    assert np.allclose(before.loc[fold == 0].to_numpy(), after.loc[fold == 0].to_numpy())
    assert not np.allclose(before.loc[fold != 0, "p1"], after.loc[fold != 0, "p1"])
    assert (before["p1"] > before["p0"] - 1).all() and before["q"].between(0, 1).all()


def test_customer_folds_are_stable_and_spread():
    folds = customer_folds(np.arange(10_000))
    assert (folds == customer_folds(np.arange(10_000))).all()
    assert np.bincount(folds).min() > 1_800


def test_holdout_for_power_matches_the_normal_approximation():
    z = 1.959964 + 0.841621
    # a huge treated arm: the holdout alone carries the noise, n = (z sd / value)^2
    assert holdout_for_power(0.28, 1.0, 10**9) == int(np.ceil((z / 0.28) ** 2))
    # a smaller treated arm needs a larger holdout; too small a list cannot be read out at all
    assert holdout_for_power(0.28, 1.0, 200) > holdout_for_power(0.28, 1.0, 10**9)
    assert holdout_for_power(0.28, 1.0, 50) is None
    assert holdout_for_power(-1.0, 1.0, 1000) is None


def test_gain_sd_of_a_known_bernoulli():
    # success with probability 0.5 worth 100, never an acceptance: sd 50
    assert gain_sd([0.5, 0.5], [100.0, 100.0], 0.0, [0.0, 0.0]) == pytest.approx(50.0)


def test_conclusions_speak_plainly():
    assert conclusion(100, 20, 180, "CNY", needed_holdout=None, holdout=10).startswith("conclusive: the campaign earned")
    assert conclusion(-100, -180, -20, "CNY", needed_holdout=None, holdout=10).startswith("conclusive: the campaign lost")
    text = conclusion(10, -50, 70, "CNY", needed_holdout=900, holdout=20)
    assert text.startswith("not conclusive") and "900" in text and "this one has 20" in text
