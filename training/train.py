"""Training core: customer-month frame -> out-of-time split -> tuned LightGBM -> evaluation -> recorded run.

:func:`train` takes the data and its collaborators as arguments (the frame and its metadata, the spec, the
configuration, a tracker, the oracle and the retention CLV chosen by the caller) and opens no file; its steps are
named functions (:func:`training.modeling_data.prepare_modeling_data`, :func:`fit_baselines`, :func:`fit_model`,
:func:`evaluate`, the run records written by :func:`training.runs.log_run`). Reading the table, the oracle and the
registry's CLV champion is the edge's work (:mod:`training.jobs`, the CLI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from custbase.config import Config, Labels, Training
from serving.runtime.bundle import ModelBundle
from serving.runtime.calibration import fit_calibrator
from training import evaluation, tracking
from training.baselines import clv_carried_forward, fit_logistic_baseline, predict_in_chunks
from training.evaluation import metrics_of
from training.model_card import render_model_card
from training.modeling_data import (  # noqa: F401  (re-exported: the names training.train always offered)
    EXPOSURE_COLUMN,
    ModelingData,
    categories_of,
    feature_columns_of,
    labels_of,
    prepare_modeling_data,
)
from training.oracle import OracleTables, oracle_continuation, oracle_for_rows, oracle_predictions  # noqa: F401
from training.registry import FINGERPRINT_TAG
from training.runs import log_run, prefixed
from training.sample import customers_within, representative_rows, sample_of
from training.search import SearchResult, lightgbm_params, run_search
from training.spec import KEY_COLUMNS, ModelSpec, get_spec
from training.splits import OutOfTimeSplit

# --------------------------------------------------------------------------------------------- fitting


def _dataset(X: pd.DataFrame, y: np.ndarray, reference: lgb.Dataset | None = None, init_score: np.ndarray | None = None,
             weight: np.ndarray | None = None) -> lgb.Dataset:
    return lgb.Dataset(X, label=y, reference=reference, init_score=init_score, weight=weight, free_raw_data=False,
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

    A sampled training's weights (:mod:`training.sample`) enter every fit, the early stopping and the calibration.
    Binary models are calibrated on validation (Platt or isotonic by cross-validated Brier). For CLV the tuned
    Tweedie model and a two-part hurdle model (P(value > 0) x E[value | value > 0], reusing the tuned tree
    hyperparameters) are both fitted, and the one with the higher validation normalized Gini is kept.
    """
    spec = data.spec
    X_train, X_valid = data.X(data.train), data.X(data.validation)
    y_train, y_valid = data.y(data.train), data.y(data.validation)
    w_train, w_valid = data.weight(data.train), data.weight(data.validation)
    train_set = _dataset(X_train, y_train, init_score=data.offset(data.train), weight=w_train)
    valid_set = _dataset(X_valid, y_valid, reference=train_set, init_score=data.offset(data.validation), weight=w_valid)
    positive_rate = float(np.average(y_train, weights=w_train)) if spec.kind == "binary" else None
    feval = evaluation.GiniFeval(y_valid, w_valid) if spec.kind == "clv" else None
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
        calibrator = fit_calibrator(valid_raw, y_valid, weight=w_valid, seed=settings.seed)
        bundle = ModelBundle(kind="binary", boosters={"main": main}, calibrator=calibrator, **common)
        return FittedModel(bundle, search, hyperparameters, valid_raw, {"roc_auc": search.best_value})

    scores = {"tweedie": evaluation.normalized_gini(y_valid, valid_raw)}
    occurrence, severity = _fit_hurdle(hyperparameters, X_train, y_train, X_valid, y_valid, settings, w_train, w_valid)
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


