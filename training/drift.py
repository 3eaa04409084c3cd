"""Reference profiles of training data and the population stability index (PSI) against them.

A profile is plain JSON, stored in the model bundle's metadata (``reference_profile``) so it travels with the
model into MLflow and the bento: per feature, the bin edges of the training rows (quantiles for numeric
features, the categories for categorical ones) and the share of rows in each bin, with one bin for missing
values; the same for the model's score; and the shares of each calendar month of the year on the same bins, so a
December is compared with the Decembers of the training data (seasonal bonuses and quarterly interest are not
drift). :func:`psi` compares a new frame's shares with the stored ones.

PSI = sum over bins of (actual - expected) x ln(actual / expected), shares floored at :data:`SHARE_FLOOR` so an
empty bin does not give infinity. Common reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

SHARE_FLOOR = 1e-4
PROFILE_FORMAT = 1
SCORE_KEY = "score"


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def numeric_edges(values: pd.Series, bins: int) -> list[float]:
    """Inner bin edges: the distinct quantiles at 1/bins ... (bins-1)/bins of the non-missing values."""
    x = _numeric(values)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return []
    return sorted(set(np.quantile(x, np.arange(1, bins) / bins).tolist()))


def numeric_shares(values: pd.Series, edges: Sequence[float]) -> list[float]:
    """Shares of rows in (-inf, e1], (e1, e2], ..., (ek, inf) and, last, missing."""
    x = _numeric(values)
    missing = np.isnan(x)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype="float64"), x[~missing], side="left"),
                         minlength=len(edges) + 1).astype("float64")
    counts = np.append(counts, missing.sum())
    return (counts / max(len(x), 1)).tolist()


def categorical_shares(values: pd.Series, categories: Sequence[str]) -> list[float]:
    """Shares of rows in each of ``categories``, then any other value, then missing."""
    text = values.astype("object")
    missing = text.isna().to_numpy()
    known = text[~missing].astype("str")
    counts = [float((known == c).sum()) for c in categories]
    counts += [float((~known.isin(list(categories))).sum()), float(missing.sum())]
    return (np.asarray(counts) / max(len(values), 1)).tolist()


def profile_column(values: pd.Series, *, bins: int, categories: Sequence[str] | None = None) -> dict:
    """The reference entry of one column (numeric unless ``categories`` are given)."""
    if categories is not None:
        return {"kind": "categorical", "categories": [str(c) for c in categories],
                "shares": categorical_shares(values, categories)}
    edges = numeric_edges(values, bins)
    return {"kind": "numeric", "edges": edges, "shares": numeric_shares(values, edges)}


def current_shares(values: pd.Series, reference: Mapping) -> list[float]:
    """Shares of ``values`` in the bins of a reference entry."""
    if reference["kind"] == "categorical":
        return categorical_shares(values, reference["categories"])
    return numeric_shares(values, reference["edges"])


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype="float64"), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype="float64"), SHARE_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs share vectors over the same bins, got {len(e)} and {len(a)} bins")
    return float(np.sum((a - e) * np.log(a / e)))


def reference_profile(
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    *,
    score: np.ndarray,
    importance: Mapping[str, float],
    bins: int = 10,
    min_month_rows: int = 200,
) -> dict:
    """The reference profile of a model's training rows.

    Parameters
    ----------
    frame
        The training rows (the model's eligible population); not modified.
    feature_columns, categories
        The model's features and the categories of its categorical ones.
    score
        The model's prediction for each row of ``frame`` (probability or CLV).
    importance
        Feature -> importance (e.g. total gain); stored as each feature's rank (1 = most important).
    bins
        Quantile bins of numeric columns.
    min_month_rows
        A calendar month of the year with at least this many rows gets its own shares (``by_month``, same bins):
        a month is compared with the same month of the training data when it can be, so December bonuses or
        quarterly interest are not reported as drift.
    """
    ranked = sorted(feature_columns, key=lambda c: -float(importance.get(c, 0.0)))
    rank = {c: i + 1 for i, c in enumerate(ranked)}
    score = pd.Series(np.asarray(score, dtype="float64"), index=frame.index)
    features = {}
    for column in feature_columns:
        entry = profile_column(frame[column], bins=bins, categories=categories.get(column))
        features[column] = {**entry, "importance_rank": rank[column]}
    score_entry = profile_column(score, bins=bins)
    by_month = {}
    if "as_of" in frame and len(frame):
        month_of_year = pd.to_datetime(frame["as_of"]).dt.month.to_numpy()
        for month in sorted(set(month_of_year.tolist())):
            rows = month_of_year == month
            if rows.sum() < min_month_rows:
                continue
            part = frame.loc[rows]
            by_month[str(month)] = {
                "rows": int(rows.sum()),
                "features": {c: current_shares(part[c], features[c]) for c in feature_columns},
                SCORE_KEY: current_shares(score[rows], score_entry),
            }
    return {
        "format": PROFILE_FORMAT,
        "rows": int(len(frame)),
        "as_of_min": str(pd.to_datetime(frame["as_of"]).min().date()) if "as_of" in frame and len(frame) else None,
        "as_of_max": str(pd.to_datetime(frame["as_of"]).max().date()) if "as_of" in frame and len(frame) else None,
        "features": features,
        SCORE_KEY: score_entry,
        "by_month": by_month,
    }


def baseline_of(profile: Mapping, month: int | None) -> tuple[dict, dict, str]:
    """Expected shares of each feature and of the score, and which rows they describe: the training rows of the
    same calendar month when the profile has them, else all training rows."""
    seasonal = (profile.get("by_month") or {}).get(str(month)) if month is not None else None
    if seasonal:
        return seasonal["features"], seasonal.get(SCORE_KEY), f"training rows of calendar month {month} ({seasonal['rows']:,})"
    shares = {c: entry["shares"] for c, entry in profile["features"].items()}
    return shares, (profile.get(SCORE_KEY) or {}).get("shares"), f"all training rows ({profile.get('rows', 0):,})"


def profile_psi(profile: Mapping, frame: pd.DataFrame, score: np.ndarray | None = None, month: int | None = None) -> pd.DataFrame:
    """PSI of each profiled feature present in ``frame`` (and of ``score`` when given) against ``profile``
    (against its rows of calendar month ``month`` when it has them, see :func:`baseline_of`).

    Returns
    -------
    pandas.DataFrame
        ``column``, ``kind`` (``feature`` or ``score``), ``importance_rank`` (0 for the score), ``psi``, sorted by
        importance rank, and ``baseline`` (which training rows were compared).
    """
    expected, expected_score, baseline = baseline_of(profile, month)
    rows = []
    for column, reference in profile["features"].items():
        if column not in frame.columns:
            continue
        rows.append({"column": column, "kind": "feature", "importance_rank": int(reference.get("importance_rank", 0)),
                     "psi": psi(expected[column], current_shares(frame[column], reference))})
    if score is not None and expected_score is not None:
        rows.append({"column": SCORE_KEY, "kind": "score", "importance_rank": 0,
                     "psi": psi(expected_score, current_shares(pd.Series(np.asarray(score, dtype="float64")), profile[SCORE_KEY]))})
    out = pd.DataFrame(rows, columns=["column", "kind", "importance_rank", "psi"])
    return out.sort_values("importance_rank", kind="stable").reset_index(drop=True).assign(baseline=baseline)
