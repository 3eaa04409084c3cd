"""Each tracking store keeps its artifacts beside it (or under paths.artifact_root), never in ./mlruns of the cwd."""

from __future__ import annotations

from pathlib import Path

import mlflow

from custbase.config import Config
from training import tracking


def _location(config: Config, name: str) -> Path:
    tracking.configure_tracking(config)
    experiment_id = tracking.ensure_experiment(name, config)
    with tracking.training_run(experiment_id, run_name="r") as run:
        run.text("hello", "note.txt")
    uri = mlflow.MlflowClient().get_run(run.run_id).info.artifact_uri
    return Path(uri.removeprefix("file://"))


def test_a_users_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "team" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    where = _location(Config.model_validate({"paths": {"mlruns_dir": str(tmp_path / "local")}}), "custbase-churn")
    assert where.is_relative_to(tmp_path / "team" / "artifacts" / "custbase-churn") and (where / "note.txt").exists()
    assert not (tmp_path / "mlruns").exists()


def test_a_configured_artifact_root_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = Config.model_validate({"paths": {"mlruns_dir": str(tmp_path / "store"), "artifact_root": str(tmp_path / "bucket")}})
    where = _location(config, "custbase-clv")
    assert where.is_relative_to(tmp_path / "bucket" / "custbase-clv") and (where / "note.txt").exists()
    assert tracking.artifact_root(config) == tmp_path / "bucket"
    assert not (tmp_path / "mlruns").exists()
