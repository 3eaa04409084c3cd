"""The AIPW policy value: known answers on hand-made rows, unbiasedness and coverage on synthetic experiments."""

import numpy as np
import pandas as pd
import pytest

from serving.policy_value import (CAMPAIGN, EXPLORATION, OutcomeModels, PolicyEvidence, corrections, customer_folds, gain,
                                  paired_difference, policy_value)
from serving.runtime.evidence import Z95, conclusion, gain_sd, holdout_for_power


def _evidence(tau, on_campaign, rows, stratum, c, month="2025-07"):
    population = pd.DataFrame({"customer_id": np.arange(len(tau)), "_month": pd.Period(month, "M"), "tau_model": tau,
                               "on_campaign": on_campaign})
    contacts = pd.DataFrame({"row": rows, "_month": pd.Period(month, "M"), "stratum": stratum, "c": c})
    return PolicyEvidence(population, contacts)


def test_campaign_members_stand_for_themselves_and_the_exploration_sample_for_the_rest():
    # rows 0-1 on a campaign list, 2-5 not; rows 2 and 3 are the exploration sample of the non-campaign rows
    evidence = _evidence(tau=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], on_campaign=[True, True, False, False, False, False],
                         rows=[0, 1, 2, 3], stratum=[CAMPAIGN, CAMPAIGN, EXPLORATION, EXPLORATION], c=[10.0, -4.0, 2.0, 6.0])
    everyone = policy_value(np.ones(6, bool), evidence)
    # model effects 21, campaign corrections 10 - 4, exploration's mean correction 4 for each of the 4 others
    assert everyone.estimate == pytest.approx(21 + 6 + 4 * 4)
    assert everyone.randomized_contacts == 4 and everyone.model_only_contacts == 0
    # without an exploration contact among the chosen, the rest is valued by the model alone, and says so
    some = policy_value(np.array([True, False, False, False, True, True]), evidence)
    assert some.estimate == pytest.approx(1 + 10 + 5 + 6) and some.model_only_contacts == 2


def test_a_strategy_against_itself_differs_by_exactly_zero():
    evidence = _evidence(tau=[1.0, 2.0, 3.0], on_campaign=[True, True, True], rows=[0, 1, 2], stratum=[CAMPAIGN] * 3,
                         c=[1.0, -2.0, 4.0])
    a = policy_value(np.ones(3, bool), evidence)
    assert paired_difference(a, a) == (0.0, 0.0)
    b = policy_value(np.array([True, True, False]), evidence)
    diff, se = paired_difference(a, b)
    assert diff == pytest.approx(3 + 4) and se > 0


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
        c = corrections(gain(success, accepted, t, value, price, retention=True), t, 0.5, mu0, mu1)
        # the models are off by a constant: the corrections must remove it
        evidence = _evidence(tau=mu1 - mu0 + 3.0, on_campaign=np.ones(len(x), bool), rows=np.arange(len(x)),
                             stratum=[CAMPAIGN] * len(x), c=c - 3.0)
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
