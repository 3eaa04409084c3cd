"""Fairness and segment metrics of binary model cards, and the switch that keeps protected attributes out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config, Fairness
from training.fairness import age_band, fairness_card, fairness_section, fairness_table
from training.model_card import render_model_card


def test_age_bands_from_lower_bounds_with_unknown_for_missing():
    bands = age_band(pd.Series([18, 29.9, 30, 44, 45, 60, 90, None]), (30, 45, 60))
    assert bands.tolist() == ["<30", "<30", "30-44", "30-44", "45-59", "60+", "60+", "unknown"]


def _scored(n=4_000, seed=0):
    """Predictions that rank well for everyone except men over 60, where they are noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(20, 80, n).astype("float64"), "gender": rng.choice(["F", "M"], n),
                          "value_tier": rng.choice(["mass", "affluent"], n)})
    p = rng.beta(1, 4, n)  # calibrated: y is drawn from p
    y = (rng.uniform(size=n) < p).astype("float64")
    blind = ((frame["age"] >= 60) & (frame["gender"] == "M")).to_numpy()
    p[blind] = rng.permutation(p[blind])
    return frame, y, p


def test_a_group_whose_ranking_is_noise_is_flagged_and_small_groups_are_not():
    frame, y, p = _scored()
    frame.loc[:9, "value_tier"] = "private"  # 10 rows: listed, never flagged
    table = fairness_table(frame, y, p, Fairness(min_group_rows=50)).set_index(["attribute", "group"])
    assert table.loc[("overall", "all"), "rows"] == len(y)
    assert "ROC-AUC" in table.loc[("age_band", "60+"), "flag"]
    assert table.loc[("age_band", "30-44"), "flag"] == ""
    assert table.loc[("value_tier", "private"), "rows"] == 10
    assert table.loc[("value_tier", "private"), "flag"] == ""


def test_a_miscalibrated_group_is_flagged():
    frame, y, p = _scored()
    women = (frame["gender"] == "F").to_numpy()
    p = p.copy()
    p[women] = np.clip(p[women] + 0.05, 0, 1)
    table = fairness_table(frame, y, p, Fairness()).set_index(["attribute", "group"])
    assert "off its rate" in table.loc[("gender", "F"), "flag"]
    assert table.loc[("gender", "M"), "flag"] == ""


def test_the_model_card_carries_the_fairness_section_with_flags():
    frame, y, p = _scored()
    card = {"model": {"name": "churn"}, "fairness": fairness_card(frame, y, p, Fairness(), ["age", "logins_3m"])}
    text = render_model_card(card)
    assert "## Fairness and segments" in text
    assert "age_band=60+" in text
    assert "uses protected attributes as features: age" in text
    assert fairness_section({}) == []


def test_excluding_protected_attributes_removes_them_from_the_model_features():
    from synthetic import synthetic_customer_months
    from training.spec import get_spec
    from training.train import prepare_modeling_data

    frame = synthetic_customer_months(customers=80, months=24)
    metadata = {"feature_set": {"columns": [c for c in frame.columns if c not in ("customer_id", "as_of", "churn_3m",
                                                                                   "upgrade_3m", "clv_12m")]},
                "categorical_columns": ["gender", "city_tier", "value_tier"],
                "labels": {"churn_horizon_months": 3, "upgrade_horizon_months": 3, "clv_horizon_months": 3}}
    kept = prepare_modeling_data(frame, metadata, get_spec("clv"), Config())
    config = Config(fairness=Fairness(exclude_protected_attributes=True))
    dropped = prepare_modeling_data(frame, metadata, get_spec("clv"), config)
    assert {"age", "gender"} <= set(kept.feature_columns)
    assert not {"age", "gender"} & set(dropped.feature_columns)
    assert set(kept.feature_columns) - set(dropped.feature_columns) == {"age", "gender"}


def test_auc_standard_error_known_answer_and_a_tiny_group_is_not_flagged():
    from training.fairness import auc_standard_error

    # Hanley & McNeil's table: AUC 0.8 with 50 positives and 50 negatives has SE ~0.045
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(0.0447, abs=0.001)
    frame, y, p = _scored()
    tiny = np.zeros(len(y), dtype=bool)
    tiny[np.flatnonzero(y == 1)[:5]] = True
    tiny[np.flatnonzero(y == 0)[:100]] = True
    frame.loc[tiny, "value_tier"] = "private"
    p = p.copy()
    p[tiny] = np.random.default_rng(3).permutation(p[tiny])  # noise, but 5 positives cannot show it
    table = fairness_table(frame, y, p, Fairness()).set_index(["attribute", "group"])
    assert "ROC-AUC" not in table.loc[("value_tier", "private"), "flag"]
