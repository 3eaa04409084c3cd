"""Simple baselines every LightGBM model must beat in the same run.

- binary models: a scikit-learn logistic regression (impute, signed log, scale, one-hot);
- CLV: "last 12 months of net revenue carried forward" over the CLV horizon, discounted like the label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from custbase.config import Labels


def _signed_log(x):
    # Balances and amounts span orders of magnitude; a linear model needs them on a log scale. In place: the
    # imputer's output is a fresh array, and a bank's training matrix is gigabytes.
    x = np.asarray(x, dtype="float64")
    negative = np.signbit(x)
    np.log1p(np.abs(x, out=x), out=x)
    return np.negative(x, out=x, where=negative)


def _as_text(x):
    return x.astype("object").where(x.notna(), "missing").astype("str")


def logistic_baseline(feature_columns: list[str], categorical_columns: list[str], *, seed: int = 0) -> Pipeline:
    """An unfitted logistic-regression pipeline over the given columns."""
    numeric = [c for c in feature_columns if c not in categorical_columns]
    categorical = [c for c in feature_columns if c in categorical_columns]
    prepare = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), FunctionTransformer(_signed_log),
                              StandardScaler(copy=False)),
                numeric,
            ),
            ("categorical", make_pipeline(FunctionTransformer(_as_text), OneHotEncoder(handle_unknown="ignore")), categorical),
        ]
    )
    return Pipeline([("prepare", prepare), ("model", LogisticRegression(C=1.0, max_iter=2_000, random_state=seed))])


def fit_logistic_baseline(X: pd.DataFrame, y: np.ndarray, categorical_columns: list[str], *, seed: int = 0,
                          weight: np.ndarray | None = None) -> Pipeline:
    """Fit :func:`logistic_baseline` on ``X``, ``y`` (with row weights ``weight``, a sampled training's)."""
    return logistic_baseline(list(X.columns), categorical_columns, seed=seed).fit(X, y, model__sample_weight=weight)


#: Rows per call when a baseline predicts: its transforms hold a few float64 copies of the rows they see.
PREDICT_ROWS = 100_000


def predict_in_chunks(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """P(positive) of a fitted :func:`logistic_baseline` for the rows of ``X``, :data:`PREDICT_ROWS` at a time."""
    parts = [model.predict_proba(X.iloc[i:i + PREDICT_ROWS])[:, 1] for i in range(0, len(X), PREDICT_ROWS)]
    return np.concatenate(parts) if parts else np.empty(0)


def clv_carried_forward(frame: pd.DataFrame, labels: Labels) -> np.ndarray:
    """Predicted CLV: the trailing 12-month net revenue, spread evenly over the horizon and discounted monthly.

    Matches the label's convention: month k of the horizon is discounted by (1 + annual rate) ** (k / 12);
    negative trailing revenue predicts 0 (the label is never negative). A customer with less than 12 months of
    tenure (``tenure_months`` + 1 months on the books) has their monthly average taken over those months only.
    """
    if "net_revenue_12m" not in frame.columns:
        raise ValueError(f"the CLV baseline needs column net_revenue_12m, absent from a table of {len(frame)} rows")
    months_seen = np.full(len(frame), 12.0)
    if "tenure_months" in frame.columns:
        months_seen = np.clip(np.nan_to_num(frame["tenure_months"].to_numpy(dtype="float64") + 1, nan=12.0), 1.0, 12.0)
    monthly = frame["net_revenue_12m"].to_numpy(dtype="float64") / months_seen
    months = np.arange(1, labels.clv_horizon_months + 1)
    factor = float(np.sum((1 + labels.clv_annual_discount_rate) ** (-months / 12.0)))
    return np.clip(np.nan_to_num(monthly, nan=0.0) * factor, 0.0, None)