def _fit_hurdle(hyperparameters: dict, X_train, y_train, X_valid, y_valid, settings: Training,
                w_train: np.ndarray | None = None, w_valid: np.ndarray | None = None) -> tuple[lgb.Booster, lgb.Booster]:
    """The two parts of the hurdle model: P(value > 0) (binary) and E[value | value > 0] (gamma, positives only)."""
    trees = {k: v for k, v in hyperparameters.items() if k != "tweedie_variance_power"}
    occurrence_params = lightgbm_params("binary", {**trees, "positive_weight_power": 0.0}, num_threads=settings.num_threads, seed=settings.seed)
    occ_train = _dataset(X_train, (y_train > 0).astype("float64"), weight=w_train)
    occ_valid = _dataset(X_valid, (y_valid > 0).astype("float64"), reference=occ_train, weight=w_valid)
    occurrence = train_booster(occurrence_params, occ_train, occ_valid, settings)
    severity_params = {**lightgbm_params("clv", trees, num_threads=settings.num_threads, seed=settings.seed), "objective": "gamma", "metric": "gamma"}
    severity_params.pop("tweedie_variance_power", None)
    pos_train, pos_valid = y_train > 0, y_valid > 0
    if pos_train.sum() < 2 or pos_valid.sum() < 2:
        raise ValueError(f"too few positive CLV values ({int(pos_train.sum())} train, {int(pos_valid.sum())} validation) for a hurdle model")
    sev_train = _dataset(X_train.loc[pos_train], y_train[pos_train], weight=None if w_train is None else w_train[pos_train])
    sev_valid = _dataset(X_valid.loc[pos_valid], y_valid[pos_valid], reference=sev_train,
                         weight=None if w_valid is None else w_valid[pos_valid])
    severity = train_booster(severity_params, sev_train, sev_valid, settings)
    _trim(occurrence)
    _trim(severity)
    return occurrence, severity


# --------------------------------------------------------------------------------------------- evaluation


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
    from serving.runtime.reasons import contributions
    from training.explain import global_importance
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
            "sample": sample.render() if (sample := sample_of(data.metadata)) else None,
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
    # a sampled training's over-represented positives would read as drift; bins need no bank's millions
    rows = customers_within(representative_rows(data.train, data.metadata), config.training.reference_max_rows,
                            config.training.seed + 2)
    score = bundle.predict(rows)
    if data.spec.kind == "clv":
        score = np.maximum(score, 0.0)  # serving clips CLV at 0
    profile = reference_profile(rows, data.feature_columns, data.categories, score=score, importance=importance,
                                bins=config.monitoring.psi_bins)
    return {**profile, "history": training_history(data)}


def training_history(data: ModelingData) -> dict:
    """How much history the training rows' look-back windows saw: months from the data's first month to the first
    training month (``None`` when the table does not record where its data starts)."""
    start = data.metadata.get("data_start") or data.metadata.get("as_of_min")
    train = data.split.train_months
    months = None
    if start:
        first, begin = pd.Period(str(start)[:7], "M"), pd.Period(str(train[0])[:7], "M")
        months = int((begin - first).n)
    return {"data_start": str(start)[:7] if start else None, "train_months": f"{train[0]}..{train[-1]}",
            "months_before_training": months}


#: The retention CLV when no CLV model is given: the last 12 months' net revenue, carried forward.
CARRIED_FORWARD = "net_revenue_12m carried forward"


@dataclass(frozen=True)
class RetentionClv:
    """The CLV churn's retention-profit figures value customers with: chosen by the caller, recorded in the run.

    ``model``: a CLV model (anything with ``predict(rows)``, such as a registered version's bundle) named by
    ``source``; None for net revenue carried forward.
    """

    source: str = CARRIED_FORWARD
    model: object | None = None

    def values(self, rows: pd.DataFrame, labels: Labels) -> tuple[np.ndarray, str]:
        """The CLV of ``rows`` and where it came from (carried forward when the model cannot score them)."""
        if self.model is not None:
            try:
                return self.model.predict(rows), self.source
            except Exception as err:  # noqa: BLE001 - a stale CLV model must not stop a churn training
                print(f"note: CLV model {self.source} cannot score these rows ({err}); using net revenue carried forward")
        return clv_carried_forward(rows, labels), CARRIED_FORWARD


