"""Fairness and segment metrics of a binary model, for its model card.

For each group of age band, gender and value tier on the test months: rows, positives, the realized rate, the
mean prediction, ROC-AUC and expected calibration error (ECE). A group is flagged when its ROC-AUC is more than
``fairness.roc_auc_gap`` and two standard errors (Hanley-McNeil) below the overall one, or when its mean prediction
misses its realized rate by more than ``fairness.calibration_gap`` and two binomial standard errors (a group's ECE
is too noisy at a few hundred rows to flag on); groups smaller than ``fairness.min_group_rows`` are listed, not
flagged. A group with five positives can lag by 0.1 in ROC-AUC by chance alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from custbase.config import Fairness
from training.model_card import fairness_section  # noqa: F401  (rendered with the card; kept importable here)

#: Group attribute -> the customer-month column it comes from.
GROUP_COLUMNS: dict[str, str] = {"age_band": "age", "gender": "gender", "value_tier": "value_tier"}
UNKNOWN = "unknown"


def age_band(age: pd.Series, bounds: Sequence[int]) -> pd.Series:
    """Age bands from the lower bounds after the first: bounds (30, 45, 60) -> <30, 30-44, 45-59, 60+ (unknown if null)."""
    edges = [-np.inf, *bounds, np.inf]
    labels = [f"<{bounds[0]}", *(f"{lo}-{hi - 1}" for lo, hi in zip(bounds[:-1], bounds[1:])), f"{bounds[-1]}+"]
    banded = pd.cut(pd.to_numeric(age, errors="coerce"), edges, labels=labels, right=False)
    return banded.astype("object").where(banded.notna(), UNKNOWN).astype("str")


def groups_of(frame: pd.DataFrame, settings: Fairness) -> dict[str, pd.Series]:
    """The group label of each row per attribute present in ``frame``."""
    out = {}
    for attribute, column in GROUP_COLUMNS.items():
        if column not in frame.columns:
            continue
        if attribute == "age_band":
            out[attribute] = age_band(frame[column], settings.age_band_bounds)
        else:
            values = frame[column].astype("object")
            out[attribute] = values.where(values.notna(), UNKNOWN).astype("str")
    return out


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Standard error of a ROC-AUC (Hanley & McNeil, 1982): a group with a handful of positives has a wide one."""
    if positives < 1 or negatives < 1:
        return float("inf")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    from training.evaluation import expected_calibration_error

    both = 0 < y.sum() < len(y)
    return {"rate": float(y.mean()) if len(y) else float("nan"), "mean_prediction": float(p.mean()) if len(p) else float("nan"),
            "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
            "ece": expected_calibration_error(y, p) if len(y) else float("nan")}


def fairness_table(frame: pd.DataFrame, y_true, prediction, settings: Fairness) -> pd.DataFrame:
    """Metrics by group with flags.

    Parameters
    ----------
    frame
        The scored rows (their ``age``, ``gender``, ``value_tier``); not modified.
    y_true, prediction
        0/1 outcomes and predicted probabilities, one per row of ``frame``.

    Returns
    -------
    pandas.DataFrame
        ``attribute``, ``group``, ``rows``, ``positives``, ``rate``, ``mean_prediction``, ``roc_auc``, ``ece``, ``flag``
        (empty, or why the group lags); the first row is ``overall``.
    """
    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(prediction, dtype="float64")
    overall = _metrics(y, p)
    rows = [{"attribute": "overall", "group": "all", "rows": len(y), "positives": int(y.sum()), **overall, "flag": ""}]
    for attribute, labels in groups_of(frame, settings).items():
        labels = labels.to_numpy()
        for group in sorted(set(labels)):
            mask = labels == group
            m = _metrics(y[mask], p[mask])
            flags = []
            if mask.sum() >= settings.min_group_rows:
                lag = overall["roc_auc"] - m["roc_auc"]
                if not np.isnan(m["roc_auc"]) and lag > max(settings.roc_auc_gap, 2 * auc_standard_error(
                        m["roc_auc"], int(y[mask].sum()), int(mask.sum() - y[mask].sum()))):
                    flags.append(f"ROC-AUC {lag:.3f} below overall")
                gap = m["mean_prediction"] - m["rate"]
                noise = 2 * np.sqrt(max(m["rate"] * (1 - m["rate"]), 1e-12) / mask.sum())
                if abs(gap) > max(settings.calibration_gap, noise):
                    flags.append(f"mean prediction {gap:+.3f} off its rate")
            rows.append({"attribute": attribute, "group": group, "rows": int(mask.sum()), "positives": int(y[mask].sum()),
                         **m, "flag": "; ".join(flags)})
    return pd.DataFrame(rows)


def fairness_card(frame: pd.DataFrame, y_true, prediction, settings: Fairness, feature_columns: Sequence[str]) -> dict:
    """The model card's ``fairness`` entry: the table as records, and which protected attributes the model uses."""
    table = fairness_table(frame, y_true, prediction, settings)
    return {"table": table.to_dict(orient="records"),
            "protected_in_features": [c for c in settings.protected_attributes if c in feature_columns],
            "excluded": settings.exclude_protected_attributes,
            "thresholds": {"roc_auc_gap": settings.roc_auc_gap, "calibration_gap": settings.calibration_gap,
                           "min_group_rows": settings.min_group_rows}}
