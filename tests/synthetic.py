"""The one generator of customer-month tables for tests: known non-linear signals, no bank behind them.

The simulated bank (``features.simulate``) is the end-to-end data; ``tests/raw_factory.py`` writes tiny raw contract
tables for the feature builders. This module is for the layers above the features: training, registry, scoring,
the service and the batch job need a customer-month table whose labels follow known rules of a few features, and
three small models trained on it.

- :func:`synthetic_customer_months`: customers x months with labels ``churn_3m``, ``upgrade_3m``, ``clv_3m``
  (missing for the last 3 months, which have no future yet);
- :func:`scoring_month`: one month end of it, the identity columns and :data:`FEATURES` only, as a scoring input;
- :func:`train_tiny_models`: three small boosters on :data:`FEATURES`, for scoring and service tests;
- :func:`tiny_uplift_bundles`: a retention and an upgrade uplift model with planted effects, as training logs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from custbase.config import Labels
from serving.runtime.bundle import ModelBundle
from serving.runtime.models import BoosterModel, ScoringModels

TIER_BOUNDS = (0.0, 50_000.0, 500_000.0, 6_000_000.0)
TIER_NAMES = ("mass", "affluent", "high_net_worth", "private")
SYNTHETIC_LABELS = Labels(churn_horizon_months=3, upgrade_horizon_months=3, clv_horizon_months=3)
NAMES = SYNTHETIC_LABELS.names  # churn_3m, upgrade_3m, clv_3m


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_customer_months(customers: int = 500, months: int = 24, seed: int = 0, scramble: tuple[str, ...] = (),
                              last_month: str = "2024-12-31", first_id: int = 1, salary_gaps: bool = False) -> pd.DataFrame:
    """A customer-month table whose labels follow known non-linear rules of a few features.

    ``scramble`` lists feature columns to shuffle across rows after the labels are drawn: a table on which a
    model learns a worse ranking (for the promotion gate's "deliberately worse challenger").
    """
    rng = np.random.default_rng(seed)
    as_of = pd.date_range(end=pd.Timestamp(last_month), periods=months, freq="ME")
    n = customers * months
    cid = np.repeat(np.arange(first_id, first_id + customers), months)
    month_index = np.tile(np.arange(months), customers)
    base_aum = np.repeat(rng.lognormal(10.5, 1.4, customers), months)
    engagement = np.repeat(rng.uniform(0, 1, customers), months)
    age = np.repeat(rng.integers(20, 80, customers), months).astype("float64")
    aum_change_ratio_3m = rng.normal(0, 0.25, n)
    aum = base_aum * np.exp(0.02 * month_index + rng.normal(0, 0.1, n))
    logins_3m = rng.poisson(2 + 40 * engagement).astype("float64")
    complaints_3m = rng.poisson(0.15, n).astype("float64")
    product_count = rng.integers(1, 6, n).astype("float64")
    net_revenue_12m = aum * 0.006 + product_count * 40 + rng.normal(0, 30, n)
    tier_rank = np.searchsorted(TIER_BOUNDS, aum, side="right") - 1
    frame = pd.DataFrame(
        {
            "customer_id": cid.astype("int64"),
            "as_of": as_of[month_index],
            "age": age,
            "tenure_months": np.repeat(rng.integers(1, 120, customers), months) + month_index.astype("float64"),
            "gender": np.repeat(rng.choice(["F", "M"], customers), months),
            "city_tier": np.repeat(rng.choice(["tier1", "tier2", "tier3"], customers), months),
            "aum_month_end": aum,
            "aum_change_ratio_3m": aum_change_ratio_3m,
            "logins_3m": logins_3m,
            "complaints_3m": complaints_3m,
            "product_count": product_count,
            "net_revenue_12m": net_revenue_12m,
            "value_tier": np.asarray(TIER_NAMES)[tier_rank],
            "value_tier_rank": tier_rank.astype("float64"),
            "is_dormant": ((logins_3m < 3) & (aum < 2_000)).astype("int64"),
            **{f"noise_{i}": rng.normal(0, 1, n) for i in range(4)},
        }
    )
    # churn: an interaction (falling AUM AND low engagement), complaints, and older customers -- hard for a linear model
    falling_and_idle = (aum_change_ratio_3m < -0.2) & (logins_3m < 15)
    churn_logit = -3.6 + 3.0 * falling_and_idle + 0.9 * complaints_3m + 1.2 * (np.abs(age - 50) > 22)
    churn = rng.uniform(size=n) < _sigmoid(churn_logit)
    # upgrade: customers just below the next tier's threshold (a saw-tooth in AUM) whose AUM is rising
    next_bound = np.asarray(TIER_BOUNDS + (np.inf,))[tier_rank + 1]
    near = (aum / next_bound > 0.7) & (aum / next_bound < 1.0)
    upgrade = rng.uniform(size=n) < _sigmoid(-3.8 + 3.5 * near * (aum_change_ratio_3m > 0.05) + 0.8 * (logins_3m > 25))
    # CLV: zero for churners, else revenue scaled by cross-holding (not captured by revenue carried forward)
    value = np.clip(net_revenue_12m, 0, None) * (0.4 + 0.35 * product_count) * rng.lognormal(0, 0.3, n) / 4
    clv = np.where(churn | (rng.uniform(size=n) < 0.1), 0.0, value)
    labeled = month_index < months - 3
    frame[NAMES.churn] = np.where(labeled, churn.astype("float64"), np.nan)
    frame[NAMES.upgrade] = np.where(labeled & (tier_rank < len(TIER_NAMES) - 1), upgrade.astype("float64"), np.nan)
    frame[NAMES.clv] = np.where(labeled, clv, np.nan)
    if salary_gaps:  # a column with missing values (no salary seen for a fifth of the rows), drawn last
        frame["months_since_last_salary"] = np.where(rng.uniform(size=n) < 0.2, np.nan, rng.integers(0, 6, n)).astype("float64")
    for column in scramble:
        frame[column] = rng.permutation(frame[column].to_numpy())
    return frame


def write_feature_table(frame: pd.DataFrame, path: Path, raw_dir: Path | None = None) -> Path:
    """Write ``frame`` as a customer-month parquet table with the ``custbase`` schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = list(NAMES.labels)
    features = [c for c in frame.columns if c not in ("customer_id", "as_of", *labels)]
    metadata = {
        "feature_set": {"name": "synthetic_v1", "version": 1, "columns": features},
        "categorical_columns": ["gender", "city_tier", "value_tier"],
        "label_columns": labels,
        "labels": SYNTHETIC_LABELS.model_dump(),
        "as_of_min": str(frame["as_of"].min().date()),
        "as_of_max": str(frame["as_of"].max().date()),
        "raw_dir": str(raw_dir) if raw_dir else None,
    }
    table = pa.Table.from_pandas(frame.assign(as_of=frame["as_of"].dt.date), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"custbase": json.dumps(metadata).encode()})
    pq.write_table(table, path)
    return path


