"""Training on a table prepared elsewhere: ``custbase train churn|upgrade|clv --table PATH --target COLUMN --id COLUMN``.

A bank often has its own customer-month (or single-snapshot) table. This module takes it as it is - parquet or
CSV, text columns as native LightGBM categoricals - screens it for obvious leaks before anything is fitted, and
trains with the same search, tracking and registry as :mod:`training.train`:

* several as_of months: the table is put in the customer-month shape (``customer_id``, ``as_of``, features, the
  model's label column) and trained by :func:`training.train.train` - the same out-of-time split, baseline,
  calibration, evaluation, MLflow run and registered ``challenger`` version;
* one snapshot (no as_of column, or a single value): there is no time to split on, so the run falls back to
  k-fold cross-validation (5 folds, seeded; stratified for binary targets) and says so. The Optuna search of
  :mod:`training.search` is tuned on the cross-validated score; the cross-validated ROC-AUC (normalized Gini
  for CLV) of the tuned model and of a default LightGBM on the same folds are both reported and logged.

Leak screen (before training): identifier-like columns (text or integer values unique per row - within each
as_of month - that are dense, monotone in row order, or named like an id) are excluded; so is any column that
alone separates a binary target almost perfectly (single-feature ROC-AUC >= :data:`LEAK_AUC`, with missing
values as their own level; for text columns out-of-fold target encoding, so a perfect category mapping is
caught and mere high cardinality is not). Both are named, loudly, in the result and the MLflow run.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from custbase.config import Config
from training import evaluation
from serving.runtime.calibration import fit_calibrator
from serving.runtime.bundle import ModelBundle, prepare_features
from training.search import SEARCH_SPACES, SearchResult, default_hyperparameters, lightgbm_params, new_study_name, run_search
from training.spec import KEY_COLUMNS, ModelSpec, get_spec

#: A column whose ROC-AUC against a binary target alone is at least this is reported as a leak and excluded.
LEAK_AUC = 0.98
#: Folds of the single-snapshot cross-validation.
CV_FOLDS = 5
#: LightGBM's own default number of boosting rounds: the "default LightGBM" reference trains exactly this many.
LIGHTGBM_DEFAULT_ROUNDS = 100
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|guid|_key$|_number$|_no$)", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- reading


def sniff_separator(path: Path, sample_bytes: int = 65_536) -> str:
    """The field separator of a CSV file (``,``, ``;``, tab or ``|``), sniffed from its first lines."""
    import csv

    opener = __import__("gzip").open if Path(path).suffix.lower() == ".gz" else open
    with opener(path, "rt", newline="", errors="replace") as handle:
        sample = handle.read(sample_bytes)
    lines = sample.splitlines()
    if len(lines) > 1 and len(sample) >= sample_bytes:
        sample = "\n".join(lines[:-1])  # drop a line cut in the middle
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        # One column, or quoting the sniffer cannot settle: the separator that splits the header most.
        header = lines[0] if lines else ""
        return max(",;\t|", key=header.count) if any(d in header for d in ",;\t|") else ","


def read_prepared_table(path: Path, *, sep: str | None = None) -> pd.DataFrame:
    """Read a parquet file, a folder of parquet files, or a CSV file (separator ``sep``, sniffed when None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prepared table {path} does not exist")
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt", ".gz", ".tsv"):
        return pd.read_csv(path, sep=sep if sep is not None else sniff_separator(path))
    raise ValueError(f"prepared table {path}: expected a .parquet or .csv file")


def missing_column_message(role: str, column: str, columns: list[str], rows: int) -> str:
    """``--target column 'x' is not in the table``, with the closest names and every column of the table."""
    import difflib

    names = [str(c) for c in columns]
    folded = {n.lower(): n for n in names}
    close = difflib.get_close_matches(column.lower(), list(folded), n=3, cutoff=0.5)
    hint = f" did you mean {' or '.join(repr(folded[c]) for c in close)}?" if close else ""
    return f"{role} column {column!r} is not in the prepared table ({rows:,} rows);{hint} its {len(names)} columns: {', '.join(names)}"


#: Two-valued targets whose positive class is obvious (compared in lower case, stripped).
_KNOWN_PAIRS = (("yes", "no"), ("y", "n"), ("true", "false"), ("t", "f"), ("1", "0"), ("1.0", "0.0"))
#: Words that name the event of each binary model ("Attrited Customer", "Exited", "Upgraded").
EVENT_WORDS = {
    "churn": re.compile(r"attrit|churn|exit|\bleft\b|leav|lost|closed|cancel|defect|quit|dormant", re.IGNORECASE),
    "upgrade": re.compile(r"upgrad|moved up|promot", re.IGNORECASE),
}


def binary_target(values: pd.Series, *, target: str, positive: str | None,
                  event: re.Pattern | None = None) -> tuple[pd.Series, str | None]:
    """A 0/1 float target from ``values`` and a line saying how text was mapped (None when already numeric 0/1).

    Text or boolean targets with two values map to 1 for ``positive`` (e.g. ``"Attrited Customer"``) and 0 for the
    other value; without ``positive`` a yes/no, y/n, true/false, t/f or 1/0 pair is recognised, or the one value
    that names the model's ``event`` (:data:`EVENT_WORDS`: "Attrited Customer" for churn). Anything else is a
    one-line error naming the values found.
    """
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64"), f"target {target!r}: True -> 1, False -> 0"
    numbers = pd.to_numeric(values, errors="coerce")
    if positive is None and numbers.notna().all() and set(np.unique(numbers)) <= {0.0, 1.0}:
        return numbers.astype("float64"), None
    text = values.astype("str").str.strip()
    found = sorted(text.unique())
    if len(found) != 2:
        shown = ", ".join(repr(v) for v in found[:10]) + (" ..." if len(found) > 10 else "")
        raise ValueError(f"target column {target!r} must have two classes for a binary model; found {len(found)}: {shown}")
    if positive is not None:
        matches = [v for v in found if v == str(positive).strip()] or [v for v in found if v.lower() == str(positive).strip().lower()]
        if not matches:
            raise ValueError(f"--positive {positive!r} is not a value of target column {target!r}; its values are {found[0]!r} and {found[1]!r}")
        chosen = matches[0]
        how = "named by --positive"
    else:
        lower = {v.lower(): v for v in found}
        pair = next((p for p in _KNOWN_PAIRS if set(p) == set(lower)), None)
        named = [v for v in found if event is not None and event.search(v)]
        if pair is not None:
            chosen = lower[pair[0]]
        elif len(named) == 1:
            chosen = named[0]
        else:
            raise ValueError(
                f"target column {target!r} holds text ({found[0]!r}, {found[1]!r}): name the positive class, "
                f"e.g. --positive {found[0]!r}"
            )
        how = "inferred; --positive overrides"
    negative = found[1] if chosen == found[0] else found[0]
    mapped = (text == chosen).astype("float64")
    return mapped, f"target {target!r}: {chosen!r} -> 1 ({int(mapped.sum()):,} rows), {negative!r} -> 0 ({how})"


# --------------------------------------------------------------------------------------------- leak screen


@dataclass(frozen=True)
class ColumnFinding:
    """One column excluded before training, and why."""

    column: str
    kind: str  # "identifier" | "leak"
    reason: str
    score: float | None = None


@dataclass(frozen=True)
class LeakReport:
    """What the screen found among the candidate feature columns."""

    identifiers: tuple[ColumnFinding, ...]
    leaks: tuple[ColumnFinding, ...]
    checked: int
    labels: tuple[ColumnFinding, ...] = ()

    @property
    def excluded(self) -> list[str]:
        return [f.column for f in (*self.labels, *self.identifiers, *self.leaks)]

    def to_dict(self) -> dict:
        return {
            "checked_columns": self.checked,
            "label_like_columns": {f.column: f.reason for f in self.labels},
            "identifier_columns": {f.column: f.reason for f in self.identifiers},
            "leaking_columns": {f.column: f.reason for f in self.leaks},
        }

    def render(self) -> str:
        if not self.excluded:
            return f"leak screen: {self.checked} columns checked, no label-like, identifier-like or leaking column"
        lines = [f"leak screen: {self.checked} columns checked; EXCLUDED {len(self.excluded)} before training:"]
        lines += [f"  !!! label-like column {f.column!r}: {f.reason}" for f in self.labels]
        lines += [f"  !!! identifier-like column {f.column!r}: {f.reason}" for f in self.identifiers]
        lines += [f"  !!! LEAK {f.column!r}: {f.reason}" for f in self.leaks]
        return "\n".join(lines)


#: The project's own label columns (any horizon: ``churn_3m``, ``clv_9m``) and the censored-label exposure.
_PROJECT_LABEL = re.compile(r"^(churn|upgrade|clv)_\d+m$|^label_exposure_months$")
#: Names that say "this is the target" whatever the data.
_TARGET_WORDS = frozenset({"target", "label", "class", "outcome", "y"})


def _folded(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def label_like_reason(column: str, target: str | None) -> str | None:
    """Why ``column`` looks like a label rather than a feature (named like the target, or a label of this project)."""
    if _PROJECT_LABEL.match(str(column)):
        return "a label column of custbase (a model's outcome, known only after as_of)"
    name = _folded(column)
    if name in _TARGET_WORDS:
        return "named like a target"
    if target is not None:
        wanted = _folded(target)
        if len(wanted) >= 3 and wanted in name:
            return f"its name contains the target's name {target!r}: a copy, an encoding or a score of the target"
    return None


def _single_feature_auc(values: pd.Series, y: np.ndarray) -> float:
    """max(AUC, 1 - AUC) of one numeric column, missing values ranked lowest and highest (the better of both)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    missing = np.isnan(x)
    best = 0.5
    for fill in (-np.inf, np.inf) if missing.any() else (0.0,):
        filled = np.where(missing, fill, x)
        if np.all(filled == filled[0]):
            continue
        # roc_auc_score needs finite scores: the ranks are what matter.
        auc = roc_auc_score(y, pd.Series(filled).rank(method="average").to_numpy())
        best = max(best, auc, 1 - auc)
    return float(best)


def _out_of_fold_encoding_auc(values: pd.Series, y: np.ndarray, seed: int) -> float:
    """max(AUC, 1 - AUC) of an out-of-fold target-mean encoding of a text column (missing = its own category)."""
    text = values.astype("object").where(values.notna(), "<missing>").astype("str").to_numpy()
    encoded = np.full(len(y), np.nan)
    prior = float(np.mean(y))
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed) if min(np.bincount(y.astype(int))) >= CV_FOLDS \
        else KFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    for fit_rows, score_rows in folds.split(text, y):
        means = pd.Series(y[fit_rows]).groupby(text[fit_rows]).mean()
        encoded[score_rows] = pd.Series(text[score_rows]).map(means).fillna(prior).to_numpy()
    auc = roc_auc_score(y, encoded)
    return float(max(auc, 1 - auc))


def _is_text(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _identifier_reason(name: str, values: pd.Series, groups: pd.Series | None) -> str | None:
    """Why ``values`` looks like an identifier, or None."""
    present = values.dropna()
    if len(present) < 20:
        return None
    unique_per_row = (
        present.groupby(groups.loc[present.index]).nunique().sum() == len(present)
        if groups is not None
        else present.nunique() == len(present)
    )
    if not unique_per_row:
        return None
    where = " within each as_of month" if groups is not None else ""
    if _is_text(values):
        return f"text values unique per row{where} ({len(present):,} rows)"
    numbers = pd.to_numeric(present, errors="coerce")
    if not np.allclose(numbers, np.round(numbers)):
        return None  # continuous measurements are naturally unique
    span = float(numbers.max() - numbers.min() + 1)
    if _ID_NAME.search(name):
        return f"integer values unique per row{where}, named like an identifier"
    if present.is_monotonic_increasing or present.is_monotonic_decreasing:
        return f"integer values unique per row{where} and monotone in row order (a sequence number)"
    if groups is None and span <= 1.5 * len(present):
        return f"integer values unique per row and dense ({len(present):,} values over a range of {span:,.0f}): a row number"
    return None


def screen_columns(
    frame: pd.DataFrame,
    columns: list[str],
    y: np.ndarray,
    *,
    binary: bool,
    groups: pd.Series | None = None,
    seed: int = 0,
    target: str | None = None,
) -> LeakReport:
    """Find label-like, identifier-like and leaking columns among ``columns`` of ``frame`` (``y`` aligned with its rows).

    Label-like names (:func:`label_like_reason`: named like ``target``, or one of this project's label columns)
    are refused for every model kind. ``groups`` (e.g. the as_of month) makes uniqueness per group the identifier
    test. The leak test is the single-feature ROC-AUC >= :data:`LEAK_AUC` for binary targets, and for CLV a
    rank correlation with the target of at least :data:`LEAK_AUC` (a copy or a monotone transform of it).
    """
    identifiers, leaks, labels = [], [], []
    for column in columns:
        reason = label_like_reason(column, target)
        if reason is not None:
            labels.append(ColumnFinding(column, "label", reason))
            continue
        reason = _identifier_reason(column, frame[column], groups)
        if reason is not None:
            identifiers.append(ColumnFinding(column, "identifier", reason))
            continue
        if frame[column].nunique(dropna=False) < 2:
            continue
        text = _is_text(frame[column])
        if not binary:
            if text:
                continue
            rho = pd.Series(pd.to_numeric(frame[column], errors="coerce").to_numpy()).corr(pd.Series(y), method="spearman")
            if np.isfinite(rho) and abs(rho) >= LEAK_AUC:
                leaks.append(ColumnFinding(column, "leak", f"rank correlation {rho:.4f} with the target: a copy of it", float(abs(rho))))
            continue
        auc = _out_of_fold_encoding_auc(frame[column], y, seed) if text else _single_feature_auc(frame[column], y)
        if auc >= LEAK_AUC:
            how = "out-of-fold category mapping" if text else "single-feature"
            leaks.append(ColumnFinding(column, "leak", f"{how} ROC-AUC {auc:.4f} >= {LEAK_AUC} separates the target alone", auc))
    return LeakReport(tuple(identifiers), tuple(leaks), len(columns), tuple(labels))


# --------------------------------------------------------------------------------------------- shaping


@dataclass(frozen=True)
class PreparedTable:
    """A user's table in the customer-month shape: keys, features, and the model's label column."""

    frame: pd.DataFrame
    feature_columns: list[str]
    categories: dict[str, list[str]]
    months: int
    screen: LeakReport
    source: str
    target: str
    notes: tuple[str, ...] = ()


ROW_NUMBER_ID = "row number"


def shape_prepared_table(
    raw: pd.DataFrame,
    spec: ModelSpec,
    *,
    target: str,
    id_column: str | None,
    as_of_column: str | None,
    positive: str | None = None,
    seed: int = 0,
    source: str = "",
) -> PreparedTable:
    """Rename keys to ``customer_id``/``as_of`` and the target to ``spec.label``, screen and pick the features.

    Rows without a target are dropped; ``raw`` is not changed. A table without an as_of column gets a single
    placeholder as_of (the snapshot); without an id column the row number is the customer id. Binary text
    targets are mapped by :func:`binary_target`. What was assumed is returned in ``notes``.
    """
    for role, column in (("--target", target), ("--id", id_column), ("--as-of", as_of_column)):
        if column is not None and column not in raw.columns:
            raise ValueError(missing_column_message(role, column, list(raw.columns), len(raw)))
    notes: list[str] = []
    labeled = raw.loc[raw[target].notna()]
    if labeled.empty:
        raise ValueError(f"target column {target!r} is empty in all {len(raw):,} rows")
    if spec.kind == "binary":
        y, mapping = binary_target(labeled[target], target=target, positive=positive, event=EVENT_WORDS.get(spec.name))
        if mapping:
            notes.append(mapping)
        if y.nunique() < 2:
            raise ValueError(f"target column {target!r} has a single class in all {len(y):,} labeled rows: nothing to learn")
    else:
        if positive is not None:
            raise ValueError(f"--positive applies to binary models; the {spec.name} target {target!r} is a number")
        y = pd.to_numeric(labeled[target], errors="coerce")
        if y.isna().any():
            bad = labeled[target][y.isna()].astype("str").unique()[:3]
            raise ValueError(f"target column {target!r} of the {spec.name} model must be a number; "
                             f"{int(y.isna().sum()):,} values are not (e.g. {', '.join(map(repr, bad))})")
        if y.nunique() < 2:
            raise ValueError(f"target column {target!r} is the constant {float(y.iloc[0]):g} in all {len(y):,} labeled rows: nothing to learn")
    as_of = (
        pd.to_datetime(labeled[as_of_column]).astype("datetime64[us]")
        if as_of_column is not None
        else pd.Series(pd.Timestamp("1970-01-31"), index=labeled.index, dtype="datetime64[us]")
    )
    if id_column is None:
        ids = pd.Series(np.arange(1, len(labeled) + 1, dtype="int64"), index=labeled.index)
        notes.append("no --id: each row is its own customer (customer_id = row number)")
    else:
        ids = labeled[id_column]
    keys = {target, *([id_column] if id_column else []), *([as_of_column] if as_of_column else [])}
    candidates = [c for c in raw.columns if c not in keys]
    groups = as_of.dt.to_period("M") if as_of.nunique() > 1 else None
    if id_column is not None and pd.DataFrame({"id": ids, "as_of": as_of}).duplicated().any():
        raise ValueError(f"the prepared table has several rows per {id_column!r}{' and as_of' if as_of_column else ''}: one row per customer"
                         f"{' and month' if as_of_column else ''} is needed")
    screen = screen_columns(labeled, candidates, y.to_numpy(dtype="float64"), binary=spec.kind == "binary", groups=groups,
                            seed=seed, target=target)
    features = [c for c in candidates if c not in screen.excluded]
    if not features:
        raise ValueError("no feature column is left after the leak screen; " + screen.render())
    frame = pd.DataFrame({"customer_id": ids.to_numpy(), "as_of": as_of.to_numpy()}, index=labeled.index)
    frame = pd.concat([frame, labeled[features], y.rename(spec.label)], axis=1).reset_index(drop=True)
    if not pd.api.types.is_integer_dtype(frame["customer_id"]):
        # Text customer ids: number them (the customer-month table's customer_id is int64), keeping the order seen.
        frame["customer_id"] = pd.factorize(frame["customer_id"])[0].astype("int64") + 1
    categories = {c: sorted(map(str, frame[c].dropna().unique())) for c in features if _is_text(frame[c])}
    return PreparedTable(frame, features, categories, int(as_of.nunique()), screen, source, target, tuple(notes))


# --------------------------------------------------------------------------------------------- cross-validation


def fold_kind(binary: bool) -> str:
    """How the folds are drawn, in words: stratification only exists for a binary target."""
    return f"stratified {CV_FOLDS}-fold" if binary else f"{CV_FOLDS}-fold"


def cv_logistic_regression(frame: pd.DataFrame, feature_columns: list[str], categorical: list[str], y: np.ndarray,
                           folds: list, *, seed: int) -> float:
    """Mean validation ROC-AUC of the project's logistic-regression baseline over ``folds`` (same folds as LightGBM)."""
    from training.baselines import fit_logistic_baseline

    X = frame[feature_columns]
    scores = []
    for fit_rows, valid_rows in folds:
        model = fit_logistic_baseline(X.iloc[fit_rows], y[fit_rows], categorical, seed=seed)
        scores.append(roc_auc_score(y[valid_rows], model.predict_proba(X.iloc[valid_rows])[:, 1]))
    return float(np.mean(scores))


def cv_folds(y: np.ndarray, *, binary: bool, seed: int, n_splits: int = CV_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (stratified for binary targets) k-fold splits as (fit rows, validation rows) index arrays."""
    splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed) if binary else KFold(n_splits, shuffle=True, random_state=seed)
    return [(fit, valid) for fit, valid in splitter.split(np.zeros(len(y)), y)]


def _gini_feval(preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
    value = evaluation.normalized_gini(data.get_label(), preds)
    return "normalized_gini", float(value) if np.isfinite(value) else 0.0, True


def default_lightgbm_params(kind: str, *, num_threads: int, seed: int) -> dict:
    """LightGBM's own defaults (what ``LGBMClassifier()`` / ``LGBMRegressor()`` fit), with the run's threads and seed."""
    return {"objective": "binary" if kind == "binary" else "regression", "metric": "auc" if kind == "binary" else "None",
            "num_threads": num_threads, "seed": seed, "verbosity": -1, "deterministic": True, "force_col_wise": True}


def cross_validate(
    params: dict,
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list,
    *,
    kind: str,
    num_boost_round: int,
    early_stopping_rounds: int | None = None,
    min_delta: float = 0.0,
    callbacks: list | None = None,
) -> tuple[float, int, lgb.CVBooster]:
    """Mean validation ROC-AUC (binary) or normalized Gini (CLV) over ``folds``, the best round and the fold models.

    With ``early_stopping_rounds`` the score is that of the best mean round; without, that of the last round.
    """
    data = lgb.Dataset(X, label=y, free_raw_data=False, params={"feature_pre_filter": False, "verbosity": -1})
    stops = [lgb.early_stopping(early_stopping_rounds, verbose=False, min_delta=min_delta)] if early_stopping_rounds else []
    result = lgb.cv(
        params, data, num_boost_round=num_boost_round, folds=folds, feval=_gini_feval if kind != "binary" else None,
        callbacks=[*stops, *(callbacks or [])], return_cvbooster=True,
    )
    metric = "valid auc-mean" if kind == "binary" else "valid normalized_gini-mean"
    curve = result[metric]
    best = int(np.argmax(curve)) if early_stopping_rounds else len(curve) - 1
    return float(curve[best]), best + 1, result["cvbooster"]


def out_of_fold_predictions(cvbooster: lgb.CVBooster, X: pd.DataFrame, folds: list, num_iteration: int) -> np.ndarray:
    """Each row's prediction by the fold model that did not see it."""
    out = np.full(len(X), np.nan)
    for booster, (_, valid) in zip(cvbooster.boosters, folds):
        out[valid] = booster.predict(X.iloc[valid], num_iteration=num_iteration)
    return out


# --------------------------------------------------------------------------------------------- result


@dataclass
class PreparedResult:
    """What one ``custbase train MODEL --table`` did."""

    model: str
    mode: str  # "out_of_time" | "cross_validation"
    table: str
    target: str
    rows: int
    months: int
    feature_columns: list[str]
    categorical_columns: list[str]
    screen: LeakReport
    registered_name: str = ""
    version: str = ""
    run_id: str = ""
    tracking_uri: str = ""
    cv_metric: str = ""
    cv_tuned: float | None = None
    cv_default: float | None = None
    cv_logistic: float | None = None  # binary only: logistic regression on the same folds
    cv_best_rounds: int | None = None
    recheck_tuned: float | None = None  # the kept model and the default on fresh folds (another seed): no selection bias
    recheck_default: float | None = None
    kept: str = ""
    search: SearchResult | None = None
    train_result: object | None = None  # training.train.TrainResult on the out-of-time path
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"{self.model} on prepared table {self.table}: {self.rows:,} labeled rows, {self.months} as_of month(s), "
            f"target {self.target!r}, {len(self.feature_columns)} features ({len(self.categorical_columns)} categorical: "
            f"{', '.join(self.categorical_columns) or '-'})",
            self.screen.render(),
        ]
        if self.mode == "out_of_time":
            lines.append("out-of-time split on the as_of months (as in `custbase train`):")
            lines.append(self.train_result.render() if self.train_result is not None else "")
        else:
            s = self.search
            lines += [
                f"ONE SNAPSHOT: no time to split on -> FELL BACK to {fold_kind(self.cv_metric == 'roc_auc')} cross-validation (seeded); "
                "no held-out test months, so these are cross-validated figures",
                f"  registered {self.registered_name} version {self.version} (alias challenger), run {self.run_id} ({self.tracking_uri})",
                f"  search: study {s.study_name}, {s.trials_total} trials ({s.trials_pruned} pruned), tuned on CV {self.cv_metric}",
                f"  CV {self.cv_metric}: tuned {self.cv_tuned:.4f} ({self.cv_best_rounds} rounds, kept {self.kept})   "
                f"default LightGBM {self.cv_default:.4f} ({LIGHTGBM_DEFAULT_ROUNDS} rounds)"
                + (f"   logistic regression {self.cv_logistic:.4f}" if self.cv_logistic is not None else "")
                + f"   same {CV_FOLDS} folds",
                f"  re-check on fresh folds (seed + 1; the tuned figure above was selected on its own folds): "
                f"tuned {self.recheck_tuned:.4f}, default LightGBM {self.recheck_default:.4f}",
            ]
            lines.append("  wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- training


def train_prepared_table(
    model: str,
    config: Config,
    *,
    table: Path,
    target: str,
    id_column: str | None = None,
    as_of_column: str | None = None,
    positive: str | None = None,
    sep: str | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    resume: bool = False,
    progress: bool = True,
) -> PreparedResult:
    """Train ``model`` (``churn``, ``upgrade`` or ``clv``) on a table built elsewhere, with the usual search and registry.

    Parameters
    ----------
    table
        Parquet or CSV: one row per customer (snapshot) or per customer and as_of month.
    target, id_column, as_of_column
        The label column (0/1 or two text values for churn and upgrade, currency for CLV), the customer id
        (optional: without it each row is a customer), and the as_of date column (optional: without it, or with a
        single value, the run cross-validates).
    positive
        The positive class of a two-valued text target (``"Attrited Customer"``); yes/no-like pairs are inferred.
    sep
        CSV field separator; sniffed from the file when None.
    trials, timeout, resume
        As for ``custbase train``: Optuna trials, wall-time budget (s), continue the newest study of the same data.
    """
    spec = get_spec(model, config.labels)
    settings = config.training
    began = time.perf_counter()
    raw = read_prepared_table(table, sep=sep)
    prepared = shape_prepared_table(raw, spec, target=target, id_column=id_column, as_of_column=as_of_column,
                                    positive=positive, seed=settings.seed, source=str(table))
    del raw
    if progress:
        print("\n".join([*prepared.notes, prepared.screen.render()]), flush=True)
    if prepared.months > 1:
        return _train_out_of_time(spec, config, prepared, trials=trials, timeout=timeout, resume=resume, progress=progress)
    return _train_cross_validated(spec, config, prepared, trials=trials, timeout=timeout, resume=resume, progress=progress, began=began)


def _result(spec: ModelSpec, prepared: PreparedTable, mode: str) -> PreparedResult:
    return PreparedResult(
        model=spec.name, mode=mode, table=prepared.source, target=prepared.target, rows=len(prepared.frame),
        months=prepared.months, feature_columns=prepared.feature_columns, categorical_columns=list(prepared.categories),
        screen=prepared.screen, notes=list(prepared.notes),
    )


def _train_out_of_time(spec, config, prepared: PreparedTable, *, trials, timeout, resume, progress) -> PreparedResult:
    """Train the shaped table with the core of ``custbase train`` (:func:`training.train.train`): the same split,
    baseline, calibration, evaluation, MLflow run and registered challenger."""
    from training.jobs import retention_clv
    from training.runs import MlflowTracker
    from training.train import train

    result = _result(spec, prepared, "out_of_time")
    frame = prepared.frame
    if spec.kind == "clv" and "net_revenue_12m" not in frame.columns:
        raise ValueError(
            "the CLV model's baseline (last 12 months of net revenue carried forward) needs a column net_revenue_12m; "
            "add it to the prepared table, or train CLV on a single snapshot (cross-validation)"
        )
    if spec.name == "churn" and "net_revenue_12m" not in frame.columns:
        # The retention-profit figures need a CLV per customer; without one they are computed with CLV 0.
        frame = frame.assign(net_revenue_12m=np.nan)
        result.notes.append("no net_revenue_12m column: retention-profit figures use CLV 0 (ignore them)")
    # The metadata a customer-month table would carry (as JSON reads it back).
    metadata = json.loads(json.dumps({
        "feature_set": {"name": f"prepared:{Path(prepared.source).name}", "version": 1, "columns": prepared.feature_columns},
        "categorical_columns": list(prepared.categories),
        "label_columns": [spec.label],
        "labels": config.labels.model_dump(),
        "source": prepared.source,
        "leak_screen": prepared.screen.to_dict(),
    }, default=str))
    tracker = MlflowTracker(config)
    record = {"tags": {"prepared_table": prepared.source, "prepared_target": prepared.target,
                       "prepared_excluded_columns": ", ".join(prepared.screen.excluded) or "none", "validation_mode": "out_of_time",
                       "prepared_notes": "; ".join(prepared.notes) or "none"},
              "dicts": {"leak_screen.json": prepared.screen.to_dict()}}
    trained = train(frame, metadata, spec, config, tracker, retention_clv=retention_clv() if spec.name == "churn" else None,
                    trials=trials, timeout=timeout, resume=resume, progress=progress, source=prepared.source, run_record=record)
    result.train_result = trained
    result.registered_name, result.version, result.run_id, result.tracking_uri = (
        trained.registered_name, trained.version, trained.run_id, trained.tracking_uri)
    return result


def _lightgbm_default_point(kind: str) -> dict:
    """LightGBM's defaults as near as the search space allows (0.1 learning rate, 31 leaves, 20 rows per leaf, no
    bagging, ~no L2, unweighted classes; depth at the space's cap, LightGBM's own is unlimited): a candidate the
    search always tries."""
    point = {"learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 1.0,
             "bagging_fraction": 1.0, "lambda_l2": 1e-3}
    names = {h.name: h for h in SEARCH_SPACES[kind]}
    if "max_depth" in names:
        point["max_depth"] = int(names["max_depth"].high)
    return {**point, "positive_weight_power": 0.0} if kind == "binary" else {**point, "tweedie_variance_power": 1.5}


def _prepare_study(storage_url: str, prefix: str, kind: str, resume: bool) -> None:
    """Create the study with two enqueued first trials: the search's own defaults and LightGBM's defaults.

    :func:`training.search.run_search` then continues it (``resume=True``); with ``resume`` and an existing
    study of the same data, that study is continued instead.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage_url) if s.study_name.startswith(prefix)]
    if resume and names:
        return
    study = optuna.create_study(study_name=new_study_name(prefix), storage=storage_url, direction="maximize")
    study.enqueue_trial(default_hyperparameters(kind))
    study.enqueue_trial(_lightgbm_default_point(kind))


def _train_cross_validated(spec, config, prepared: PreparedTable, *, trials, timeout, resume, progress, began) -> PreparedResult:
    from training import registry, tracking
    from training.runs import log_run, prefixed

    settings = config.training
    result = _result(spec, prepared, "cross_validation")
    frame = prepared.frame
    X = prepare_features(frame, prepared.feature_columns, prepared.categories)
    y = frame[spec.label].to_numpy(dtype="float64")
    binary = spec.kind == "binary"
    folds = cv_folds(y, binary=binary, seed=settings.seed)
    result.cv_metric = "roc_auc" if binary else "normalized_gini"
    positive_rate = float(y.mean()) if binary else None
    seconds = result.seconds

    def params_for(hyperparameters: dict) -> dict:
        return lightgbm_params(spec.kind, hyperparameters, num_threads=settings.num_threads, seed=settings.seed, positive_rate=positive_rate)

    t = time.perf_counter()
    default_params = default_lightgbm_params(spec.kind, num_threads=settings.num_threads, seed=settings.seed)
    result.cv_default, _, _ = cross_validate(default_params, X, y, folds, kind=spec.kind, num_boost_round=LIGHTGBM_DEFAULT_ROUNDS)
    seconds["default_cv"] = time.perf_counter() - t
    if binary:
        t = time.perf_counter()
        result.cv_logistic = cv_logistic_regression(frame, prepared.feature_columns, list(prepared.categories), y, folds, seed=settings.seed)
        seconds["logistic_cv"] = time.perf_counter() - t

    uri = tracking.configure_tracking(config)
    fingerprint = tracking.data_fingerprint(frame)
    experiment_id = tracking.ensure_experiment(spec.registered_name, config)
    commit = tracking.git_commit()
    storage_url = tracking.optuna_storage_url(config)
    prefix = f"custbase-{spec.name}-cv-{fingerprint['content_hash'][:10]}"
    with tracking.training_run(experiment_id, run_name=f"{spec.name}-cv-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}") as run:
        log_run(run,
                tags={"model": spec.name, "git_commit": commit, "mlflow.source.git.commit": commit, "validation_mode": "cross_validation",
                      "validation_note": f"single snapshot: fell back to {fold_kind(binary)} cross-validation",
                      "prepared_table": prepared.source, "prepared_target": prepared.target,
                      "prepared_notes": "; ".join(prepared.notes) or "none",
                      "prepared_excluded_columns": ", ".join(prepared.screen.excluded) or "none"},
                dicts={"leak_screen.json": prepared.screen.to_dict(),
                       "feature_set.json": {"name": f"prepared:{Path(prepared.source).name}", "columns": prepared.feature_columns,
                                            "categories": prepared.categories}},
                params={"model": spec.name, "label": prepared.target, "feature_count": len(prepared.feature_columns),
                        **prefixed("data_", fingerprint), "cv_folds": CV_FOLDS, "rows": len(frame),
                        "num_threads": settings.num_threads, "seed": settings.seed})

        def evaluate(hyperparameters: dict, callbacks: list) -> tuple[float, int]:
            score, rounds, _ = cross_validate(params_for(hyperparameters), X, y, folds, kind=spec.kind,
                                              num_boost_round=settings.max_boost_rounds,
                                              early_stopping_rounds=settings.early_stopping_rounds,
                                              min_delta=settings.early_stopping_min_delta, callbacks=callbacks)
            return score, rounds

        t = time.perf_counter()
        _prepare_study(storage_url, prefix, spec.kind, resume)
        search = run_search(evaluate, spec.kind, study_prefix=prefix, storage_url=storage_url,
                            trials=max(1, settings.trials if trials is None else trials),
                            timeout=settings.timeout_seconds if timeout is None else timeout, seed=settings.seed,
                            resume=True, on_trial=run.trial_logger(experiment_id, spec.name), progress=progress)
        seconds["search"] = time.perf_counter() - t

        t = time.perf_counter()
        if search.best_value >= result.cv_default:
            params, rounds, result.kept = params_for(search.best_hyperparameters), search.best_iteration, "best trial"
            result.cv_tuned = search.best_value
        else:  # the search never found better than LightGBM's defaults: keep them (the CV objective decides)
            params, rounds, result.kept = default_params, LIGHTGBM_DEFAULT_ROUNDS, "LightGBM defaults (no trial beat them)"
            result.cv_tuned = result.cv_default
        _, _, cvbooster = cross_validate(params, X, y, folds, kind=spec.kind, num_boost_round=rounds)
        oof = out_of_fold_predictions(cvbooster, X, folds, rounds)
        main = lgb.train(params, lgb.Dataset(X, label=y, params={"feature_pre_filter": False, "verbosity": -1}), num_boost_round=rounds)
        metadata = {"label": spec.label, "target_column": prepared.target, "validation": f"{fold_kind(binary)} cross-validation",
                    "feature_set": {"name": f"prepared:{Path(prepared.source).name}"}, "hyperparameters": search.best_hyperparameters,
                    "rounds": rounds, "fingerprint": fingerprint, "run_id": run.run_id, "git_commit": commit}
        common = dict(model=spec.name, feature_columns=prepared.feature_columns, categories=prepared.categories, metadata=metadata)
        if binary:
            calibrator = fit_calibrator(oof, y, seed=settings.seed)
            bundle = ModelBundle(kind="binary", boosters={"main": main}, calibrator=calibrator, **common)
            oof_metrics = evaluation.binary_metrics(y, calibrator.transform(oof))
        else:
            bundle = ModelBundle(kind="clv_tweedie", boosters={"main": main}, **common)
            oof_metrics = evaluation.clv_metrics(y, oof)
        result.cv_best_rounds = rounds
        fresh = cv_folds(y, binary=binary, seed=settings.seed + 1)
        result.recheck_tuned, _, _ = cross_validate(params, X, y, fresh, kind=spec.kind, num_boost_round=rounds)
        result.recheck_default, _, _ = cross_validate(default_params, X, y, fresh, kind=spec.kind, num_boost_round=LIGHTGBM_DEFAULT_ROUNDS)
        seconds["final_fit"] = time.perf_counter() - t

        t = time.perf_counter()
        log_run(run,
                params={**prefixed("hp_", search.best_hyperparameters),
                        "kept": result.kept, "best_iteration": rounds, "optuna_study": search.study_name,
                        "optuna_trials_total": search.trials_total, "optuna_trials_pruned": search.trials_pruned},
                metrics={f"cv_{result.cv_metric}": result.cv_tuned, f"cv_{result.cv_metric}_default_lightgbm": result.cv_default,
                         f"cv_{result.cv_metric}_best_trial": search.best_value,
                         f"cv_{result.cv_metric}_fresh_folds": result.recheck_tuned,
                         f"cv_{result.cv_metric}_default_lightgbm_fresh_folds": result.recheck_default,
                         **({f"cv_{result.cv_metric}_logistic_regression": result.cv_logistic} if result.cv_logistic is not None else {}),
                         **prefixed("oof_", oof_metrics)})
        model_uri = run.model(bundle, frame.head(5))
        result.version = registry.register_challenger(spec, model_uri, run_id=run.run_id, tags={
            "validation_mode": "cross_validation", f"cv_{result.cv_metric}": f"{result.cv_tuned:.6f}",
            f"cv_{result.cv_metric}_default_lightgbm": f"{result.cv_default:.6f}", "data_content_hash": fingerprint["content_hash"]})
        log_run(run, tags={"registered_model": spec.registered_name, "registered_version": result.version})
        seconds["log_and_register"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - began
        log_run(run, metrics=prefixed("seconds_", seconds))
    result.registered_name, result.run_id, result.tracking_uri, result.search = spec.registered_name, run.run_id, uri, search
    result.notes.append("the promotion gate (`custbase promote`) compares models on test months: a CV-trained challenger has none; "
                        "judge it by the cross-validated figures above")
    return result
