"""Training-side explanations of a LightGBM model: global importance from per-row contributions.

Contributions (SHAP values) and reason codes live in the runtime (:mod:`serving.runtime.reasons`), which the
service needs; this module adds what only training reports use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["global_importance"]


def global_importance(contrib: np.ndarray, feature_names: Sequence[str]) -> pd.Series:
    """Mean absolute contribution of each feature (bias column dropped), largest first."""
    contrib = np.asarray(contrib)
    if contrib.shape[1] != len(feature_names) + 1:
        raise ValueError(
            f"contributions have {contrib.shape[1]} columns but {len(feature_names)} feature names were given; "
            "expected one more column (the bias)"
        )
    values = np.abs(contrib[:, :-1]).mean(axis=0) if len(contrib) else np.zeros(len(feature_names))
    return pd.Series(values, index=list(feature_names), name="mean_abs_contribution").sort_values(ascending=False)