#: The features of the tiny models (a mix of numbers, categories, counts, a missing-value column and a policy input).
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
CATEGORIES: dict[str, list[str]] = {"gender": ["F", "M", "U"], "value_tier": list(TIER_NAMES)}


def scoring_month(customers: int = 400, seed: int = 0, as_of: str = "2025-06-30", first_id: int = 1) -> pd.DataFrame:
    """``customers`` rows at month end ``as_of``: ``customer_id``, ``as_of`` and :data:`FEATURES`, as scoring reads them."""
    frame = synthetic_customer_months(customers, months=1, seed=seed, last_month=as_of, first_id=first_id, salary_gaps=True)
    frame = frame.loc[:, ["customer_id", "as_of", *FEATURES]]
    # the top tier is rare in the history (AUM above 6M); a scoring input needs some of it: 3% move up there
    top = np.random.default_rng(seed + 1).uniform(size=customers) < 0.03
    frame.loc[top, "aum_month_end"] = TIER_BOUNDS[-1] * (1 + frame.loc[top, "aum_month_end"] / TIER_BOUNDS[1])
    frame.loc[top, "value_tier"] = TIER_NAMES[-1]
    frame["as_of"] = frame["as_of"].astype("datetime64[us]")
    return frame


def _matrix(frame: pd.DataFrame) -> pd.DataFrame:
    X = frame.loc[:, list(FEATURES)].copy()
    for column, categories in CATEGORIES.items():
        X[column] = pd.Categorical(frame[column].astype("object"), categories=categories)
    return X


