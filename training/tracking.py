"""MLflow tracking: where runs go, and the few calls that write them.

Local by default: ``sqlite:///<mlruns_dir>/mlflow.db`` with artifacts under ``<mlruns_dir>/artifacts`` (the plain
file store is retired in MLflow 3). ``MLFLOW_TRACKING_URI`` points it at a team's MLflow server instead. One
experiment per model, named like its registered model (``custbase-churn``).

Each store keeps its artifacts beside it: ``paths.artifact_root`` when configured, else ``artifacts/`` next to the
SQLite file of a ``sqlite:///`` URI (a user's or the local one). Only a server (``http(s)://``) decides for itself.
Without this, MLflow puts a new experiment's artifacts in ``./mlruns/<id>`` of whatever folder the command ran in,
so different stores would share folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from custbase import hints
from custbase.config import Config

if TYPE_CHECKING:
    import pandas as pd

# mlflow, numpy and pandas are imported where used: the CLI checks the store (check_tracking_store) before
# anything slow, and importing mlflow alone costs seconds.

PIP_REQUIREMENTS_PACKAGES = ("lightgbm", "numpy", "pandas", "scikit-learn", "mlflow")


_LOCAL_URIS_SET: set[str] = set()
"""Local URIs this process gave ``mlflow.set_tracking_uri``, which copies them into ``MLFLOW_TRACKING_URI``
(for subprocesses): such a value is not a user's override."""


def _user_tracking_uri() -> str | None:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return env if env and env not in _LOCAL_URIS_SET else None


def local_tracking_uri(config: Config) -> str:
    return f"sqlite:///{(Path(config.paths.mlruns_dir).resolve() / 'mlflow.db').as_posix()}"


def tracking_uri(config: Config) -> str:
    """``MLFLOW_TRACKING_URI`` if the user set it, else the local SQLite store under ``config.paths.mlruns_dir``."""
    return _user_tracking_uri() or local_tracking_uri(config)


def is_local_store(config: Config) -> bool:
    return _user_tracking_uri() is None


class TrackingError(RuntimeError):
    """The MLflow store cannot be used: unreachable, or (for commands that only read it) still empty."""


def local_store_path(config: Config) -> Path:
    return Path(config.paths.mlruns_dir) / "mlflow.db"


def check_tracking_store(config: Config, *, must_exist: bool = True, timeout: float = 5.0) -> None:
    """Fail fast, creating nothing, when the MLflow store cannot serve the command.

    A local store must exist when ``must_exist`` (commands that read models); a server named by
    ``MLFLOW_TRACKING_URI`` must answer its ``/health`` within ``timeout`` seconds (MLflow itself would retry
    for minutes).
    """
    user_uri = _user_tracking_uri()
    if user_uri is None:
        if must_exist and not local_store_path(config).exists():
            raise TrackingError(
                f"no models yet: the MLflow store {local_store_path(config)} does not exist; train them first with "
                f"`{hints.make('train')}` (or `{hints.make('demo')}`)"
            )
        return
    if user_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{user_uri.rstrip('/')}/health", timeout=timeout):
                pass
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"the MLflow server MLFLOW_TRACKING_URI={user_uri} is unreachable ({reason}); start it, or unset "
                f"MLFLOW_TRACKING_URI to use the local store {local_store_path(config)}"
            ) from None
    elif user_uri.startswith("sqlite:///") and must_exist and not Path(user_uri.removeprefix("sqlite:///")).exists():
        raise TrackingError(f"MLFLOW_TRACKING_URI={user_uri} names a SQLite file that does not exist; fix or unset it")


