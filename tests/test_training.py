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

TIER_BOUNDS = (0.0, 50_000.0, 500_000.0, 6_000_000.0)
TIER_NAMES = ("mass", "affluent", "high_net_worth", "private")
SYNTHETIC_LABELS = Labels(churn_horizon_months=3, upgrade_horizon_months=3, clv_horizon_months=3)
NAMES = SYNTHETIC_LABELS.names  # churn_3m, upgrade_3m, clv_3m


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_customer_months(customers: int = 500, months: int = 24, seed: int = 0, scramble: tuple[str, ...] = ()) -> pd.DataFrame:
    """A customer-month table whose labels follow known non-linear rules of a few features.

    ``scramble`` lists feature columns to shuffle across rows after the labels are drawn: a table on which a
    model learns a worse ranking (for the promotion gate's "deliberately worse challenger").
    """
    rng = np.random.default_rng(seed)
    as_of = pd.date_range("2023-01-31", periods=months, freq="ME")
    n = customers * months
    cid = np.repeat(np.arange(1, customers + 1), months)
    month_index = np.tile(np.arange(months), customers)
    base_aum = np.repeat(rng.lognormal(10.5, 1.4, customers), months)
    engagement = np.repeat(rng.uniform(0, 1, customers), months)
    age = np.repeat(rng.integers(20, 80, customers), months).astype("float64")
    aum_change_ratio_3m = rng.normal(0, 0.25, n)
    aum = base_aum * np.exp(0.02 * month_index + rng.normal(0, 0.1, n))
    logins_3m = rng.poisson(2 + 40 * engagement).astype("float64")
    complaints_3m = rng.poisson(0.15, n).astype("float64")
    product_count = rng.integers(1, 6, n).astype("float64")
    net_revenue_12m = aum * 0.006 + product_count * 40 + rng.normal(0, 30, n)
    tier_rank = np.searchsorted(TIER_BOUNDS, aum, side="right") - 1
    frame = pd.DataFrame(
        {
            "customer_id": cid.astype("int64"),
            "as_of": as_of[month_index],
            "age": age,
            "tenure_months": np.repeat(rng.integers(1, 120, customers), months) + month_index.astype("float64"),
            "gender": np.repeat(rng.choice(["f", "m"], customers), months),
            "city_tier": np.repeat(rng.choice(["tier1", "tier2", "tier3"], customers), months),
            "aum_month_end": aum,
            "aum_change_ratio_3m": aum_change_ratio_3m,
            "logins_3m": logins_3m,
            "complaints_3m": complaints_3m,
            "product_count": product_count,
            "net_revenue_12m": net_revenue_12m,
            "value_tier": np.asarray(TIER_NAMES)[tier_rank],
            "value_tier_rank": tier_rank.astype("float64"),
            "is_dormant": ((logins_3m < 3) & (aum < 2_000)).astype("int64"),
            **{f"noise_{i}": rng.normal(0, 1, n) for i in range(4)},
        }
    )
    # churn: an interaction (falling AUM AND low engagement), complaints, and older customers -- hard for a linear model
    falling_and_idle = (aum_change_ratio_3m < -0.2) & (logins_3m < 15)
    churn_logit = -3.6 + 3.0 * falling_and_idle + 0.9 * complaints_3m + 1.2 * (np.abs(age - 50) > 22)
    churn = rng.uniform(size=n) < _sigmoid(churn_logit)
    # upgrade: customers just below the next tier's threshold (a saw-tooth in AUM) whose AUM is rising
    next_bound = np.asarray(TIER_BOUNDS + (np.inf,))[tier_rank + 1]
    near = (aum / next_bound > 0.7) & (aum / next_bound < 1.0)
    upgrade = rng.uniform(size=n) < _sigmoid(-3.8 + 3.5 * near * (aum_change_ratio_3m > 0.05) + 0.8 * (logins_3m > 25))
    # CLV: zero for churners, else revenue scaled by cross-holding (not captured by revenue carried forward)
    value = np.clip(net_revenue_12m, 0, None) * (0.4 + 0.35 * product_count) * rng.lognormal(0, 0.3, n) / 4
    clv = np.where(churn | (rng.uniform(size=n) < 0.1), 0.0, value)
    labeled = month_index < months - 3
    frame[NAMES.churn] = np.where(labeled, churn.astype("float64"), np.nan)
    frame[NAMES.upgrade] = np.where(labeled & (tier_rank < len(TIER_NAMES) - 1), upgrade.astype("float64"), np.nan)
    frame[NAMES.clv] = np.where(labeled, clv, np.nan)
    for column in scramble:
        frame[column] = rng.permutation(frame[column].to_numpy())
    return frame


def write_feature_table(frame: pd.DataFrame, path: Path, raw_dir: Path | None = None) -> Path:
    """Write ``frame`` as a customer-month parquet table with the ``custbase`` schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = list(NAMES.labels)
    features = [c for c in frame.columns if c not in ("customer_id", "as_of", *labels)]
    metadata = {
        "feature_set": {"name": "synthetic_v1", "version": 1, "columns": features},
        "categorical_columns": ["gender", "city_tier", "value_tier"],
        "label_columns": labels,
        "labels": SYNTHETIC_LABELS.model_dump(),
        "as_of_min": str(frame["as_of"].min().date()),
        "as_of_max": str(frame["as_of"].max().date()),
        "raw_dir": str(raw_dir) if raw_dir else None,
    }
    table = pa.Table.from_pandas(frame.assign(as_of=frame["as_of"].dt.date), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"custbase": json.dumps(metadata).encode()})
    pq.write_table(table, path)
    return path


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
    # the MLflow LightGBM flavour by alias gives the raw score of the same booster
    if bundle.kind != "clv_hurdle":
        pyfunc = mlflow.pyfunc.load_model(f"models:/custbase-{model}@challenger")
        np.testing.assert_allclose(pyfunc.predict(bundle.encode(rows.head(50))), logged["prediction_raw"].to_numpy()[:50], rtol=1e-9)


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