@dataclass
class Baselines:
    """The baselines' test predictions: the main one, and for CLV BG/NBD x Gamma-Gamma when it ran."""

    test: np.ndarray
    btyd: np.ndarray | None = None
    btyd_note: str | None = None
    rows: int | None = None  # training rows the logistic baseline was fit on


def baseline_rows(train: pd.DataFrame, settings: Training) -> pd.DataFrame:
    """The training rows the logistic baseline is fit on: whole customers within ``settings.baseline_max_rows``
    (a uniform draw keyed apart from the sample's)."""
    return customers_within(train, settings.baseline_max_rows, settings.seed + 1)


def fit_baselines(data: ModelingData, config: Config, seconds: dict[str, float], *, progress: bool = False) -> Baselines:
    """Fit the baseline of ``data.spec`` (logistic regression, or CLV carried forward plus BG/NBD x Gamma-Gamma)."""
    spec, settings = data.spec, config.training
    t = time.perf_counter()
    if spec.kind == "binary":
        rows = baseline_rows(data.train, settings)
        baseline = fit_logistic_baseline(rows[data.feature_columns], data.y(rows), list(data.categories),
                                         seed=settings.seed, weight=data.weight(rows))
        result = Baselines(predict_in_chunks(baseline, data.test[data.feature_columns]), rows=len(rows))
        if progress and len(rows) < len(data.train):
            print(f"{spec.name}: logistic baseline fit on {len(rows):,} of {len(data.train):,} training rows "
                  f"(a uniform draw of customers, training.baseline_max_rows {settings.baseline_max_rows:,})", flush=True)
    else:
        result = Baselines(clv_carried_forward(data.test, data.labels))
    seconds["baseline"] = time.perf_counter() - t
    if spec.kind == "clv":
        from training.btyd import btyd_baseline

        t = time.perf_counter()
        result.btyd, result.btyd_note = btyd_baseline(data.test, data.metadata, config, data.labels, data.split.test_months[0],
                                                      seed=settings.seed)
        seconds["baseline_btyd"] = time.perf_counter() - t
        if progress:
            print(result.btyd_note, flush=True)
    return result


def evaluate(
    fitted: FittedModel,
    data: ModelingData,
    baselines: Baselines,
    *,
    oracle: OracleTables | None = None,
    retention_clv: np.ndarray | None = None,
    economics=None,
) -> Evaluation:
    """The test-month figures of the fitted model against its baselines and the oracle (no I/O).

    ``oracle``: what the caller read of the simulator's oracle (:func:`training.oracle.read_oracle`), joined here to
    the test rows; ``retention_clv``: the CLV of the test rows for churn's retention profit (with ``economics``).
    """
    oracle_test, continuation = oracle_for_rows(data.test, oracle)
    ev = evaluate_model(fitted, data, baseline_test=baselines.test, oracle_test=oracle_test,
                        clv_for_retention=retention_clv, economics=economics, continuation=continuation)
    if baselines.btyd is not None:
        from training.btyd import NAME as BTYD_NAME

        ev.other_baselines[BTYD_NAME] = metrics_of(data.spec, data.y(data.test), baselines.btyd)
    return ev


# --------------------------------------------------------------------------------------------- what a run records


def _inputs_record(data: ModelingData, config: Config, fingerprint: dict, *, commit: str | None, source: str | None) -> dict:
    """What a run records before fitting: the data, split, feature set and settings."""
    spec, settings = data.spec, config.training
    feature_set = data.metadata.get("feature_set") or {}
    return dict(
        tags={"model": spec.name, "git_commit": commit, "mlflow.source.git.commit": commit, "features_path": source},
        dicts={"config.json": config.model_dump(mode="json"), "split.json": data.split.to_dict(),
               "feature_set.json": {**feature_set, "columns": data.feature_columns, "categories": data.categories}},
        params={
            "model": spec.name,
            "label": spec.label,
            "feature_set_name": feature_set.get("name"),
            "feature_set_version": feature_set.get("version"),
            "feature_count": len(data.feature_columns),
            **prefixed("data_", fingerprint),
            **data.split.to_params(),
            "rows_train": len(data.train),
            "rows_validation": len(data.validation),
            "rows_test": len(data.test),
            "num_threads": settings.num_threads,
            "seed": settings.seed,
            "early_stopping_rounds": settings.early_stopping_rounds,
            **(sample.to_params() if (sample := sample_of(data.metadata)) else {}),
        },
    )


