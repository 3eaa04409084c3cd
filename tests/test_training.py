"""Training end to end on a small synthetic customer-month table with a real (non-linear) signal.

The module fixture trains churn, upgrade and CLV once (2 Optuna trials, 1 thread) into a temporary MLflow
home; the tests then check what was logged and registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config, Labels, Paths, Training
from serving.runtime.calibration import fit_calibrator
from training.spec import SPECS

from synthetic import NAMES, SYNTHETIC_LABELS, synthetic_customer_months, write_feature_table


def small_config(mlruns: Path, *, log_figures: bool = True, **promotion) -> Config:
    from custbase.config import Promotion

    return Config(
        labels=SYNTHETIC_LABELS,
        paths=Paths(mlruns_dir=mlruns),
        training=Training(
            trials=2, num_threads=1, early_stopping_rounds=20, max_boost_rounds=400, shap_sample_rows=300, log_figures=log_figures
        ),
        promotion=Promotion(**promotion) if promotion else Promotion(),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the three models once into a fresh MLflow home."""
    from training.jobs import train_model

    root = tmp_path_factory.mktemp("training")
    features = write_feature_table(synthetic_customer_months(), root / "customer_months.parquet")
    config = small_config(root / "mlruns")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        results = {m: train_model(m, config, features_path=features, progress=False) for m in ("clv", "churn", "upgrade")}
        yield {"config": config, "features": features, "results": results}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["churn", "upgrade", "clv"])
def test_each_model_beats_its_baseline_on_the_test_months(trained, model):
    result = trained["results"][model]
    metric = SPECS[model].primary_metric
    assert result.beats_baseline, result.render()
    assert result.evaluation.test[metric] > result.evaluation.baseline[metric] + 0.01
    assert "does NOT beat" not in result.render()


@pytest.mark.slow
def test_training_registers_a_version_with_the_challenger_alias_and_logs_the_run(trained):
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    for model, result in trained["results"].items():
        registered = client.get_registered_model(f"custbase-{model}")
        assert {k: str(v) for k, v in registered.aliases.items()} == {"challenger": result.version}
        run = mlflow.get_run(result.run_id)
        assert run.data.params["split_test_months"] == f"{result.split.test_months[0]}..{result.split.test_months[-1]}"
        assert run.data.params["feature_set_name"] == "synthetic_v1"
        assert run.data.params["data_content_hash"] and run.data.tags["git_commit"]
        assert f"test_{SPECS[model].primary_metric}" in run.data.metrics
        assert f"baseline_{SPECS[model].primary_metric}" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(result.run_id)} | {
            a.path for a in client.list_artifacts(result.run_id, "figures")
        }
        assert {"model_card.md", "config.json", "split.json", "figures/shap_summary.png"} <= artifacts
        nested = mlflow.search_runs([result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
        assert len(nested) == result.search.trials_run == 2
    churn = mlflow.get_run(trained["results"]["churn"].run_id).data
    assert {"test_brier", "test_ece", "test_uncalibrated_brier", "test_uncalibrated_ece", "test_retention_best_profit"} <= set(churn.metrics)
    clv = mlflow.get_run(trained["results"]["clv"].run_id).data
    assert {"valid_normalized_gini_tweedie", "valid_normalized_gini_hurdle"} <= set(clv.metrics)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["churn", "clv"])
def test_a_model_loaded_by_alias_reproduces_the_logged_predictions(trained, model):
    import mlflow

    from serving.runtime.bundle import load_bundle
    from features.feature_set import read_feature_table

    result = trained["results"][model]
    logged = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="predictions/test_predictions.parquet"))
    frame, _ = read_feature_table(trained["features"])
    rows = logged[["customer_id", "as_of"]].merge(frame, on=["customer_id", "as_of"], how="left")
    bundle = load_bundle(f"models:/custbase-{model}@challenger")
    np.testing.assert_allclose(bundle.predict(rows), logged["prediction"].to_numpy(), rtol=1e-9, atol=1e-12)
    # plain MLflow by alias scores the table's rows (every column, labels included) to the same predictions
    pyfunc = mlflow.pyfunc.load_model(f"models:/custbase-{model}@challenger")
    np.testing.assert_allclose(pyfunc.predict(rows.head(50)), logged["prediction"].to_numpy()[:50], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_binary_probabilities_are_calibrated_on_validation(trained):
    result = trained["results"]["churn"]
    ev = result.evaluation
    assert ev.test["ece"] < ev.uncalibrated["ece"]  # scale_pos_weight shifts raw probabilities; calibration undoes it
    assert ev.test["ece"] < 0.05


def test_calibrator_picks_a_method_by_cross_validated_brier_and_fixes_a_shifted_score():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.01, 0.3, 4_000)
    y = (rng.uniform(size=truth.size) < truth).astype(float)
    raw = np.clip(truth * 2.5, 0, 0.99)  # over-confident, like a model trained with scale_pos_weight
    calibrator = fit_calibrator(raw, y, seed=0)
    assert calibrator.method in {"platt", "isotonic"} and dict(calibrator.cv_brier).keys() == {"platt", "isotonic"}
    assert abs(calibrator.transform(raw).mean() - y.mean()) < 0.01
    assert np.mean((calibrator.transform(raw) - y) ** 2) < np.mean((raw - y) ** 2)


def test_isotonic_calibration_keeps_the_ranking_of_the_raw_scores():
    from serving.runtime.calibration import fit_isotonic

    rng = np.random.default_rng(5)
    raw = rng.uniform(0, 1, 3_000)
    y = (rng.uniform(size=raw.size) < raw**3).astype(float)
    calibrated = fit_isotonic(raw, y).transform(raw)
    # strictly increasing: no ties, so ROC-AUC is unchanged by calibration
    order = np.argsort(raw)
    assert np.all(np.diff(calibrated[order]) > 0)
    assert abs(calibrated.mean() - y.mean()) < 0.02
