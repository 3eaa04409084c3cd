"""Optuna hyperparameter search for the LightGBM models.

Each hyperparameter's default and its search range are declared side by side in :data:`SEARCH_SPACES`; the
defaults are always the study's first trial, so tuning can only improve on them (on validation). TPE is seeded,
unpromising trials are pruned through ``optuna_integration.LightGBMPruningCallback`` and the study lives in
SQLite (``sqlite:///mlruns/optuna.db`` by default), so ``--resume`` continues the newest study of the same model
and data.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import optuna
from optuna_integration import LightGBMPruningCallback


@dataclass(frozen=True)
class Hyperparameter:
    """One tuned hyperparameter: its default and its search range, side by side."""

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


_TREES: tuple[Hyperparameter, ...] = (
    #              name                 default   low     high
    Hyperparameter("learning_rate", 0.05, 0.02, 0.2, log=True),
    # Depth is capped: serving explains scores with pred_contrib (TreeSHAP), whose cost grows with depth squared;
    # unbounded leaf-wise trees made reason codes 600x a plain predict here, depth <= 8 about 150x.
    Hyperparameter("num_leaves", 31, 7, 63, log=True, integer=True),
    Hyperparameter("max_depth", 6, 3, 8, integer=True),
    Hyperparameter("min_child_samples", 50, 10, 500, log=True, integer=True),
    Hyperparameter("feature_fraction", 0.8, 0.3, 1.0),
    Hyperparameter("bagging_fraction", 0.8, 0.5, 1.0),
    Hyperparameter("lambda_l2", 1.0, 1e-3, 100.0, log=True),
)

SEARCH_SPACES: dict[str, tuple[Hyperparameter, ...]] = {
    # Class imbalance: scale_pos_weight = (negatives / positives) ** positive_weight_power; 0 = unweighted,
    # 1 = balanced. Calibration on validation undoes the shift in probabilities afterwards.
    "binary": (*_TREES, Hyperparameter("positive_weight_power", 0.5, 0.0, 1.0)),
    # CLV is zero-inflated and heavy-tailed: a Tweedie compound Poisson-gamma, power between 1 (Poisson) and 2 (gamma).
    "clv": (*_TREES, Hyperparameter("tweedie_variance_power", 1.5, 1.1, 1.9)),
}

FIXED_PARAMS: dict[str, object] = {
    "verbosity": -1,
    "bagging_freq": 1,
    "feature_pre_filter": False,  # one Dataset is reused by trials that vary min_child_samples
    "deterministic": True,
    "force_col_wise": True,
}

EARLY_STOPPING_METRIC = {"binary": "auc", "clv": "normalized_gini"}
"""The validation metric used for early stopping and pruning of each kind of model (higher is better).

``normalized_gini`` is not built into LightGBM: the caller passes it as ``feval`` (the built-in metric is off)."""


def default_hyperparameters(kind: str) -> dict[str, float | int]:
    return {h.name: h.default for h in SEARCH_SPACES[kind]}


def lightgbm_params(
    kind: str, hyperparameters: dict, *, num_threads: int, seed: int, positive_rate: float | None = None
) -> dict:
    """Native LightGBM parameters for a ``binary`` or ``clv`` (Tweedie) model from tuned hyperparameters."""
    hp = dict(hyperparameters)
    metric = EARLY_STOPPING_METRIC[kind] if kind == "binary" else "None"
    params = {**FIXED_PARAMS, "num_threads": num_threads, "seed": seed, "metric": metric}
    if kind == "binary":
        power = float(hp.pop("positive_weight_power", 0.0))
        rate = positive_rate if positive_rate and 0 < positive_rate < 1 else 0.5
        params.update(objective="binary", scale_pos_weight=((1 - rate) / rate) ** power)
    else:
        params.update(objective="tweedie", tweedie_variance_power=float(hp.pop("tweedie_variance_power", 1.5)))
    params.update(hp)
    return params


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a study: the best hyperparameters on validation and where the study is stored."""

    best_hyperparameters: dict
    best_value: float
    best_iteration: int
    study_name: str
    storage: str | None
    trials_total: int
    trials_run: int
    trials_pruned: int


Evaluate = Callable[[dict, list], tuple[float, int]]
"""(hyperparameters, extra LightGBM callbacks) -> (validation score to maximise, best iteration)."""


def new_study_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"


def _newest_study(storage: optuna.storages.BaseStorage, prefix: str) -> str | None:
    names = sorted(s.study_name for s in storage.get_all_studies() if s.study_name.startswith(prefix))
    return names[-1] if names else None


def _storage(url: str | None):
    if url is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=60,
            grace_period=180,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )


def run_search(
    evaluate: Evaluate,
    kind: str,
    *,
    study_prefix: str,
    storage_url: str | None,
    trials: int,
    timeout: float | None = None,
    seed: int = 0,
    resume: bool = False,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    progress: bool = False,
) -> SearchResult:
    """Tune ``kind``'s hyperparameters with TPE, maximising ``evaluate``'s validation score.

    Parameters
    ----------
    evaluate
        Trains one model with the given hyperparameters (and the pruning callback) and returns its validation
        score and best iteration.
    study_prefix
        Names the study (``<prefix>-<UTC timestamp>``); ``resume`` continues the newest study with this prefix.
    storage_url
        An Optuna RDB URL such as ``sqlite:///mlruns/optuna.db``; None keeps the study in memory.
    trials, timeout
        New trials to run, and a wall-time budget in seconds (whichever ends first).
    on_trial
        Called with each finished trial (complete, pruned or failed), e.g. to log a nested MLflow run.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    storage = _storage(storage_url)
    name = (_newest_study(storage, study_prefix) if resume and storage is not None else None) or new_study_name(study_prefix)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=100),  # low learning rates start slow
        load_if_exists=True,
    )
    before = len(study.trials)
    if not study.trials:
        study.enqueue_trial(default_hyperparameters(kind))
    space = SEARCH_SPACES[kind]
    metric = EARLY_STOPPING_METRIC[kind]

    def objective(trial: optuna.Trial) -> float:
        hyperparameters = {h.name: h.suggest(trial) for h in space}
        pruning = LightGBMPruningCallback(trial, metric, valid_name="validation")
        value, best_iteration = evaluate(hyperparameters, [pruning])
        trial.set_user_attr("best_iteration", int(best_iteration))
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"validation score is {value}")
        return value

    callbacks = [lambda _study, trial: on_trial(trial)] if on_trial is not None else []
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=callbacks, show_progress_bar=progress, catch=())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"Optuna study {name} has no completed trial; raise --trials or --timeout")
    best = study.best_trial
    return SearchResult(
        best_hyperparameters=dict(best.params),
        best_value=float(best.value),
        best_iteration=int(best.user_attrs.get("best_iteration", 0)),
        study_name=name,
        storage=storage_url,
        trials_total=len(study.trials),
        trials_run=len(study.trials) - before,
        trials_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    )
