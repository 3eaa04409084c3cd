"""A tiny synthetic customer-month frame and three tiny LightGBM models, for tests and load measurements.

Not a simulation of a bank (``features.simulate`` is): just enough structure that the three models learn
something, so that scores, segments and reasons vary across customers.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.runtime.models import BoosterModel, ScoringModels

TIERS: tuple[str, ...] = ("mass", "affluent", "high_net_worth", "private")
GENDERS: tuple[str, ...] = ("F", "M", "U")
FEATURES: tuple[str, ...] = (
    "age",
    "gender",
    "tenure_months",
    "value_tier",
    "aum_month_end",
    "aum_change_ratio_3m",
    "complaints_3m",
    "logins_3m",
    "product_count",
    "months_since_last_salary",
    "is_dormant",
)
CATEGORIES: dict[str, list[str]] = {"gender": list(GENDERS), "value_tier": list(TIERS)}


def synthetic_customer_months(n: int = 400, as_of: str = "2025-06-30", seed: int = 0, first_id: int = 1) -> pd.DataFrame:
    """``n`` customers at one month end, with labels ``churn_3m``, ``upgrade_3m``, ``clv_12m``."""
    rng = np.random.default_rng(seed)
    tier_index = rng.choice(len(TIERS), size=n, p=[0.6, 0.25, 0.12, 0.03])
    aum = np.exp(rng.normal(9.5, 1.0, n)) * (1 + 8 * tier_index**2)
    change = rng.normal(0, 0.25, n)
    complaints = rng.poisson(0.3, n).astype(float)
    logins = rng.poisson(6, n).astype(float)
    products = rng.integers(1, 6, n).astype(float)
    dormant = (rng.random(n) < 0.05).astype(float)
    salary_gap = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 6, n)).astype(float)
    churn_logit = -2.0 - 3 * change + 0.8 * complaints - 0.15 * logins + 1.5 * dormant
    upgrade_logit = -2.5 + 2 * change + 0.1 * logins - 0.5 * tier_index
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(first_id, first_id + n, dtype="int64"),
            "as_of": pd.Timestamp(as_of),
            "age": rng.integers(20, 80, n).astype(float),
            "gender": pd.Series(np.asarray(GENDERS)[rng.integers(0, 3, n)], dtype="str"),
            "tenure_months": rng.integers(1, 240, n).astype(float),
            "value_tier": pd.Series(np.asarray(TIERS)[tier_index], dtype="str"),
            "aum_month_end": aum,
            "aum_change_ratio_3m": change,
            "complaints_3m": complaints,
            "logins_3m": logins,
            "product_count": products,
            "months_since_last_salary": salary_gap,
            "is_dormant": dormant,
        }
    )
    frame["as_of"] = frame["as_of"].astype("datetime64[us]")
    frame["churn_3m"] = (rng.random(n) < 1 / (1 + np.exp(-churn_logit))).astype(float)
    frame["upgrade_3m"] = np.where(tier_index == len(TIERS) - 1, np.nan, (rng.random(n) < 1 / (1 + np.exp(-upgrade_logit))).astype(float))
    frame["clv_12m"] = np.maximum(0.0, aum * 0.01 * (1 - frame["churn_3m"]) + rng.normal(0, 50, n))
    return frame


def _matrix(frame: pd.DataFrame) -> pd.DataFrame:
    X = frame.loc[:, list(FEATURES)].copy()
    for column, categories in CATEGORIES.items():
        X[column] = pd.Categorical(frame[column].astype("object"), categories=categories)
    return X


def train_tiny_models(frame: pd.DataFrame, *, num_trees: int = 20, num_leaves: int = 7, version: str = "1") -> ScoringModels:
    """Three small single-threaded boosters on ``frame`` (from :func:`synthetic_customer_months`)."""
    X = _matrix(frame)
    base = {"num_leaves": num_leaves, "learning_rate": 0.1, "min_data_in_leaf": 5, "num_threads": 1, "verbose": -1, "seed": 0,
            "deterministic": True}
    models = {}
    for name, label, objective in (("churn", "churn_3m", "binary"), ("upgrade", "upgrade_3m", "binary"), ("clv", "clv_12m", "regression")):
        rows = frame[label].notna().to_numpy()
        data = lgb.Dataset(X[rows], label=frame.loc[rows, label], categorical_feature=list(CATEGORIES), free_raw_data=False)
        booster = lgb.train({**base, "objective": objective}, data, num_boost_round=num_trees)
        models[name] = BoosterModel(name, version, booster, list(FEATURES), {k: list(v) for k, v in CATEGORIES.items()},
                                    model_uri=f"models:/custbase-{name}/{version}")
    return ScoringModels(**models)


def tiny_models() -> ScoringModels:
    """Models for a development service (``CUSTBASE_MODELS_FACTORY=serving.synthetic:tiny_models``)."""
    return train_tiny_models(synthetic_customer_months(400, seed=0))