def quiet_mlflow() -> None:
    """Keep MLflow's info chatter (database set-up, uv detection, pip resolution) off the terminal; errors stay."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")


def configure_tracking(config: Config) -> str:
    """Point MLflow (tracking and registry) at the configured store; returns the tracking URI."""
    import mlflow

    quiet_mlflow()
    uri = tracking_uri(config)
    if is_local_store(config):
        Path(config.paths.mlruns_dir).mkdir(parents=True, exist_ok=True)
        _LOCAL_URIS_SET.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def optuna_storage_url(config: Config) -> str:
    """The Optuna study store: SQLite next to the MLflow store (always local: studies are working state)."""
    folder = Path(config.paths.mlruns_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'optuna.db').as_posix()}"


def artifact_root(config: Config) -> Path | None:
    """The folder of this store's artifacts: configured, or beside its SQLite file; None for a tracking server."""
    if config.paths.artifact_root is not None:
        return Path(config.paths.artifact_root).resolve()
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    if "://" not in uri:  # a plain folder (MLflow's file store)
        return Path(uri).resolve() / "artifacts"
    return None


def ensure_experiment(name: str, config: Config) -> str:
    """The id of experiment ``name``, created (with artifacts under :func:`artifact_root`) if missing."""
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root(config)
    return client.create_experiment(name, artifact_location=(root / name).as_uri() if root is not None else None)