def _fit_record(fitted: FittedModel) -> dict:
    """What a run records of the search and the fitted model."""
    params = {**prefixed("hp_", fitted.hyperparameters),
              "model_form": fitted.form, "best_iteration": fitted.bundle.booster.current_iteration(),
              "optuna_study": fitted.search.study_name, "optuna_trials_total": fitted.search.trials_total,
              "optuna_trials_run": fitted.search.trials_run, "optuna_trials_pruned": fitted.search.trials_pruned}
    metrics = {}
    if fitted.bundle.calibrator is not None:
        params["calibration_method"] = fitted.bundle.calibrator.method
        metrics = prefixed("valid_calibration_cv_brier_", dict(fitted.bundle.calibrator.cv_brier))
    return dict(params=params, metrics=metrics)


def _evaluation_record(data: ModelingData, fitted: FittedModel, ev: Evaluation, baselines: Baselines,
                       retention_clv_source: str | None) -> dict:
    """What a run records of the evaluation: every metric group, the oracle's source, the test predictions."""
    spec = data.spec
    metrics: dict = {}
    if baselines.btyd is not None:
        from training.btyd import NAME as BTYD_NAME

        metrics.update(prefixed(f"baseline_{BTYD_NAME}_", ev.other_baselines[BTYD_NAME]))
    for prefix, values in (("test_", ev.test), ("valid_", ev.validation), ("baseline_", ev.baseline), ("oracle_", ev.oracle),
                           ("oracle_noise_", ev.oracle_noise), ("test_uncalibrated_", ev.uncalibrated)):
        metrics.update(prefixed(prefix, values))
    if spec.kind == "binary":
        raw_valid = evaluation.binary_metrics(data.y(data.validation), fitted.validation_raw)
        metrics.update(prefixed("valid_uncalibrated_", {k: raw_valid[k] for k in ("brier", "ece", "log_loss")}))
    else:
        metrics.update(prefixed("valid_normalized_gini_", fitted.validation_scores))
    ratio = ev.oracle_ratio(spec)
    if ratio is not None:
        metrics[f"oracle_ratio_{spec.primary_metric}"] = ratio
    metrics.update(prefixed("test_active_at_as_of_", ev.active_slice))
    dicts = {}
    if ev.retention:
        metrics.update(prefixed("test_retention_", {k: ev.retention[k] for k in ("best_profit", "contact_share", "best_profit_per_customer")}))
        metrics.update(prefixed("baseline_retention_", {k: ev.baseline_retention[k] for k in ("best_profit", "contact_share")}))
        dicts["retention_profit_curve.json"] = {"model": ev.retention["profit_curve"], "baseline": ev.baseline_retention["profit_curve"],
                                                "clv_source": retention_clv_source}
    metrics["beats_baseline"] = float(ev.beats_baseline(spec))
    tags = {"oracle_source": ev.oracle_source or None, "baseline_btyd": baselines.btyd_note,
            "retention_clv_source": retention_clv_source}
    predictions = data.test[list(KEY_COLUMNS)].assign(
        label=data.y(data.test), prediction=ev.test_prediction, prediction_raw=ev.test_raw, baseline=baselines.test,
        **({"baseline_btyd": baselines.btyd} if baselines.btyd is not None else {}),
    )
    return dict(metrics=metrics, tags=tags, dicts=dicts, tables={"predictions/test_predictions.parquet": predictions})


