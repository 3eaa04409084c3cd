"""The edge of training: read what a training needs, hand it to the core, and say where it went.

:func:`train_model` is what ``custbase train`` and the demo run: it reads the customer-month table, the simulated
bank's oracle (when the table's raw folder holds one) and, for churn, the CLV model its retention-profit figures use
(:func:`retention_clv`: the CLV champion's version by default, resolved here and recorded in the run), then calls
:func:`training.train.train` with an MLflow tracker. The core itself opens no file.
"""

from __future__ import annotations

from pathlib import Path

from custbase.config import Config
from training.modeling_data import prepare_modeling_data
from training.oracle import read_oracle
from training.runs import MlflowTracker
from training.sample import read_training_frame
from training.spec import get_spec
from training.train import RetentionClv, ReusedTraining, TrainResult, train_on

#: ``retention_clv`` choices besides a version number.
CHAMPION_CLV, CARRIED_FORWARD_CLV = "champion", "carried-forward"


def retention_clv(choice: str = CHAMPION_CLV) -> RetentionClv:
    """The CLV churn's retention profit values customers with: ``champion`` (the CLV champion's version, or carried
    forward without one), a registered version number of ``custbase-clv``, or ``carried-forward``.

    The registry must be configured (:class:`training.runs.MlflowTracker`). The version is resolved here, so the run
    records which one it used whatever the registry holds later.
    """
    if choice == CARRIED_FORWARD_CLV:
        return RetentionClv()
    from serving.runtime.bundle import load_bundle
    from training.registry import CHAMPION, alias_version

    name = get_spec("clv").registered_name
    version = alias_version(name, CHAMPION) if choice == CHAMPION_CLV else str(choice)
    if version is None:
        return RetentionClv()
    uri = f"models:/{name}/{version}"
    try:
        return RetentionClv(uri, load_bundle(uri))
    except Exception as err:  # noqa: BLE001 - a stale CLV model must not stop a churn training
        print(f"note: CLV model {uri} cannot be loaded ({err}); using net revenue carried forward")
        return RetentionClv()


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
    clv: str = CHAMPION_CLV,
) -> TrainResult | ReusedTraining:
    """Train ``model`` (``churn``, ``upgrade`` or ``clv``) on the customer-month table at ``features_path``.

    The table is read as :func:`training.sample.read_training_frame` reads it: a bank above
    ``training.sample_max_rows`` eligible rows trains on a weighted sample of its customers, slice by slice.
    ``clv``: churn's retention CLV (:func:`retention_clv`). Everything else as :func:`training.train.train`.
    """
    tracker = MlflowTracker(config)
    # no name holds the frame: it is freed once its rows are split, before fitting
    data = prepare_modeling_data(*read_training_frame(features_path, get_spec(model), config), get_spec(model), config)
    oracle = read_oracle(data.metadata.get("raw_dir"), data.spec)
    chosen = retention_clv(clv) if data.spec.name == "churn" else None
    return train_on(data, config, tracker, oracle=oracle, retention_clv=chosen, trials=trials, timeout=timeout,
                    resume=resume, progress=progress, reuse=reuse, source=str(features_path))


def promote_model(model: str, config: Config, *, features_path: Path):
    """The champion/challenger gate of ``model`` (:func:`training.registry.promote`) on the newest test months of
    the table at ``features_path``, read as a training reads it (the test months whole)."""
    from training.registry import promote

    frame, metadata = read_training_frame(features_path, get_spec(model), config)
    return promote(model, config, frame=frame, metadata=metadata)