def train_tiny_models(frame: pd.DataFrame | None = None, *, num_trees: int = 20, num_leaves: int = 7, version: str = "1") -> ScoringModels:
    """Three small single-threaded boosters on the labeled rows of ``frame`` (default: 400 customers x 24 months)."""
    frame = synthetic_customer_months(400, seed=0, salary_gaps=True) if frame is None else frame
    X = _matrix(frame)
    base = {"num_leaves": num_leaves, "learning_rate": 0.1, "min_data_in_leaf": 5, "num_threads": 1, "verbose": -1, "seed": 0,
            "deterministic": True}
    models = {}
    for name, label, objective in (("churn", NAMES.churn, "binary"), ("upgrade", NAMES.upgrade, "binary"), ("clv", NAMES.clv, "regression")):
        rows = frame[label].notna().to_numpy()
        data = lgb.Dataset(X[rows], label=frame.loc[rows, label], categorical_feature=list(CATEGORIES), free_raw_data=False)
        booster = lgb.train({**base, "objective": objective}, data, num_boost_round=num_trees)
        models[name] = BoosterModel(name, version, booster, list(FEATURES), {k: list(v) for k, v in CATEGORIES.items()},
                                    model_uri=f"models:/custbase-{name}/{version}")
    return ScoringModels(**models)


def tiny_uplift_bundles(frame: pd.DataFrame | None = None, *, seed: int = 0) -> dict[str, ModelBundle]:
    """``{"retention": ..., "upgrade": ...}``: uplift bundles (shift learner, T-learner) learned from a randomized
    offer with a planted effect: a retention offer helps customers with many logins and hurts the rest; an upgrade
    offer helps the affluent tier. Bundles as :func:`training.uplift.train_uplift` logs them."""
    from training.uplift import fit_uplift

    frame = synthetic_customer_months(400, seed=0, salary_gaps=True) if frame is None else frame
    X = _matrix(frame)
    rng = np.random.default_rng(seed)
    treated = rng.random(len(frame)) < 0.5
    planted = {
        "retention": np.where(frame["logins_3m"].to_numpy(dtype="float64") > np.nanmedian(frame["logins_3m"]), 0.2, -0.1),
        "upgrade": np.where(frame["value_tier"].astype("object").eq("affluent").to_numpy(), 0.15, 0.0),
    }
    bundles = {}
    for offer, effect in planted.items():
        outcome = (rng.random(len(frame)) < 0.3 + treated * effect).astype("float64")
        learner = "shift" if offer == "retention" else "t"
        hp = {"learner": learner, "num_leaves": 4, "min_child_samples": 100, "learning_rate": 0.1, "rounds": 30,
              "feature_fraction": 1.0, "lambda_l2": 1.0}
        boosters = fit_uplift(X, treated, outcome, hp)
        bundles[offer] = ModelBundle(f"{offer}-uplift", f"uplift_{learner}", list(FEATURES), {k: list(v) for k, v in CATEGORIES.items()},
                                     boosters, None, {"offer": offer, "propensity": 0.5, "learner": learner})
    return bundles


def with_tiny_uplift(models: ScoringModels, bundles: dict | None = None, version: str = "1") -> ScoringModels:
    """``models`` plus the uplift models of :func:`tiny_uplift_bundles` (or ``bundles``)."""
    from dataclasses import replace

    from serving.runtime.models import uplift_model

    bundles = tiny_uplift_bundles() if bundles is None else bundles
    return replace(models, uplift={offer: uplift_model(b, version, f"models:/custbase-{offer}-uplift/{version}") for offer, b in bundles.items()})