def git_commit() -> str | None:
    """The checked-out commit of the code (with ``-dirty`` if there are local changes), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def data_fingerprint(*parts: pd.DataFrame) -> dict:
    """Rows, customers, as_of range and a content hash (SHA-256 over pandas' row hashes) of a modeling frame,
    given whole or as its parts in order (train, validation, test): the figures are those of the parts'
    concatenation, without making it."""
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(part, index=False).to_numpy()).tobytes())
    rows = sum(len(part) for part in parts)
    as_of = [pd.to_datetime(part["as_of"]) for part in parts if len(part)]
    customers = pd.unique(np.concatenate([part["customer_id"].to_numpy() for part in parts])) if parts else []
    return {
        "rows": int(rows),
        "customers": int(len(customers)),
        "as_of_min": str(min(a.min() for a in as_of).date()) if rows else None,
        "as_of_max": str(max(a.max() for a in as_of).date()) if rows else None,
        "content_hash": digest.hexdigest(),
    }


#: The packages whose source makes a training: a change in any of them is a reason to train again.
CODE_PACKAGES = ("custbase", "features", "training", "serving")


def code_fingerprint() -> str:
    """SHA-256 of the project's Python source (every ``*.py`` of :data:`CODE_PACKAGES`, by relative path)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def training_fingerprint(data: dict, config: Config, model: str, *, trials: int | None, timeout: float | None) -> str:
    """One hash of what a training depends on: the modeling data, the code, the configuration and the budget."""
    import json

    payload = {
        "model": model,
        "data": data["content_hash"],
        "code": code_fingerprint(),
        "config": config.model_dump(mode="json"),
        "trials": trials,
        "timeout": timeout,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_artifact_dir(run_id: str) -> Path | None:
    """The local folder of a run's artifacts (relative to the working directory when inside it), or None."""
    from urllib.parse import unquote, urlparse

    from mlflow import MlflowClient

    uri = MlflowClient().get_run(run_id).info.artifact_uri
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    folder = Path(unquote(parsed.path))
    try:
        return folder.relative_to(Path.cwd())
    except ValueError:
        return folder


#: MLflow's limit on a tag value, which holds a run's description (``mlflow.note.content``).
MAX_DESCRIPTION_CHARS = 8_000


def run_description(text: str, artifact_file: str = "model_card.md") -> str:
    """``text`` as a run description, cut at MLflow's tag limit with a pointer to the full artifact."""
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    note = f"\n\n(cut here: the full text is the run's artifact {artifact_file})\n"
    return text[: MAX_DESCRIPTION_CHARS - len(note)].rsplit("\n", 1)[0] + note


def artifact_locations(run_id: str) -> list[str]:
    """Where a run's model card and figures are (lines for the terminal; empty when not on local disk)."""
    folder = run_artifact_dir(run_id)
    if folder is None:
        return []
    return [f"  model card: {folder / 'model_card.md'}", f"  figures:    {folder / 'figures'}/"]


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, from the running environment (explicit: inference costs seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in PIP_REQUIREMENTS_PACKAGES:
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned


def model_input_types(bundle, rows: pd.DataFrame) -> dict[str, str]:
    """MLflow column types of a model's input: its feature set's declared dtypes, else the training table's."""
    from features.feature_set import FEATURE_DTYPES, FEATURE_SETS
    from serving.runtime.pyfunc import column_types

    feature_set = (bundle.metadata.get("feature_set") or {}).get("name")
    declared = FEATURE_DTYPES if feature_set in FEATURE_SETS else {}
    return column_types(bundle, dict(rows.dtypes), declared)


class RunLogger:
    """Writes one training run: params, metrics, figures, texts, the model and its bundle."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def params(self, values: dict) -> None:
        import mlflow

        # MLflow caps a param value at 6000 characters; long values go to log_dict instead.
        mlflow.log_params({k: (str(v)[:6000] if v is not None else "None") for k, v in values.items()})

    def metrics(self, values: dict, prefix: str = "") -> None:
        import mlflow
        import numpy as np

        finite = {f"{prefix}{k}": float(v) for k, v in values.items() if isinstance(v, (int, float, np.floating, np.integer)) and np.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite)

    def tags(self, values: dict) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in values.items() if v is not None})

    def dict(self, value: dict, artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(value, artifact_file)

    def text(self, value: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(value, artifact_file)

    def figures(self, figures: dict, folder: str = "figures") -> None:
        import matplotlib.pyplot as plt
        import mlflow

        for name, figure in figures.items():
            mlflow.log_figure(figure, f"{folder}/{name}.png")
            plt.close(figure)

    def table(self, frame: pd.DataFrame, artifact_file: str) -> None:
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            frame.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None)

    def model(self, bundle, rows: pd.DataFrame) -> str:
        """Log the bundle as an MLflow pyfunc model that scores customer-month rows; returns its URI (``models:/m-...``).

        The model is :mod:`serving.runtime.pyfunc`'s loader-module pyfunc: the bundle as its data, the runtime
        files it imports as its code, the signature from :func:`model_input_types` and ``rows`` (the table's
        rows, feature columns kept) as the input example. ``mlflow.pyfunc.load_model(uri).predict(rows)`` gives
        ``bundle.predict(rows)``.
        """
        import mlflow

        from serving.runtime import pyfunc

        if not pyfunc.scorable(bundle):
            raise ValueError(f"a {bundle.kind} bundle has no pyfunc predict; log it with its own flavour")
        signature = pyfunc.model_signature(model_input_types(bundle, rows))
        with tempfile.TemporaryDirectory() as tmp:
            data = bundle.save(Path(tmp) / "bundle")
            code = pyfunc.write_code(Path(tmp) / "code")
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=pyfunc.LOADER_MODULE,
                data_path=str(data),
                code_paths=[str(code)],
                signature=signature,
                input_example=rows.loc[:, list(bundle.feature_columns)].head(5),
                pip_requirements=pip_requirements(),
            )
        return info.model_uri

    def trial_logger(self, experiment_id: str, model: str):
        """An Optuna trial callback that records each trial as a nested run of this run."""
        import mlflow
        import optuna

        def log_trial(trial: optuna.trial.FrozenTrial) -> None:
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model}-trial-{trial.number:03d}", nested=True):
                mlflow.log_params(trial.params)
                mlflow.set_tags({"optuna_state": trial.state.name, "optuna_trial": trial.number})
                metrics = {"best_iteration": float(trial.user_attrs.get("best_iteration", 0))}
                if trial.value is not None:
                    metrics["valid_objective"] = float(trial.value)
                if trial.datetime_complete and trial.datetime_start:
                    metrics["trial_seconds"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
                mlflow.log_metrics(metrics)

        return log_trial


@contextmanager
def training_run(experiment_id: str, run_name: str) -> Iterator[RunLogger]:
    """A parent MLflow run for one training; the run ends (FAILED on error) when the block ends."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        yield RunLogger(run.info.run_id)


def ui_command(config: Config, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The command line that starts the MLflow UI on this project's store (for ``custbase mlflow-ui``)."""
    import sys

    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(config), "--host", host, "--port", str(port), "--workers", "1"]
    root = artifact_root(config)
    if root is not None:
        command += ["--default-artifact-root", root.as_uri()]
    return command
