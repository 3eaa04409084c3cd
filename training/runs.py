"""Recording training runs: one :func:`log_run` for every kind of run, and the tracker the training core is given.

Every training (the three models from a customer-month table, a prepared table by cross-validation, the uplift
models) writes its MLflow run through :func:`log_run`: params, metrics (non-finite values and non-numbers are
skipped), tags, JSON and text artifacts, tables and figures, always in that order. The model itself is logged by
:meth:`training.tracking.RunLogger.model`.

:class:`MlflowTracker` is the collaborator :func:`training.train.train` records into: the configured MLflow store
(experiments, runs, the Optuna study store) and its registry (challenger versions, reuse by fingerprint). A test
can pass any object with the same methods.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Mapping

from custbase.config import Config
from training import registry, tracking

if TYPE_CHECKING:
    import pandas as pd

    from training.spec import ModelSpec
    from training.tracking import RunLogger


def prefixed(prefix: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` with every key prefixed (a metric group: ``test_``, ``baseline_``, ...)."""
    return {f"{prefix}{k}": v for k, v in (values or {}).items()}


def log_run(
    run: RunLogger,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    dicts: Mapping[str, dict] | None = None,
    texts: Mapping[str, str] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    figures: Mapping[str, Any] | None = None,
) -> None:
    """Record params, metrics, tags and artifacts of one run (any may be given, any number of times).

    ``dicts``, ``texts`` and ``tables``: artifact file -> value (JSON, text, parquet); ``figures``: name -> figure,
    saved as ``figures/<name>.png``. Metrics that are not finite numbers are left out (MLflow would refuse them).
    """
    if params:
        run.params(dict(params))
    if metrics:
        run.metrics(dict(metrics))
    if tags:
        run.tags(dict(tags))
    for artifact_file, value in (dicts or {}).items():
        run.dict(value, artifact_file)
    for artifact_file, text in (texts or {}).items():
        run.text(text, artifact_file)
    for artifact_file, frame in (tables or {}).items():
        run.table(frame, artifact_file)
    if figures:
        run.figures(dict(figures))


class MlflowTracker:
    """The configured MLflow store and registry, as the training core uses them.

    Creating it points MLflow at ``config``'s store (:func:`training.tracking.configure_tracking`).
    """

    def __init__(self, config: Config):
        self.config = config
        self.uri = tracking.configure_tracking(config)

    def experiment(self, name: str) -> str:
        return tracking.ensure_experiment(name, self.config)

    def start_run(self, experiment_id: str, run_name: str) -> AbstractContextManager[RunLogger]:
        return tracking.training_run(experiment_id, run_name=run_name)

    def optuna_storage_url(self) -> str:
        return tracking.optuna_storage_url(self.config)

    def git_commit(self) -> str | None:
        return tracking.git_commit()

    def register(self, spec: ModelSpec, model_uri: str, *, run_id: str, tags: dict | None = None) -> str:
        return registry.register_challenger(spec, model_uri, run_id=run_id, tags=tags)

    def reusable_version(self, spec: ModelSpec, fingerprint: str) -> dict | None:
        return registry.version_with_fingerprint(spec, fingerprint)

    def set_challenger(self, spec: ModelSpec, version: str) -> None:
        registry.set_challenger(spec, version)

    def why_retrain(self, spec: ModelSpec, data_hash: str) -> str:
        return registry.why_retrain(spec, data_hash)