def _version_tags(data: ModelingData, fitted: FittedModel, ev: Evaluation, fingerprint: dict, training_fingerprint: str) -> dict:
    """The registered version's tags: what the gate and a reuse look up without opening the run."""
    spec = data.spec
    return {
        "model_form": fitted.form,
        f"test_{spec.primary_metric}": f"{ev.test[spec.primary_metric]:.6f}",
        f"baseline_{spec.primary_metric}": f"{ev.baseline[spec.primary_metric]:.6f}",
        "beats_baseline": str(ev.beats_baseline(spec)).lower(),
        "data_content_hash": fingerprint["content_hash"],
        "test_months": f"{data.split.test_months[0]}..{data.split.test_months[-1]}",
        FINGERPRINT_TAG: training_fingerprint,
    }


def _figures(data: ModelingData, fitted: FittedModel, ev: Evaluation, baselines: Baselines, config: Config, title: str) -> dict:
    """The evaluation figures of a run (matplotlib and shap are imported only here)."""
    from training import plots

    spec, settings = data.spec, config.training
    sample = data.test.sample(n=min(len(data.test), settings.shap_sample_rows), random_state=settings.seed)
    if spec.kind == "binary":
        profit_curves, profit_label = _profit_curves(spec, data, ev, baselines.test, config)
        profit_best = ({"model": (ev.retention["contact_share"], ev.retention["best_profit"]),
                        "baseline": (ev.baseline_retention["contact_share"], ev.baseline_retention["best_profit"])}
                       if ev.retention else None)
        figures = plots.binary_figures(data.y(data.test), ev.test_prediction, p_uncalibrated=ev.test_raw,
                                       baseline=baselines.test, title=title, profit_curves=profit_curves,
                                       profit_label=profit_label, profit_best=profit_best)
    else:
        figures = plots.clv_figures(data.y(data.test), ev.test_prediction, baseline=baselines.test, title=title)
    figures.update(plots.shap_figures(fitted.bundle.booster, data.X(sample), max_rows=settings.shap_sample_rows, title=title))
    return figures


# --------------------------------------------------------------------------------------------- the core


def train(
    frame: pd.DataFrame,
    metadata: dict,
    spec: ModelSpec,
    config: Config,
    tracker,
    **options,
) -> TrainResult | ReusedTraining:
    """Train, evaluate, record and register one model (churn, upgrade or CLV) from a customer-month frame:
    :func:`train_on` the frame's :func:`prepare_modeling_data` (``frame`` is not changed).

    ``frame`` and ``metadata``: the customer-month table and its ``custbase`` metadata
    (:func:`features.feature_set.read_feature_table`); ``spec``: the model (:func:`training.spec.get_spec`), its label
    and oracle names following the table's horizons. A caller that holds no other reference to a large frame
    passes :func:`prepare_modeling_data` to :func:`train_on` itself, so that the frame is freed before fitting.
    """
    return train_on(prepare_modeling_data(frame, metadata, spec, config), config, tracker, **options)


