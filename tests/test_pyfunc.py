"""The registered model is a plain MLflow pyfunc: customer-month rows in, custbase's own scores out.

The module fixture simulates a small bank, builds its customer-month table with ``custbase features``' builder,
trains the churn model on it (1 trial) into a temporary MLflow store and gives version 1 the ``champion`` alias.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from features.feature_set import FEATURE_DTYPES, read_feature_table
from serving.runtime import pyfunc
from serving.runtime.bundle import ModelBundle, load_bundle, prepare_features
from serving.runtime.calibration import Calibrator

PROJECT = Path(__file__).resolve().parents[1]
CHAMPION = "models:/custbase-churn@champion"


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A churn champion trained on a simulated bank's customer-month table, in a fresh MLflow store."""
    import mlflow
    from mlflow import MlflowClient

    from raw_factory import simulated_customer_months
    from training.jobs import train_model

    root = tmp_path_factory.mktemp("pyfunc")
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(root / "mlruns")},
        "training": {"num_threads": 1, "trials": 1, "early_stopping_rounds": 10, "max_boost_rounds": 60, "log_figures": False},
    })
    _, table = simulated_customer_months(root, config, customers=400, months=24, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = train_model("churn", config, features_path=table, progress=False)
        MlflowClient().set_registered_model_alias("custbase-churn", "champion", result.version)
        yield {"root": root, "table": table, "tracking_uri": mlflow.get_tracking_uri(), "result": result, "config": config}


def _use_store(champion) -> None:
    """Point this process at the fixture's store (another module's test may have moved the process-wide URIs)."""
    import mlflow

    mlflow.set_tracking_uri(champion["tracking_uri"])
    mlflow.set_registry_uri(champion["tracking_uri"])


def _rows(table: Path, n: int = 400) -> pd.DataFrame:
    """Rows of the customer-month table as custbase's reader returns them (every column, labels included)."""
    frame, _ = read_feature_table(table)
    return frame.sample(n, random_state=0).reset_index(drop=True)


@pytest.mark.slow
def test_the_champion_scores_customer_months_in_a_clean_process(champion, tmp_path):
    """Plain MLflow, in a process that cannot import custbase, reproduces the bundle's and the scoring path's scores."""
    _use_store(champion)
    rows = _rows(champion["table"])
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path, index=False)
    out = tmp_path / "scores.json"
    script = f"""
import json, sys
sys.path = [p for p in sys.path if p and p.rstrip("/") != {str(PROJECT)!r}]  # the model must bring its own code
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({CHAMPION!r})
scores = model.predict(pd.read_parquet({str(rows_path)!r}))
own = sorted(m for m in sys.modules if m.split(".")[0] in ("custbase", "features", "training", "serving"))
json.dump({{"scores": [float(s) for s in scores], "modules": own, "bundle_file": sys.modules["serving.runtime.bundle"].__file__}},
          open({str(out)!r}, "w"))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MLFLOW_TRACKING_URI": champion["tracking_uri"]}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())

    bundle = load_bundle(CHAMPION)
    assert bundle.calibrator is not None
    np.testing.assert_allclose(found["scores"], bundle.predict(rows), rtol=1e-9, atol=1e-12)
    # the array path serving.runtime.scoring scores with (service, batch, Spark)
    from serving.runtime.models import BundleModel, matrix_model

    matrix = matrix_model(BundleModel(bundle, version="1"))
    np.testing.assert_allclose(found["scores"], matrix.predict(matrix.encode_frame(rows)), rtol=1e-9, atol=1e-12)
    # its whole custbase import closure is the runtime files the model carries
    assert found["modules"] == sorted(m.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for m in pyfunc.CODE_FILES)
    assert "/code/serving/runtime/bundle.py" in found["bundle_file"] and str(PROJECT) not in found["bundle_file"]


@pytest.mark.slow
def test_the_signature_is_the_feature_sets_and_accepts_the_tables_dtypes(champion):
    import mlflow
    from mlflow.exceptions import MlflowException

    _use_store(champion)
    model = mlflow.pyfunc.load_model(CHAMPION)
    bundle = load_bundle(CHAMPION)
    inputs = model.metadata.get_input_schema()
    assert inputs.input_names() == bundle.feature_columns
    expected = {"int64": "long", "float64": "double", "str": "string"}
    assert {c.name: c.type.name for c in inputs.inputs} == {c: expected[FEATURE_DTYPES[c]] for c in bundle.feature_columns}
    assert all(c.required for c in inputs.inputs)

    rows = _rows(champion["table"], 50)
    assert rows["tenure_months"].dtype == "int64" and rows["holds_fund"].dtype == "int64"
    assert isinstance(rows["value_tier"].dtype, pd.StringDtype)
    # nulls where the table has them: a missing category (text column) and a missing ratio (float column)
    rows.loc[0, "income_band"] = None
    rows.loc[1, "aum_change_ratio_3m"] = np.nan
    rows.loc[2, "previous_value_tier"] = "a tier never seen in training"  # unseen category: scored as missing
    assert rows["income_band"].isna().iloc[0]
    np.testing.assert_allclose(model.predict(rows), bundle.predict(rows), rtol=1e-12)
    # object columns (as a JSON client's frame holds text) are accepted too
    as_object = rows.astype({c: "object" for c in bundle.categories})
    np.testing.assert_allclose(model.predict(as_object), bundle.predict(rows), rtol=1e-12)

    with pytest.raises(MlflowException, match="tenure_months"):
        model.predict(rows.drop(columns=["tenure_months"]))
    # MLflow has no nullable long: an int column must stay int (the feature builder writes none with nulls)
    with pytest.raises(MlflowException, match="tenure_months"):
        model.predict(rows.assign(tenure_months=rows["tenure_months"].where(rows.index > 0)))


def _tiny_bundle(name: str, kind: str, frame: pd.DataFrame, label: str, features: list[str], categories: dict) -> ModelBundle:
    X = prepare_features(frame, features, categories)
    rows = frame[label].notna().to_numpy()
    objective = "binary" if kind == "binary" else "regression"
    booster = lgb.train({"objective": objective, "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1, "verbose": -1, "seed": 0},
                        lgb.Dataset(X[rows], label=frame.loc[rows, label]), num_boost_round=3)
    calibrator = Calibrator("platt", coef=(1.1, -0.2)) if kind == "binary" else None
    return ModelBundle(name, kind, features, categories, {"main": booster}, calibrator,
                       {"feature_set": {"name": "customer_month_v1", "version": 1, "columns": features}})


def test_column_types_follow_the_feature_set_then_the_table():
    frame = pd.DataFrame({"tenure_months": [1, 2], "logins_3m": [1.0, np.nan], "value_tier": ["mass", None], "x": [1, 2]})
    bundle = ModelBundle("churn", "binary", list(frame.columns), {"value_tier": ["mass"]}, {}, None)
    types = pyfunc.column_types(bundle, dict(frame.dtypes), FEATURE_DTYPES)
    # declared int held as float (it had nulls in training) -> double; a column of another feature set: its dtype
    assert types == {"tenure_months": "long", "logins_3m": "double", "value_tier": "string", "x": "long"}
    assert pyfunc.column_types(bundle, {}, {}) == {"tenure_months": "double", "logins_3m": "double", "value_tier": "string", "x": "double"}


@pytest.mark.slow
def test_the_bento_packs_the_pyfunc_models_and_checks_their_files(champion, tmp_path, monkeypatch):
    import bentoml
    import mlflow

    from serving.bento import build_bento
    from serving.runtime.models import ModelStoreError, load_champions_from_bento
    from serving.runtime.spec import ServingSpec
    from training.tracking import ensure_experiment, training_run

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    _use_store(champion)
    frame, metadata = read_feature_table(champion["table"])
    features = ["tenure_months", "aum_month_end", "logins_3m", "value_tier", "income_band", "holds_fund"]
    categories = {c: sorted(frame[c].dropna().unique().tolist()) for c in ("value_tier", "income_band")}
    labels = {"upgrade": ("binary", "upgrade_3m"), "clv": ("clv_tweedie", "clv_12m")}
    uris = {"churn": f"models:/custbase-churn/{champion['result'].version}"}
    experiment = ensure_experiment("pyfunc-bento", champion["config"])
    for name, (kind, label) in labels.items():
        bundle = _tiny_bundle(name, kind, frame, label, features, categories)
        with training_run(experiment, name) as run:
            uri = run.model(bundle, frame.head(5))
        version = mlflow.register_model(uri, f"custbase-{name}").version
        uris[name] = f"models:/custbase-{name}/{version}"
    # an uplift model, logged as training logs it: the bento packs it and every score prices the offer with it
    from training.uplift import _log_bundle, bundle_uplift, fit_uplift

    X = prepare_features(frame, features, categories)
    treated = np.random.default_rng(0).random(len(frame)) < 0.5
    outcome = np.random.default_rng(1).random(len(frame)) < 0.3 + 0.2 * treated * (frame["logins_3m"].fillna(0).to_numpy() > 2)
    hp = {"learner": "shift", "num_leaves": 4, "min_child_samples": 20, "learning_rate": 0.1, "rounds": 10, "feature_fraction": 1.0, "lambda_l2": 1.0}
    uplift_bundle = ModelBundle("retention-uplift", "uplift_shift", features, categories, fit_uplift(X, treated, outcome.astype(float), hp),
                                None, {"offer": "retention", "propensity": 0.5, "learner": "shift"})
    with training_run(experiment, "retention-uplift"):
        uplift_uri = _log_bundle(uplift_bundle, X.head(5))
    uris["retention-uplift"] = f"models:/custbase-retention-uplift/{mlflow.register_model(uplift_uri, 'custbase-retention-uplift').version}"
    tag = build_bento(None, uris, bentoml_home=tmp_path / "bentoml")
    spec = ServingSpec.model_validate(json.loads(Path(bentoml.get(tag).path_of("src/bento_spec/serving_spec.json")).read_text()))
    models = load_champions_from_bento(spec.refs())
    rows = frame.head(30)
    assert set(models.uplift) == {"retention"} and models.versions()["retention-uplift"] == uris["retention-uplift"].rsplit("/", 1)[1]
    served = models.uplift["retention"]
    np.testing.assert_allclose(served.predict(served.encode_frame(rows)), bundle_uplift(load_bundle(uris["retention-uplift"]), rows), rtol=1e-9)
    uris.pop("retention-uplift")
    for name, uri in uris.items():
        # the bento's model folder is the MLflow model: the same pyfunc scores the same numbers
        folder = Path(bentoml.models.get(spec.models[name].bento_tag).path_of("mlflow_model"))
        assert (folder / "data" / "bundle" / "bundle.json").exists() and (folder / "code" / "serving" / "runtime" / "pyfunc.py").exists()
        np.testing.assert_allclose(getattr(models, name).predict(rows), mlflow.pyfunc.load_model(str(folder)).predict(rows), rtol=1e-12)
        np.testing.assert_allclose(getattr(models, name).predict(rows), load_bundle(uri).predict(rows), rtol=1e-12)
    churn_dir = Path(bentoml.models.get(spec.models["churn"].bento_tag).path_of("mlflow_model"))
    booster_file = churn_dir / "data" / "bundle" / "main.lgb.txt"
    booster_file.write_text(booster_file.read_text() + "\n")
    with pytest.raises(ModelStoreError, match="changed since the bento was built"):
        load_champions_from_bento(spec.refs())


@pytest.mark.slow
@pytest.mark.spark
def test_spark_udf_scores_the_table_like_the_bundle(champion, spark):
    import mlflow

    _use_store(champion)
    rows = _rows(champion["table"], 200).drop(columns=["as_of"]).assign(row=np.arange(200))
    udf = mlflow.pyfunc.spark_udf(spark, CHAMPION, result_type="double", env_manager="local")
    scored = spark.createDataFrame(rows).withColumn("churn_probability", udf()).select("row", "churn_probability").toPandas()
    expected = load_bundle(CHAMPION).predict(rows)
    np.testing.assert_allclose(scored.sort_values("row")["churn_probability"], expected, rtol=1e-9)


def test_the_code_a_model_carries_is_the_loaders_whole_import_closure(tmp_path):
    """Importing the loader from the files of CODE_FILES alone (custbase not importable) pulls in nothing else."""
    code = pyfunc.write_code(tmp_path / "code").parent
    script = f"""
import sys
sys.path = [{str(code)!r}] + [p for p in sys.path if p and p.rstrip("/") != {str(PROJECT)!r}]
import serving.runtime.pyfunc
print(sorted(m for m in sys.modules if m.split(".")[0] in ("custbase", "features", "training", "serving")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = sorted(m.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for m in pyfunc.CODE_FILES)
    assert done.stdout.strip() == str(expected)
