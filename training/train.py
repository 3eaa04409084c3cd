"""Training orchestration: customer-month table -> out-of-time split -> tuned LightGBM -> evaluation -> MLflow.

The pieces are pure and testable on a small in-memory frame (:func:`prepare_modeling_data`, :func:`fit_model`,
:func:`evaluate_model`); :func:`train_model` strings them together and is the only function here that writes
(through :mod:`training.tracking` and :mod:`training.registry`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from custbase.config import Config, Labels, Training
from features.feature_set import read_feature_table
from training import evaluation
from training.baselines import clv_carried_forward, fit_logistic_baseline
from serving.runtime.calibration import fit_calibrator
from serving.runtime.bundle import ModelBundle, prepare_features
from training.search import SearchResult, lightgbm_params, run_search
from training.spec import CATEGORICAL_COLUMNS, KEY_COLUMNS, LABEL_COLUMNS, ModelSpec, get_spec
from training.splits import (
    OutOfTimeSplit,
    as_of_months,
    censor_clv_labels,
    discounted_exposure,
    out_of_time_split,
    split_frame,
)

#: Censored splits only: the months of each training / validation row's label window (see training.splits).
EXPOSURE_COLUMN = "label_exposure_months"

# --------------------------------------------------------------------------------------------- data


def labels_of(metadata: dict, config: Config) -> Labels:
    """The label definitions the table was built with (its metadata), else the configuration's."""
    values = metadata.get("labels") or {}
    known = {k: v for k, v in values.items() if k in Labels.model_fields}
    return Labels.model_validate(known) if known else config.labels


def feature_columns_of(frame: pd.DataFrame, metadata: dict) -> list[str]:
    """Feature columns in table order: the feature set's declared columns, else every non-key, non-label column."""
    labels = set(metadata.get("label_columns") or LABEL_COLUMNS)
    declared = (metadata.get("feature_set") or {}).get("columns") or list(frame.columns)
    return [c for c in declared if c in frame.columns and c not in KEY_COLUMNS and c not in labels]