def train_on(
    data: ModelingData,
    config: Config,
    tracker,
    *,
    oracle: OracleTables | None = None,
    retention_clv: RetentionClv | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    resume: bool = False,
    progress: bool = True,
    reuse: bool = False,
    source: str | None = None,
    run_record: dict | None = None,
) -> TrainResult | ReusedTraining:
    """Train, evaluate, record and register one model (churn, upgrade or CLV) on its prepared rows.

    Parameters
    ----------
    data
        The model's eligible rows split out of time (:func:`prepare_modeling_data`).
    tracker
        Where the run is recorded and the version registered (:class:`training.runs.MlflowTracker`).
    oracle
        The simulator's oracle as read by the caller (:func:`training.oracle.read_oracle`), or None.
    retention_clv
        Churn only: the CLV its retention-profit figures use (default: net revenue carried forward).
    trials, timeout, resume
        The Optuna budget; ``resume`` continues the newest study of this model and data.
    reuse
        When a registered version was trained from the same data, code and settings (its ``training_fingerprint``
        tag), make it the challenger again instead of training.
    source, run_record
        Recorded in the run: where the frame came from (tag ``features_path``) and further :func:`log_run` fields.

    Registers a new version of ``custbase-<model>`` with alias ``challenger``; ``promote`` decides on champion.
    """
    settings = config.training
    clock = {"start": time.perf_counter()}
    spec = data.spec  # label and oracle names of the table's horizons
    fingerprint = tracking.data_fingerprint(data.train, data.validation, data.test)
    training_fingerprint = tracking.training_fingerprint(fingerprint, config, spec.name, trials=trials, timeout=timeout)
    if reuse:
        previous = tracker.reusable_version(spec, training_fingerprint)
        if previous is not None:
            tracker.set_challenger(spec, previous["version"])
            return ReusedTraining(spec.name, spec.registered_name, previous["version"], previous["run_id"],
                                  training_fingerprint, previous["tags"])
        if progress:
            print(f"{spec.name}: {tracker.why_retrain(spec, fingerprint['content_hash'])}", flush=True)
    if progress:
        # the split's warnings (if any) are printed once, with the result
        print(f"{spec.name}: {fingerprint['rows']:,} eligible labeled rows; split {data.split.render().splitlines()[0]}", flush=True)
        if (sample := sample_of(data.metadata)) is not None and sample.sampled:
            print(f"{spec.name}: {sample.render()}", flush=True)
    experiment_id = tracker.experiment(spec.registered_name)
    commit = tracker.git_commit()
    seconds: dict[str, float] = {}
    with tracker.start_run(experiment_id, run_name=f"{spec.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}") as run:
        log_run(run, **_inputs_record(data, config, fingerprint, commit=commit, source=source))
        if run_record:
            log_run(run, **run_record)
        baselines = fit_baselines(data, config, seconds, progress=progress)
        if baselines.rows is not None:
            log_run(run, params={"baseline_rows": baselines.rows})

        t = time.perf_counter()
        fitted = fit_model(data, settings, trials=trials, timeout=timeout, storage_url=tracker.optuna_storage_url(),
                           study_prefix=f"custbase-{spec.name}-{fingerprint['content_hash'][:10]}", resume=resume,
                           on_trial=run.trial_logger(experiment_id, spec.name), progress=progress)
        seconds["search_and_fit"] = time.perf_counter() - t
        log_run(run, **_fit_record(fitted))

        t = time.perf_counter()
        clv_values, clv_source = (retention_clv or RetentionClv()).values(data.test, data.labels) if spec.name == "churn" else (None, None)
        ev = evaluate(fitted, data, baselines, oracle=oracle, retention_clv=clv_values, economics=config.retention)
        log_run(run, **_evaluation_record(data, fitted, ev, baselines, clv_source))
        seconds["evaluate"] = time.perf_counter() - t

        t = time.perf_counter()
        fitted.bundle.metadata.update(run_id=run.run_id, fingerprint=fingerprint, git_commit=commit,
                                      reference_profile=training_profile(fitted.bundle, data, config))
        model_uri = run.model(fitted.bundle, data.test.head(5))
        version = tracker.register(spec, model_uri, run_id=run.run_id,
                                   tags=_version_tags(data, fitted, ev, fingerprint, training_fingerprint))
        log_run(run, tags={"registered_model": spec.registered_name, "registered_version": version})
        seconds["log_and_register"] = time.perf_counter() - t

        t = time.perf_counter()
        title = f"{spec.registered_name} v{version}, test {data.split.test_months[0]}..{data.split.test_months[-1]}"
        figures = _figures(data, fitted, ev, baselines, config, title) if settings.log_figures else {}
        card = _card(spec, data, fitted, ev, {"version": version, "run_id": run.run_id, "git_commit": commit}, fingerprint, config)
        card_text = render_model_card(card)
        # the card is also the run's description in the MLflow UI
        log_run(run, figures=figures, texts={"model_card.md": card_text},
                tags={"mlflow.note.content": tracking.run_description(card_text)})
        seconds["figures_and_card"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - clock["start"]
        log_run(run, metrics=prefixed("seconds_", seconds))

    result = TrainResult(
        model=spec.name,
        registered_name=spec.registered_name,
        version=version,
        run_id=run.run_id,
        experiment_id=experiment_id,
        tracking_uri=tracker.uri,
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