def categories_of(frame: pd.DataFrame, feature_columns: list[str], metadata: dict) -> dict[str, list[str]]:
    """Categories of each categorical feature: declared ones plus any text column, values sorted."""
    declared = set(metadata.get("categorical_columns") or CATEGORICAL_COLUMNS)
    categorical = [
        c
        for c in feature_columns
        if c in declared or not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    return {c: sorted(map(str, frame[c].dropna().unique())) for c in categorical}


@dataclass(frozen=True)
class ModelingData:
    """The eligible labeled rows of one model, split out of time, with the feature layout."""

    spec: ModelSpec
    split: OutOfTimeSplit
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    feature_columns: list[str]
    categories: dict[str, list[str]]
    labels: Labels
    metadata: dict

    def X(self, part: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(part, self.feature_columns, self.categories)

    def y(self, part: pd.DataFrame) -> np.ndarray:
        return self.spec.target(part)

    def offset(self, part: pd.DataFrame) -> np.ndarray | None:
        """log of the discounted exposure of censored label windows (a Tweedie offset), or None for full windows."""
        if EXPOSURE_COLUMN not in part.columns:
            return None
        return np.log(discounted_exposure(part[EXPOSURE_COLUMN].to_numpy(), self.labels.clv_annual_discount_rate))

    def horizon_offset(self) -> float:
        """log of the full horizon's discounted exposure: what turns a censored model's monthly rate into CLV."""
        return float(np.log(discounted_exposure(self.split.horizon_months, self.labels.clv_annual_discount_rate)))

    @property
    def population(self) -> pd.DataFrame:
        return pd.concat([self.train, self.validation, self.test])


def prepare_modeling_data(frame: pd.DataFrame, metadata: dict, spec: ModelSpec, config: Config) -> ModelingData:
    """Filter ``frame`` to ``spec``'s eligible labeled rows and split them out of time (``frame`` is not changed).

    The label and oracle names follow the horizons the table was built with (its metadata), whatever ``spec`` says.
    The split is the first of :func:`training.splits.out_of_time_split`'s ladder that fits; with censored windows
    (CLV only) the training and validation labels are recomputed up to their cutoffs, with their exposure.
    """
    labels = labels_of(metadata, config)
    declared = [c for c in metadata.get("label_columns") or [] if c.startswith("clv_") and c in frame.columns]
    # The CLV label the table declares (tables written before labels were named after their horizon say clv_12m).
    spec = spec.for_labels(labels)
    if spec.kind == "clv" and declared and declared[0] != spec.label:
        spec = replace(spec, label=declared[0])
    if spec.label not in frame.columns:
        present = [c for c in frame.columns if c in (metadata.get("label_columns") or LABEL_COLUMNS) or c.startswith("clv_")]
        raise ValueError(f"the customer-month table ({len(frame)} rows) has no label column {spec.label} "
                         f"(it has {', '.join(present) or 'no label'}); rebuild features with this configuration's labels")
    eligible = frame.loc[spec.eligible(frame, config)]
    if eligible.empty:
        raise ValueError(f"no eligible labeled rows for the {spec.name} model among {len(frame)} rows (label {spec.label})")
    settings = config.training
    split = out_of_time_split(
        as_of_months(eligible["as_of"]).unique(),
        horizon_months=spec.label_window_months(labels),
        validation_months=settings.validation_months,
        test_months=settings.test_months,
        min_train_months=settings.min_train_months,
        allow_censored=spec.kind == "clv" and "net_revenue_1m" in frame.columns,
    )
    train, validation, test = split_frame(eligible, split)
    if split.censored:
        censored = []
        for part, cutoff in ((train, split.test_months[0]), (validation, split.test_months[0])):
            values, exposure = censor_clv_labels(frame, part, cutoff=cutoff, horizon_months=split.horizon_months,
                                                 annual_rate=labels.clv_annual_discount_rate)
            censored.append(part.assign(**{spec.label: values, EXPOSURE_COLUMN: exposure}))
        train, validation = censored
    if spec.kind == "clv":
        y = train[spec.label].to_numpy(dtype="float64")
        if len(y) and (np.nanmax(y) <= 0 or np.nanmin(y) == np.nanmax(y)):
            raise ValueError(
                f"label {spec.label} is {np.nanmax(y):g} in all {len(y):,} training rows ({_months(split.train_months)}): "
                "nothing to learn; check what counts as value (config revenue: transaction_rate, annual_rate, "
                "cost_to_serve_monthly) against the categories and products in the data"
            )
    features = feature_columns_of(frame, metadata)
    if config.fairness.exclude_protected_attributes:  # the card still reports metrics by these groups
        features = [c for c in features if c not in config.fairness.protected_attributes]
    categories = categories_of(eligible, features, metadata)
    if spec.kind == "binary":
        for name, part in (("train", train), ("validation", validation), ("test", test)):
            positives = int(np.nansum(part[spec.label]))
            if positives == 0 or positives == len(part):
                raise ValueError(
                    f"the {name} split of the {spec.name} model ({len(part)} rows) has {positives} positives of "
                    f"{spec.label}: both classes are needed; use a larger or longer table"
                )
    return ModelingData(spec, split, train, validation, test, features, categories, labels, metadata)


def _months(months) -> str:
    return f"as_of {months[0]}..{months[-1]}" if months else "no months"


# --------------------------------------------------------------------------------------------- fitting


class _GiniFeval:
    """LightGBM ``feval``: normalized Gini of one validation set, evaluated at every boosting round.

    The perfect ordering's Gini is computed once; ties in the predictions are broken by row order, which
    is what makes it cheap (the reported metrics use :func:`training.evaluation.normalized_gini`).
    """

    def __init__(self, y: np.ndarray):
        self.y = np.asarray(y, dtype="float64")
        self.perfect = self._gini(np.sort(self.y)[::-1])

    def _gini(self, ordered: np.ndarray) -> float:
        n = len(ordered)
        total = ordered.sum()
        return float(np.cumsum(ordered).sum() / total / n - (n + 1) / (2 * n)) if total > 0 else float("nan")

    def __call__(self, preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        value = self._gini(self.y[np.argsort(-preds, kind="stable")]) / self.perfect
        return "normalized_gini", (value if np.isfinite(value) else 0.0), True


def _dataset(X: pd.DataFrame, y: np.ndarray, reference: lgb.Dataset | None = None, init_score: np.ndarray | None = None) -> lgb.Dataset:
    return lgb.Dataset(X, label=y, reference=reference, init_score=init_score, free_raw_data=False,
                       params={"feature_pre_filter": False, "verbosity": -1})


def shift_raw_score(booster: lgb.Booster, constant: float) -> None:
    """Add ``constant`` to every raw score of ``booster`` (in place), by adding it to each leaf of the first tree.

    Every row lands in exactly one leaf of each tree, so the raw score moves by exactly ``constant``: for a
    log-link (Tweedie) model the predictions are multiplied by exp(constant). Used to turn a model fitted with an
    exposure offset into one that predicts the full horizon, with nothing extra to ship.
    """
    # tree_sizes (byte offsets for parallel parsing) would no longer match the edited text: drop it, LightGBM then
    # reads the trees one after another.
    lines = [line for line in booster.model_to_string().split("\n") if not line.startswith("tree_sizes=")]
    in_first = False
    for i, line in enumerate(lines):
        if line.startswith("Tree="):
            if in_first:
                break
            in_first = line == "Tree=0"
        elif in_first and line.startswith("leaf_value="):
            values = [float(v) + float(constant) for v in line[len("leaf_value="):].split()]
            lines[i] = "leaf_value=" + " ".join(f"{v:.17g}" for v in values)
            break
    booster.model_from_string("\n".join(lines))


def train_booster(
    params: dict,
    train_set: lgb.Dataset,
    validation_set: lgb.Dataset,
    settings: Training,
    *,
    feval: Callable | None = None,
    callbacks: list | None = None,
) -> lgb.Booster:
    """``lgb.train`` with early stopping on the validation set (named ``validation``)."""
    return lgb.train(
        params,
        train_set,
        num_boost_round=settings.max_boost_rounds,
        valid_sets=[validation_set],
        valid_names=["validation"],
        feval=feval,
        callbacks=[
            lgb.early_stopping(settings.early_stopping_rounds, verbose=False, min_delta=settings.early_stopping_min_delta),
            *(callbacks or []),
        ],
    )


@dataclass
class FittedModel:
    """A tuned model with its bundle, the search that found it and its validation predictions."""

    bundle: ModelBundle
    search: SearchResult
    hyperparameters: dict
    validation_raw: np.ndarray
    validation_scores: dict[str, float] = field(default_factory=dict)

    @property
    def form(self) -> str:
        return self.bundle.kind


def fit_model(
    data: ModelingData,
    settings: Training,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage_url: str | None = None,
    study_prefix: str | None = None,
    resume: bool = False,
    on_trial: Callable | None = None,
    progress: bool = False,
) -> FittedModel:
    """Tune LightGBM with Optuna on train/validation, then build the final bundle.

    Binary models are calibrated on validation (Platt or isotonic by cross-validated Brier). For CLV the tuned
    Tweedie model and a two-part hurdle model (P(value > 0) x E[value | value > 0], reusing the tuned tree
    hyperparameters) are both fitted, and the one with the higher validation normalized Gini is kept.
    """
    spec = data.spec
    X_train, X_valid = data.X(data.train), data.X(data.validation)
    y_train, y_valid = data.y(data.train), data.y(data.validation)
    train_set = _dataset(X_train, y_train, init_score=data.offset(data.train))
    valid_set = _dataset(X_valid, y_valid, reference=train_set, init_score=data.offset(data.validation))
    positive_rate = float(y_train.mean()) if spec.kind == "binary" else None
    feval = _GiniFeval(y_valid) if spec.kind == "clv" else None
    metric = "auc" if spec.kind == "binary" else "normalized_gini"

    def params_for(hyperparameters: dict) -> dict:
        return lightgbm_params(spec.kind, hyperparameters, num_threads=settings.num_threads, seed=settings.seed, positive_rate=positive_rate)

    def evaluate(hyperparameters: dict, callbacks: list) -> tuple[float, int]:
        booster = train_booster(params_for(hyperparameters), train_set, valid_set, settings, feval=feval, callbacks=callbacks)
        return float(booster.best_score["validation"][metric]), int(booster.best_iteration)

    search = run_search(
        evaluate,
        spec.kind,
        study_prefix=study_prefix or f"custbase-{spec.name}",
        storage_url=storage_url,
        trials=max(1, settings.trials if trials is None else trials),
        timeout=settings.timeout_seconds if timeout is None else timeout,
        seed=settings.seed,
        resume=resume,
        on_trial=on_trial,
        progress=progress,
    )
    hyperparameters = search.best_hyperparameters
    main = train_booster(params_for(hyperparameters), train_set, valid_set, settings, feval=feval)
    metadata = {
        "label": spec.label,
        "split": data.split.to_dict(),
        "feature_set": data.metadata.get("feature_set"),
        "hyperparameters": hyperparameters,
    }
    common = dict(model=spec.name, feature_columns=data.feature_columns, categories=data.categories, metadata=metadata)
    _trim(main)
    if data.split.censored:
        # Fitted as a monthly rate with the exposure as offset: predict the full horizon. No hurdle variant: its
        # occurrence part would depend on the exposure too.
        shift_raw_score(main, data.horizon_offset())
        metadata["censored_labels"] = {"offset": "log discounted exposure", "horizon_months": data.split.horizon_months}
        valid_raw = main.predict(X_valid)
        bundle = ModelBundle(kind="clv_tweedie", boosters={"main": main}, **common)
        return FittedModel(bundle, search, hyperparameters, valid_raw, {"tweedie": evaluation.normalized_gini(y_valid, valid_raw)})
    valid_raw = main.predict(X_valid)
    if spec.kind == "binary":
        calibrator = fit_calibrator(valid_raw, y_valid, seed=settings.seed)
        bundle = ModelBundle(kind="binary", boosters={"main": main}, calibrator=calibrator, **common)
        return FittedModel(bundle, search, hyperparameters, valid_raw, {"roc_auc": search.best_value})

    scores = {"tweedie": evaluation.normalized_gini(y_valid, valid_raw)}
    occurrence, severity = _fit_hurdle(hyperparameters, X_train, y_train, X_valid, y_valid, settings)
    hurdle_raw = occurrence.predict(X_valid) * severity.predict(X_valid)
    scores["hurdle"] = evaluation.normalized_gini(y_valid, hurdle_raw)
    if np.nan_to_num(scores["hurdle"], nan=-1.0) > np.nan_to_num(scores["tweedie"], nan=-1.0):
        bundle = ModelBundle(kind="clv_hurdle", boosters={"occurrence": occurrence, "severity": severity}, **common)
        return FittedModel(bundle, search, hyperparameters, hurdle_raw, scores)
    bundle = ModelBundle(kind="clv_tweedie", boosters={"main": main}, **common)
    return FittedModel(bundle, search, hyperparameters, valid_raw, scores)


def _trim(booster: lgb.Booster) -> None:
    # Keep only the early-stopped trees, so every consumer of the saved model predicts the same thing.
    booster.model_from_string(booster.model_to_string(num_iteration=booster.best_iteration))


def _fit_hurdle(hyperparameters: dict, X_train, y_train, X_valid, y_valid, settings: Training) -> tuple[lgb.Booster, lgb.Booster]:
    """The two parts of the hurdle model: P(value > 0) (binary) and E[value | value > 0] (gamma, positives only)."""
    trees = {k: v for k, v in hyperparameters.items() if k != "tweedie_variance_power"}
    occurrence_params = lightgbm_params("binary", {**trees, "positive_weight_power": 0.0}, num_threads=settings.num_threads, seed=settings.seed)
    occ_train = _dataset(X_train, (y_train > 0).astype("float64"))
    occ_valid = _dataset(X_valid, (y_valid > 0).astype("float64"), reference=occ_train)
    occurrence = train_booster(occurrence_params, occ_train, occ_valid, settings)
    severity_params = {**lightgbm_params("clv", trees, num_threads=settings.num_threads, seed=settings.seed), "objective": "gamma", "metric": "gamma"}
    severity_params.pop("tweedie_variance_power", None)
    pos_train, pos_valid = y_train > 0, y_valid > 0
    if pos_train.sum() < 2 or pos_valid.sum() < 2:
        raise ValueError(f"too few positive CLV values ({int(pos_train.sum())} train, {int(pos_valid.sum())} validation) for a hurdle model")
    sev_train = _dataset(X_train.loc[pos_train], y_train[pos_train])
    sev_valid = _dataset(X_valid.loc[pos_valid], y_valid[pos_valid], reference=sev_train)
    severity = train_booster(severity_params, sev_train, sev_valid, settings)
    _trim(occurrence)
    _trim(severity)
    return occurrence, severity


# --------------------------------------------------------------------------------------------- evaluation


def metrics_of(spec: ModelSpec, y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The metric set of ``spec``'s kind (binary or CLV)."""
    return evaluation.binary_metrics(y, prediction) if spec.kind == "binary" else evaluation.clv_metrics(y, prediction)


def oracle_predictions(test: pd.DataFrame, spec: ModelSpec, raw_dir: str | Path | None) -> np.ndarray | None:
    """The simulated bank's true probability / expected CLV for the ``test`` rows, or None without ground truth.

    Joins ``ground_truth.<spec.oracle_column>`` on (customer_id, month = as_of month).
    """
    if not raw_dir or not Path(raw_dir).is_dir():
        return None
    from features.contract import GROUND_TRUTH_TABLE
    from features.raw import find_table

    source = find_table(Path(raw_dir), GROUND_TRUTH_TABLE)
    if source is None:
        return None
    try:
        truth = source.read_pandas(columns=["customer_id", "month", spec.oracle_column])
    except (KeyError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        print(f"note: ground truth in {source.path} has no usable {spec.oracle_column} ({err}); no oracle figures")
        return None
    truth = truth[["customer_id", "month", spec.oracle_column]].assign(month=lambda t: as_of_months(t["month"]))
    keys = test[["customer_id"]].assign(month=as_of_months(test["as_of"]))
    joined = keys.merge(truth.drop_duplicates(["customer_id", "month"]), on=["customer_id", "month"], how="left")
    values = joined[spec.oracle_column].to_numpy(dtype="float64")
    return None if np.isnan(values).all() else values


def oracle_continuation(test: pd.DataFrame, spec: ModelSpec, raw_dir: str | Path | None) -> dict[str, np.ndarray] | None:
    """The continuation oracle of the ``test`` rows (``custbase oracle``), or None unless it covers every row.

    Reads ``<raw_dir>/oracle_continuation.parquet``: the expected outcome given each customer's true state at as_of,
    by Monte Carlo continuation of the simulated bank. Returns ``value``, ``se`` (its standard error), ``half`` (the
    mean of half the replications) and ``replications``, aligned with ``test``.
    """
    from features.simulate import CONTINUATION_ORACLE_FILE

    path = Path(raw_dir) / CONTINUATION_ORACLE_FILE if raw_dir else None
    if path is None or not path.exists():
        return None
    import pyarrow.parquet as pq

    column = spec.oracle_column
    if column not in pq.read_schema(path).names:
        return None
    frame = pq.read_table(path, columns=["customer_id", "month", column, f"{column}_se", f"{column}_half", "replications"]).to_pandas()
    frame = frame.assign(month=as_of_months(frame["month"])).drop_duplicates(["customer_id", "month"], keep="last")
    keys = test[["customer_id"]].assign(month=as_of_months(test["as_of"]))
    joined = keys.merge(frame, on=["customer_id", "month"], how="left")
    if joined[column].isna().any():
        return None
    return {"value": joined[column].to_numpy(dtype="float64"), "se": joined[f"{column}_se"].to_numpy(dtype="float64"),
            "half": joined[f"{column}_half"].to_numpy(dtype="float64"), "replications": joined["replications"].to_numpy()}


def _roc_auc_or_nan(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def oracle_noise(spec: ModelSpec, y: np.ndarray, model: np.ndarray, oracle: np.ndarray,
                 continuation: dict[str, np.ndarray] | None, *, seed: int = 0) -> dict[str, float]:
    """How far the model may exceed its oracle by chance, on the primary metric.

    ``model_minus_oracle_se``: bootstrap standard error of the paired difference (the test rows' sampling noise).
    With a continuation oracle also its Monte Carlo noise: the metric with half the replications, and the metric
    extrapolated to infinitely many (2 x full - half, as the noise's bias falls like 1 / replications); the
    difference is then taken against the extrapolated metric, the better estimate of the true limit.
    """
    metric = _roc_auc_or_nan if spec.kind == "binary" else evaluation.normalized_gini
    full = float(metric(y, oracle))
    out = {"metric": full, "model_minus_oracle": float(metric(y, model)) - full,
           "model_minus_oracle_se": evaluation.paired_difference_se(metric, y, model, oracle, seed=seed)}
    if continuation is not None:
        half = float(metric(y, continuation["half"]))
        out.update(replications=float(continuation["replications"].min()), mean_standard_error=float(continuation["se"].mean()),
                   metric_half_replications=half, metric_extrapolated=2 * full - half,
                   model_minus_oracle=float(metric(y, model)) - (2 * full - half))
    return out


@dataclass
class Evaluation:
    """Test-month figures of the model, its baseline and the oracle, plus the predictions behind them."""

    test: dict[str, float]
    validation: dict[str, float]
    baseline: dict[str, float]
    oracle: dict[str, float]
    uncalibrated: dict[str, float]
    test_prediction: np.ndarray
    test_raw: np.ndarray
    baseline_prediction: np.ndarray
    retention: dict = field(default_factory=dict)
    baseline_retention: dict = field(default_factory=dict)
    #: Churn only: ROC-AUC of model / baseline / oracle on customers with own activity in the as_of month.
    active_slice: dict = field(default_factory=dict)
    #: The oracle's source and its noise on the primary metric (:func:`oracle_noise`).
    oracle_source: str = ""
    oracle_noise: dict = field(default_factory=dict)

    def exceeds_oracle_beyond_noise(self) -> bool:
        """True when the model beats the oracle by more than twice the difference's standard error."""
        noise = self.oracle_noise
        if not noise or np.isnan(noise.get("model_minus_oracle_se", np.nan)):
            return False
        return bool(noise["model_minus_oracle"] > 2 * noise["model_minus_oracle_se"])
    #: Further baselines on the same test rows (CLV: BG/NBD x Gamma-Gamma), name -> metrics. The model must beat all.
    other_baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def beats_baseline(self, spec: ModelSpec) -> bool:
        p = spec.primary_metric
        references = [self.baseline.get(p, -np.inf), *(b.get(p, -np.inf) for b in self.other_baselines.values())]
        return bool(all(self.test[p] > np.nan_to_num(r, nan=-np.inf) for r in references))

    def oracle_ratio(self, spec: ModelSpec) -> float | None:
        reference = self.oracle.get(spec.primary_metric)
        return float(self.test[spec.primary_metric] / reference) if reference else None


def evaluate_model(
    fitted: FittedModel,
    data: ModelingData,
    *,
    baseline_test: np.ndarray,
    oracle_test: np.ndarray | None = None,
    clv_for_retention: np.ndarray | None = None,
    economics=None,
    continuation: dict[str, np.ndarray] | None = None,
) -> Evaluation:
    """Score the fitted model, its baseline and the oracle on the test months (and the model on validation).

    ``continuation``: the continuation oracle's detail (:func:`oracle_continuation`) when ``oracle_test`` is it.
    """
    spec = data.spec
    y_test, y_valid = data.y(data.test), data.y(data.validation)
    test_pred = fitted.bundle.predict(data.test)
    test_raw = fitted.bundle.predict_raw(data.test)
    valid_pred = fitted.bundle.predict(data.validation)
    result = Evaluation(
        test=metrics_of(spec, y_test, test_pred),
        validation=metrics_of(spec, y_valid, valid_pred),
        baseline=metrics_of(spec, y_test, baseline_test),
        oracle={},
        uncalibrated={},
        test_prediction=test_pred,
        test_raw=test_raw,
        baseline_prediction=baseline_test,
    )
    if spec.kind == "binary":
        raw = evaluation.binary_metrics(y_test, test_raw)
        result.uncalibrated = {k: raw[k] for k in ("brier", "ece", "log_loss")}
    if oracle_test is not None:
        known = ~np.isnan(oracle_test)
        result.oracle = metrics_of(spec, y_test[known], oracle_test[known])
        result.oracle["rows_matched"] = float(known.sum())
        result.oracle_source = "continuation" if continuation is not None else "ground_truth"
        if known.all():
            result.oracle_noise = oracle_noise(spec, y_test, test_pred, oracle_test, continuation)
    if spec.name == "churn" and "months_since_last_activity" in data.test.columns:
        result.active_slice = _active_slice(data.test, y_test, test_pred, baseline_test, oracle_test)
    if spec.name == "churn" and clv_for_retention is not None and economics is not None:
        result.retention = evaluation.retention_profit(test_pred, clv_for_retention, y_test, economics)
        result.baseline_retention = evaluation.retention_profit(baseline_test, clv_for_retention, y_test, economics)
    return result


def _active_slice(test: pd.DataFrame, y: np.ndarray, model: np.ndarray, baseline: np.ndarray,
                  oracle: np.ndarray | None) -> dict:
    """Churn ROC-AUC on customers who acted themselves in the as_of month.

    The churn population already excludes customers quiet at as_of (no activity and AUM below the dormancy
    threshold); this slice also leaves out those without activity but with money still at the bank, so it shows
    how well the model finds customers who are visibly still using it.
    """
    from sklearn.metrics import roc_auc_score

    active = (test["months_since_last_activity"] == 0).to_numpy()
    if active.sum() == 0 or len(np.unique(y[active])) < 2:
        return {}
    out = {"rows": float(active.sum()), "positives": float(y[active].sum()),
           "roc_auc": float(roc_auc_score(y[active], model[active])),
           "baseline_roc_auc": float(roc_auc_score(y[active], baseline[active]))}
    if oracle is not None and not np.isnan(oracle[active]).any():
        out["oracle_roc_auc"] = float(roc_auc_score(y[active], oracle[active]))
    return out


# --------------------------------------------------------------------------------------------- orchestration


@dataclass
class ReusedTraining:
    """A training skipped because a registered version was trained from the same data, code and settings."""

    model: str
    registered_name: str
    version: str
    run_id: str
    fingerprint: str
    tags: dict

    @property
    def beats_baseline(self) -> bool:
        return self.tags.get("beats_baseline") == "true"

    def render(self) -> str:
        from training.tracking import artifact_locations

        figures = artifact_locations(self.run_id)
        return "\n".join([
            f"{self.model}: data, code and settings unchanged since {self.registered_name} version {self.version} "
            f"(run {self.run_id}): reusing it as the challenger, no new version registered",
            f"  training fingerprint {self.fingerprint[:16]}; test months {self.tags.get('test_months', '-')}, "
            + ", ".join(f"{k} {v}" for k, v in self.tags.items() if k.startswith(("test_", "baseline_")) and k != "test_months"),
            *figures,
        ])


@dataclass
class TrainResult:
    """What one ``custbase train`` did, for the terminal."""

    model: str
    registered_name: str
    version: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    split: OutOfTimeSplit
    primary_metric: str
    evaluation: Evaluation
    form: str
    search: SearchResult
    validation_scores: dict
    rows: dict
    seconds: dict
    warnings: list[str] = field(default_factory=list)
    calibration: str = ""

    @property
    def beats_baseline(self) -> bool:
        return self.evaluation.beats_baseline(get_spec(self.model))

    def render(self) -> str:
        ev, p = self.evaluation, self.primary_metric
        lines = [
            f"{self.model}: trained {self.form}, registered {self.registered_name} version {self.version} (alias challenger)",
            f"  run {self.run_id} in experiment {self.registered_name} ({self.tracking_uri})",
            f"  split: {self.split.render()}",
            f"  rows: train {self.rows['train']:,}, validation {self.rows['validation']:,}, test {self.rows['test']:,}",
            f"  search: study {self.search.study_name}, {self.search.trials_run} new trials ({self.search.trials_total} in study, "
            f"{self.search.trials_pruned} pruned), best validation {p} {self.search.best_value:.4f}",
        ]
        if self.validation_scores and len(self.validation_scores) > 1:
            lines.append("  validation normalized Gini: " + ", ".join(f"{k} {v:.4f}" for k, v in self.validation_scores.items()) + f" -> kept {self.form}")
        keys = [k for k in ev.test if k in ev.baseline]
        lines.append(f"  {'test metric':<22}{'model':>12}{'baseline':>12}{'oracle':>12}{'model/oracle':>14}")
        for k in keys:
            o = ev.oracle.get(k)
            ratio = f"{ev.test[k] / o:>14.3f}" if o else f"{'-':>14}"
            oracle = f"{o:>12.4f}" if o is not None else f"{'-':>12}"
            mark = " *" if k == p else ""
            lines.append(f"  {k + mark:<22}{ev.test[k]:>12.4f}{ev.baseline[k]:>12.4f}{oracle}{ratio}")
        if ev.oracle_noise:
            n = ev.oracle_noise
            source = ("Monte Carlo continuation of the simulated bank from each customer's true state, "
                      f"{n['replications']:.0f} replications (mean standard error {n['mean_standard_error']:,.2f}); {p} "
                      f"{n['metric']:.4f}, {n['metric_half_replications']:.4f} with half of them, "
                      f"{n['metric_extrapolated']:.4f} extrapolated" if ev.oracle_source == "continuation"
                      else "the simulator's ground truth")
            verdict = "within the noise"
            if ev.exceeds_oracle_beyond_noise():
                verdict = "beyond the noise: the oracle is not a limit" + (
                    "; `custbase oracle clv` computes one" if self.model == "clv" and ev.oracle_source != "continuation" else "")
            lines.append(f"  oracle: {source}; model - oracle {n['model_minus_oracle']:+.4f} "
                         f"(standard error {n['model_minus_oracle_se']:.4f}, {verdict})")
        for name, figures in ev.other_baselines.items():
            lines.append(f"  baseline {name} on the same test rows: " + ", ".join(f"{k} {figures[k]:.4f}" for k in keys if k in figures))
        if ev.uncalibrated:
            lines.append(
                f"  calibration on test: Brier {ev.uncalibrated['brier']:.4f} -> {ev.test['brier']:.4f}, "
                f"ECE {ev.uncalibrated['ece']:.4f} -> {ev.test['ece']:.4f} ({self.calibration})"
            )
        if ev.active_slice:
            a = ev.active_slice
            oracle = f", oracle {a['oracle_roc_auc']:.4f}" if "oracle_roc_auc" in a else ""
            lines.append(
                f"  customers active at as_of ({a['rows']:,.0f} rows, {a['positives']:,.0f} churners): roc_auc "
                f"{a['roc_auc']:.4f}, baseline {a['baseline_roc_auc']:.4f}{oracle}"
            )
        if ev.retention:
            lines.append(
                f"  retention profit (test): best {ev.retention['best_profit']:,.0f} contacting {ev.retention['contact_share']:.1%} "
                f"(baseline {ev.baseline_retention['best_profit']:,.0f})"
            )
        lines.append("  wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        from training.tracking import artifact_locations

        lines += artifact_locations(self.run_id)
        lines += [f"  WARNING: {w}" for w in self.warnings]
        if not self.beats_baseline:
            lines += [
                "",
                "!" * 100,
                f"!!! {self.model}: LightGBM does NOT beat its baseline(s) on the test months "
                f"({p} {ev.test[p]:.4f} vs baseline {ev.baseline[p]:.4f}"
                + "".join(f", {n} {b.get(p, float('nan')):.4f}" for n, b in ev.other_baselines.items())
                + "). Do not promote it without understanding why.",
                "!" * 100,
            ]
        return "\n".join(lines)


def _card(spec, data, fitted, ev, result_fields: dict, fingerprint: dict, config: Config) -> dict:
    from training.explain import contributions, global_importance
    from training.fairness import fairness_card

    sample = data.test.sample(n=min(len(data.test), config.training.shap_sample_rows), random_state=config.training.seed)
    importance = global_importance(contributions(fitted.bundle.booster, data.X(sample)), fitted.bundle.booster.feature_name())
    calibration = None
    if spec.kind == "binary":
        calibration = {
            "method": fitted.bundle.calibrator.method,
            "before": ev.uncalibrated,
            "after": {k: ev.test[k] for k in ("brier", "ece", "log_loss")},
        }
    return {
        "model": {
            "name": spec.name,
            "task": spec.description,
            "registered_name": spec.registered_name,
            "version": result_fields.get("version"),
            "run_id": result_fields.get("run_id"),
            "algorithm": f"LightGBM ({fitted.form}) tuned with Optuna TPE",
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": result_fields.get("git_commit"),
        },
        "beats_baseline": ev.beats_baseline(spec),
        "intended_use": spec.intended_use,
        "out_of_scope": list(spec.out_of_scope),
        "data": {
            "feature_set": {**(data.metadata.get("feature_set") or {}), "columns": data.feature_columns},
            "rows": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
            "as_of_min": fingerprint["as_of_min"],
            "as_of_max": fingerprint["as_of_max"],
            "fingerprint": fingerprint["content_hash"],
            "population": _population_text(spec, data.labels),
            "label": spec.label,
            "horizon_months": spec.horizon_months(data.labels),
        },
        "splits": {
            "train": [str(m) for m in data.split.train_months],
            "validation": [str(m) for m in data.split.validation_months],
            "test": [str(m) for m in data.split.test_months],
            "horizon_months": data.split.horizon_months,
            "gap_train_validation": data.split.gap_train_validation,
            "gap_validation_test": data.split.gap_validation_test,
            "strategy": data.split.strategy,
            "choice": data.split.choice,
        },
        "metrics": {
            "test": ev.test,
            "baseline": ev.baseline,
            "baseline_name": "logistic regression" if spec.kind == "binary" else "net revenue 12m carried forward",
            "other_baselines": ev.other_baselines,
            "oracle": ev.oracle,
            "oracle_source": ev.oracle_source or None,
            "oracle_noise": ev.oracle_noise or None,
        },
        "primary_metric": spec.primary_metric,
        "calibration": calibration,
        "retention_profit": ({**{k: v for k, v in ev.retention.items() if k != "profit_curve"}, "economics": config.retention.model_dump()} if ev.retention else None),
        "top_drivers": [(k, float(v)) for k, v in importance.head(15).items()],
        "hyperparameters": fitted.hyperparameters,
        "limitations": [*spec.limitations, *(w[0].upper() + w[1:] + "." for w in data.split.warnings)],
        "fairness": (fairness_card(data.test, data.y(data.test), ev.test_prediction, config.fairness, data.feature_columns)
                     if spec.kind == "binary" else None),
    }


def _population_text(spec: ModelSpec, labels: Labels) -> str:
    """The model card's one-line population of ``spec``."""
    if spec.name == "churn":
        k = labels.dormancy_inactive_months
        return (f"{spec.label} labeled rows of customers not quiet at as_of (months_quiet == 0: not lapsing, not dormant); "
                f"an exit is dated at its closure month or at the first of k = {k} quiet months; "
                f"horizon {labels.churn_horizon_months} months")
    return f"{spec.label} labeled, eligible rows; horizon {spec.horizon_months(labels)} months"


def _profit_curves(spec: ModelSpec, data: ModelingData, ev: Evaluation, baseline_test: np.ndarray,
                   config: Config) -> tuple[dict | None, str]:
    """Campaign profit curves of model and baseline on the test rows: retention (churn) or upgrade offer."""
    if ev.retention:
        return ({"model": ev.retention["profit_curve"], "baseline": ev.baseline_retention["profit_curve"]},
                "expected retention profit (retention config)")
    if spec.name == "upgrade" and "value_tier" in data.test.columns:
        policy = config.policy
        gain = data.test["value_tier"].astype("object").map(policy.upgrade_value_gain).to_numpy(dtype="float64", na_value=np.nan)
        value = policy.upgrade_acceptance_rate * gain
        y = data.y(data.test)
        curves = {name: evaluation.offer_profit_curve(score, value, y, policy.upgrade_contact_cost)
                  for name, score in (("model", ev.test_prediction), ("baseline", baseline_test))}
        return curves, "upgrade offer profit on the test months (policy config)"
    return None, ""


def training_profile(bundle, data: ModelingData, config: Config) -> dict:
    """The drift reference of a model: its training rows' feature and score distributions (training.drift)."""
    from training.drift import reference_profile

    booster = bundle.booster
    importance = dict(zip(booster.feature_name(), booster.feature_importance("gain").tolist()))
    score = bundle.predict(data.train)
    if data.spec.kind == "clv":
        score = np.maximum(score, 0.0)  # serving clips CLV at 0
    return reference_profile(data.train, data.feature_columns, data.categories, score=score, importance=importance,
                             bins=config.monitoring.psi_bins)


def _clv_for_retention(test: pd.DataFrame, labels: Labels) -> tuple[np.ndarray, str]:
    """Predicted CLV of the test rows: the CLV champion if registered, else net revenue carried forward."""
    from serving.runtime.bundle import load_bundle
    from training.registry import champion_uri

    uri = champion_uri("clv")
    if uri is not None:
        try:
            return load_bundle(uri).predict(test), uri
        except Exception as err:  # noqa: BLE001 - a stale champion must not stop a churn training
            print(f"note: CLV champion {uri} cannot score these rows ({err}); using net revenue carried forward")
    return clv_carried_forward(test, labels), "net_revenue_12m carried forward"


def train_model(
    model: str,
    config: Config,
    *,
    features_path: Path,
    trials: int | None = None,
    timeout: float | None = None,
    resume: bool = False,
    progress: bool = True,
    reuse: bool = False,
) -> TrainResult | ReusedTraining:
    """Train, evaluate, log and register one model (``churn``, ``upgrade`` or ``clv``) from a customer-month table.

    Registers a new version of ``custbase-<model>`` with alias ``challenger``; ``promote`` decides on champion.
    With ``reuse``, a registered version trained from the same data, code and settings (its
    ``training_fingerprint`` tag) becomes the challenger again instead of a new training.
    """
    from training import registry, tracking
    from training.model_card import render_model_card

    spec = get_spec(model)
    settings = config.training
    clock = {"start": time.perf_counter()}
    uri = tracking.configure_tracking(config)
    frame, metadata = read_feature_table(features_path)
    data = prepare_modeling_data(frame, metadata, spec, config)
    spec = data.spec  # label and oracle names of the table's horizons
    del frame
    population = data.population
    fingerprint = tracking.data_fingerprint(population)
    training_fingerprint = tracking.training_fingerprint(fingerprint, config, spec.name, trials=trials, timeout=timeout)
    if reuse:
        previous = registry.version_with_fingerprint(spec, training_fingerprint)
        if previous is not None:
            registry.set_challenger(spec, previous["version"])
            return ReusedTraining(spec.name, spec.registered_name, previous["version"], previous["run_id"],
                                  training_fingerprint, previous["tags"])
        if progress:
            print(f"{spec.name}: {registry.why_retrain(spec, fingerprint['content_hash'])}", flush=True)
    if progress:
        # the split's warnings (if any) are printed once, with the result
        print(f"{spec.name}: {len(population):,} eligible labeled rows; split {data.split.render().splitlines()[0]}", flush=True)
    experiment_id = tracking.ensure_experiment(spec.registered_name, config)
    commit = tracking.git_commit()
    seconds: dict[str, float] = {}
    with tracking.training_run(experiment_id, run_name=f"{spec.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}") as run:
        run.tags({"model": spec.name, "git_commit": commit, "mlflow.source.git.commit": commit, "features_path": str(features_path)})
        run.dict(config.model_dump(mode="json"), "config.json")
        run.dict(data.split.to_dict(), "split.json")
        feature_set = data.metadata.get("feature_set") or {}
        run.dict({**feature_set, "columns": data.feature_columns, "categories": data.categories}, "feature_set.json")
        run.params(
            {
                "model": spec.name,
                "label": spec.label,
                "feature_set_name": feature_set.get("name"),
                "feature_set_version": feature_set.get("version"),
                "feature_count": len(data.feature_columns),
                **{f"data_{k}": v for k, v in fingerprint.items()},
                **data.split.to_params(),
                "rows_train": len(data.train),
                "rows_validation": len(data.validation),
                "rows_test": len(data.test),
                "num_threads": settings.num_threads,
                "seed": settings.seed,
                "early_stopping_rounds": settings.early_stopping_rounds,
            }
        )

        t = time.perf_counter()
        if spec.kind == "binary":
            baseline = fit_logistic_baseline(data.train[data.feature_columns], data.y(data.train), list(data.categories), seed=settings.seed)
            baseline_test = baseline.predict_proba(data.test[data.feature_columns])[:, 1]
        else:
            baseline_test = clv_carried_forward(data.test, data.labels)
        seconds["baseline"] = time.perf_counter() - t
        btyd_test = None
        if spec.kind == "clv":
            from training.btyd import btyd_baseline

            t = time.perf_counter()
            btyd_test, btyd_note = btyd_baseline(data.test, metadata, config, data.labels, data.split.test_months[0], seed=settings.seed)
            seconds["baseline_btyd"] = time.perf_counter() - t
            run.tags({"baseline_btyd": btyd_note})
            if progress:
                print(btyd_note, flush=True)

        t = time.perf_counter()
        fitted = fit_model(
            data,
            settings,
            trials=trials,
            timeout=timeout,
            storage_url=tracking.optuna_storage_url(config),
            study_prefix=f"custbase-{spec.name}-{fingerprint['content_hash'][:10]}",
            resume=resume,
            on_trial=run.trial_logger(experiment_id, spec.name),
            progress=progress,
        )
        seconds["search_and_fit"] = time.perf_counter() - t
        run.params({f"hp_{k}": v for k, v in fitted.hyperparameters.items()})
        run.params({"model_form": fitted.form, "best_iteration": fitted.bundle.booster.current_iteration(),
                    "optuna_study": fitted.search.study_name, "optuna_trials_total": fitted.search.trials_total,
                    "optuna_trials_run": fitted.search.trials_run, "optuna_trials_pruned": fitted.search.trials_pruned})
        if fitted.bundle.calibrator is not None:
            run.params({"calibration_method": fitted.bundle.calibrator.method})
            run.metrics(dict(fitted.bundle.calibrator.cv_brier), prefix="valid_calibration_cv_brier_")

        t = time.perf_counter()
        continuation = oracle_continuation(data.test, spec, metadata.get("raw_dir")) if spec.kind == "clv" else None
        oracle_test = continuation["value"] if continuation else oracle_predictions(data.test, spec, metadata.get("raw_dir"))
        clv_source = None
        clv_retention = None
        if spec.name == "churn":
            clv_retention, clv_source = _clv_for_retention(data.test, data.labels)
            run.tags({"retention_clv_source": clv_source})
        ev = evaluate_model(fitted, data, baseline_test=baseline_test, oracle_test=oracle_test,
                            clv_for_retention=clv_retention, economics=config.retention, continuation=continuation)
        if btyd_test is not None:
            from training.btyd import NAME as BTYD_NAME

            ev.other_baselines[BTYD_NAME] = metrics_of(spec, data.y(data.test), btyd_test)
            run.metrics(ev.other_baselines[BTYD_NAME], prefix=f"baseline_{BTYD_NAME}_")
        run.metrics(ev.test, prefix="test_")
        run.metrics(ev.validation, prefix="valid_")
        run.metrics(ev.baseline, prefix="baseline_")
        run.metrics(ev.oracle, prefix="oracle_")
        run.metrics(ev.oracle_noise, prefix="oracle_noise_")
        if ev.oracle_source:
            run.tags({"oracle_source": ev.oracle_source})
        run.metrics(ev.uncalibrated, prefix="test_uncalibrated_")
        if spec.kind == "binary":
            raw_valid = evaluation.binary_metrics(data.y(data.validation), fitted.validation_raw)
            run.metrics({k: raw_valid[k] for k in ("brier", "ece", "log_loss")}, prefix="valid_uncalibrated_")
        else:
            run.metrics(fitted.validation_scores, prefix="valid_normalized_gini_")
        ratio = ev.oracle_ratio(spec)
        if ratio is not None:
            run.metrics({f"oracle_ratio_{spec.primary_metric}": ratio})
        if ev.active_slice:
            run.metrics(ev.active_slice, prefix="test_active_at_as_of_")
        if ev.retention:
            run.metrics({k: ev.retention[k] for k in ("best_profit", "contact_share", "best_profit_per_customer")}, prefix="test_retention_")
            run.metrics({k: ev.baseline_retention[k] for k in ("best_profit", "contact_share")}, prefix="baseline_retention_")
            run.dict({"model": ev.retention["profit_curve"], "baseline": ev.baseline_retention["profit_curve"], "clv_source": clv_source}, "retention_profit_curve.json")
        beats = ev.beats_baseline(spec)
        run.metrics({"beats_baseline": float(beats)})
        predictions = data.test[list(KEY_COLUMNS)].assign(
            label=data.y(data.test), prediction=ev.test_prediction, prediction_raw=ev.test_raw, baseline=baseline_test,
            **({"baseline_btyd": btyd_test} if btyd_test is not None else {}),
        )
        run.table(predictions, "predictions/test_predictions.parquet")
        seconds["evaluate"] = time.perf_counter() - t

        t = time.perf_counter()
        fitted.bundle.metadata.update(run_id=run.run_id, fingerprint=fingerprint, git_commit=commit,
                                      reference_profile=training_profile(fitted.bundle, data, config))
        model_uri = run.model(fitted.bundle, data.test.head(5))
        version = registry.register_challenger(
            spec,
            model_uri,
            run_id=run.run_id,
            tags={
                "model_form": fitted.form,
                f"test_{spec.primary_metric}": f"{ev.test[spec.primary_metric]:.6f}",
                f"baseline_{spec.primary_metric}": f"{ev.baseline[spec.primary_metric]:.6f}",
                "beats_baseline": str(beats).lower(),
                "data_content_hash": fingerprint["content_hash"],
                "test_months": f"{data.split.test_months[0]}..{data.split.test_months[-1]}",
                registry.FINGERPRINT_TAG: training_fingerprint,
            },
        )
        run.tags({"registered_model": spec.registered_name, "registered_version": version})
        seconds["log_and_register"] = time.perf_counter() - t

        t = time.perf_counter()
        if settings.log_figures:
            from training import plots  # matplotlib and shap: only when drawing

            sample = data.test.sample(n=min(len(data.test), settings.shap_sample_rows), random_state=settings.seed)
            title = f"{spec.registered_name} v{version}, test {data.split.test_months[0]}..{data.split.test_months[-1]}"
            if spec.kind == "binary":
                profit_curves, profit_label = _profit_curves(spec, data, ev, baseline_test, config)
                profit_best = ({"model": (ev.retention["contact_share"], ev.retention["best_profit"]),
                                "baseline": (ev.baseline_retention["contact_share"], ev.baseline_retention["best_profit"])}
                               if ev.retention else None)
                figures = plots.binary_figures(data.y(data.test), ev.test_prediction, p_uncalibrated=ev.test_raw,
                                               baseline=baseline_test, title=title, profit_curves=profit_curves,
                                               profit_label=profit_label, profit_best=profit_best)
            else:
                figures = plots.clv_figures(data.y(data.test), ev.test_prediction, baseline=baseline_test, title=title)
            figures.update(plots.shap_figures(fitted.bundle.booster, data.X(sample), max_rows=settings.shap_sample_rows,
                                              title=title))
            run.figures(figures)
        card = _card(spec, data, fitted, ev, {"version": version, "run_id": run.run_id, "git_commit": commit}, fingerprint, config)
        card_text = render_model_card(card)
        run.text(card_text, "model_card.md")
        run.tags({"mlflow.note.content": tracking.run_description(card_text)})  # the run's description in the MLflow UI
        seconds["figures_and_card"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - clock["start"]
        run.metrics(seconds, prefix="seconds_")

    result = TrainResult(
        model=spec.name,
        registered_name=spec.registered_name,
        version=version,
        run_id=run.run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        split=data.split,
        primary_metric=spec.primary_metric,
        evaluation=ev,
        form=fitted.form,
        search=fitted.search,
        validation_scores=fitted.validation_scores if spec.kind == "clv" else {},
        rows={"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        seconds=seconds,
    )
    if fitted.bundle.calibrator is not None:
        result.calibration = f"{fitted.bundle.calibrator.method} calibration on validation"
    return result
