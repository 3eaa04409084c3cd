"""Training on a weighted sample of customers read slice by slice (training.sample): whole customers, every positive,
every test row, weights that give back the population."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config, Paths, Training
from features.feature_set import read_feature_table
from serving.runtime.calibration import fit_platt
from training.evaluation import GiniFeval
from training.modeling_data import WEIGHT_COLUMN, prepare_modeling_data
from training.sample import customer_unit, read_training_frame, representative_rows, sample_of, shares_for
from training.spec import get_spec

from synthetic import NAMES, SYNTHETIC_LABELS, synthetic_customer_months, write_feature_table


def _config(budget: int | None, mlruns=None) -> Config:
    return Config(labels=SYNTHETIC_LABELS, paths=Paths(mlruns_dir=mlruns) if mlruns else Paths(),
                  training=Training(trials=1, num_threads=1, early_stopping_rounds=20, max_boost_rounds=300,
                                    shap_sample_rows=200, log_figures=False, sample_max_rows=budget))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    frame = synthetic_customer_months(customers=1_500, months=24, seed=3)
    # churners only among the youngest and oldest (about a sixth of the customers): few positive customers, as in a bank
    rare = (frame["age"] - 50).abs() > 25
    frame[NAMES.churn] = frame[NAMES.churn].where(rare | frame[NAMES.churn].isna(), 0.0)
    return frame, write_feature_table(frame, tmp_path_factory.mktemp("sample") / "customer_months.parquet")


def test_shares_fill_the_budget_with_every_positive_first():
    assert shares_for(1_000, 300, 600) == (1.0, 1.0)
    positive, negative = shares_for(1_000, 300, 7_000)
    assert positive == 1.0 and 300 + negative * 7_000 == pytest.approx(1_000)
    # positives alone would take more than half: half the budget each
    positive, negative = shares_for(1_000, 4_000, 6_000)
    assert positive * 4_000 == pytest.approx(500) and negative * 6_000 == pytest.approx(500)
    # few negatives: all of them, and the positives that fit
    positive, negative = shares_for(1_000, 5_000, 200)
    assert negative == 1.0 and positive * 5_000 + 200 == pytest.approx(1_000)


def test_the_draw_of_a_customer_is_stable_uniform_and_keyed_by_the_seed():
    ids = np.arange(20_000)
    draw = customer_unit(ids, seed=42)
    assert np.array_equal(draw, customer_unit(ids, seed=42))
    assert np.array_equal(customer_unit(ids[::-1], seed=42), draw[::-1])  # a customer's draw, not a row's
    assert np.array_equal(customer_unit(ids.astype("str"), seed=42), draw)  # same for ids read as text
    assert abs((draw < 0.3).mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / len(ids))
    assert np.corrcoef(draw, customer_unit(ids, seed=7))[0, 1] < 0.05


@pytest.mark.parametrize("model", ["churn", "upgrade", "clv"])
def test_within_the_budget_the_frame_is_the_table_rows_the_model_uses(table, model):
    frame, path = table
    config = _config(None)
    spec = get_spec(model).for_labels(SYNTHETIC_LABELS)
    read, metadata = read_training_frame(path, get_spec(model), config)
    expected, _ = read_feature_table(path)
    expected = expected.drop(columns=[c for c in NAMES.labels if c != spec.label])
    # only the eligible rows are read (CLV's censored labels would need every month: a short table's case)
    expected = expected.loc[spec.eligible(expected, config)].reset_index(drop=True)
    assert 0 < len(read) < len(frame)
    pd.testing.assert_frame_equal(read, expected)
    sample = sample_of(metadata)
    assert not sample.sampled and WEIGHT_COLUMN not in read.columns and sample.rows_read == len(expected)
    # the model's rows are those it would have from the whole table
    data, whole = (prepare_modeling_data(f, metadata, spec, config) for f in (read, frame))
    assert data.split == whole.split and data.feature_columns == whole.feature_columns
    assert data.categories == whole.categories
    for part, full in ((data.train, whole.train), (data.validation, whole.validation), (data.test, whole.test)):
        pd.testing.assert_frame_equal(part.reset_index(drop=True), full[part.columns].reset_index(drop=True))


def test_the_data_fingerprint_of_the_parts_is_that_of_their_concatenation(table):
    from training.tracking import data_fingerprint

    frame, _ = table
    parts = (frame.iloc[:1_000], frame.iloc[1_000:5_000], frame.iloc[5_000:])
    assert data_fingerprint(*parts) == data_fingerprint(frame)
    assert data_fingerprint(*parts[::-1])["content_hash"] != data_fingerprint(frame)["content_hash"]
    assert data_fingerprint(frame.iloc[1:])["rows"] == len(frame) - 1


def test_a_sampled_read_keeps_whole_customers_every_positive_and_every_test_row(table):
    frame, path = table
    config = _config(8_000)
    spec = get_spec("churn").for_labels(SYNTHETIC_LABELS)
    read, metadata = read_training_frame(path, get_spec("churn"), config)
    sample = sample_of(metadata)
    full = prepare_modeling_data(frame, metadata, spec, config)
    data = prepare_modeling_data(read, metadata, spec, config)
    assert sample.sampled and data.split == full.split
    assert 7_000 <= sample.rows_sampled <= 9_000 and sample.rows_eligible == len(full.train) + len(full.validation)
    # every test row, unweighted metrics of the whole population
    columns = [c for c in read.columns if c != WEIGHT_COLUMN]
    pd.testing.assert_frame_equal(data.test[columns].reset_index(drop=True), full.test[columns].reset_index(drop=True))
    # whole customers: a kept customer has all its eligible months
    kept = read.loc[read[WEIGHT_COLUMN] > 1, "customer_id"].unique()
    months = frame.loc[spec.eligible(frame, config)].groupby("customer_id")["as_of"].size()
    assert (read.loc[read["customer_id"].isin(kept)].groupby("customer_id")["as_of"].size() == months.loc[kept]).all()
    # the weights give back the population: the weighted churn rate of the sampled training rows is the full one's
    y, w = data.y(data.train), data.weight(data.train)
    full_rate = full.y(full.train).mean()
    se = np.sqrt(full_rate * (1 - full_rate) / len(y)) * 3  # customers' months are correlated: a wide margin
    assert abs(np.average(y, weights=w) - full_rate) < 4 * se
    assert y.mean() > 1.5 * full_rate  # unweighted, the kept positives would overstate it
    # the drift reference reads a uniform sample of customers, unweighted
    uniform = representative_rows(data.train, metadata)
    assert 0 < len(uniform) < len(data.train)
    assert abs(data.y(uniform).mean() - full_rate) < 4 * np.sqrt(full_rate * (1 - full_rate) / len(uniform)) * 3
    assert set(np.round(np.unique(w), 9)) <= {round(1 / sample.share_positive, 9), round(1 / sample.share_negative, 9)}


def test_a_weighted_gini_counts_a_row_of_weight_k_as_k_rows():
    rng = np.random.default_rng(0)
    y, score = rng.gamma(0.5, 100, 400), rng.normal(size=400)
    weight = rng.integers(1, 4, 400).astype("float64")
    replicated = np.repeat(np.arange(400), weight.astype(int))
    weighted = GiniFeval(y, weight)(score, None)[1]
    assert weighted == pytest.approx(GiniFeval(y[replicated])(score[replicated], None)[1], abs=1e-9)
    assert GiniFeval(y, np.ones(400))(score, None)[1] == pytest.approx(GiniFeval(y)(score, None)[1], abs=1e-12)


def test_a_weighted_calibration_equals_one_on_replicated_rows():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 500)
    y = (rng.uniform(size=500) < p * 0.6).astype("float64")
    weight = rng.integers(1, 5, 500).astype("float64")
    replicated = np.repeat(np.arange(500), weight.astype(int))
    assert fit_platt(p, y, weight).coef == pytest.approx(fit_platt(p[replicated], y[replicated]).coef, rel=1e-4)


@pytest.mark.slow
def test_a_sampled_training_records_its_sample_and_ranks_as_well_as_the_full_one(table, tmp_path, monkeypatch):
    from training.jobs import train_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, path = table
    full = train_model("churn", _config(None, tmp_path / "full"), features_path=path, progress=False)
    sampled = train_model("churn", _config(8_000, tmp_path / "sampled"), features_path=path, progress=False)
    assert sampled.rows["test"] == full.rows["test"]
    assert sampled.rows["train"] + sampled.rows["validation"] < 0.6 * (full.rows["train"] + full.rows["validation"])
    assert abs(sampled.evaluation.test["roc_auc"] - full.evaluation.test["roc_auc"]) < 0.02
    assert abs(sampled.evaluation.test["ece"] - full.evaluation.test["ece"]) < 0.02  # weights keep it calibrated

    import mlflow

    client = mlflow.tracking.MlflowClient(sampled.tracking_uri)
    run = client.get_run(sampled.run_id)
    assert float(run.data.params["sample_share_negative"]) < 1 and run.data.params["sample_budget_rows"] == "8000"
    card = client.download_artifacts(sampled.run_id, "model_card.md", str(tmp_path))
    assert "**Sample**: sampled" in open(card).read()


def test_the_logistic_baseline_fits_on_whole_customers_within_its_budget_and_predicts_in_chunks(table, monkeypatch):
    from training import baselines
    from training.train import baseline_rows

    frame, _ = table
    config = _config(None)
    spec = get_spec("churn").for_labels(SYNTHETIC_LABELS)
    data = prepare_modeling_data(frame, {"labels": SYNTHETIC_LABELS.model_dump()}, spec, config)
    settings = config.training.model_copy(update={"baseline_max_rows": 4_000})
    rows = baseline_rows(data.train, settings)
    assert 3_000 < len(rows) < 5_000 < len(data.train)
    months = data.train.groupby("customer_id").size()
    assert (rows.groupby("customer_id").size() == months.loc[rows["customer_id"].unique()]).all()  # whole customers
    assert baseline_rows(data.train, config.training.model_copy(update={"baseline_max_rows": None})) is data.train

    x = np.array([[-1e6, -2.5, 0.0, 3.0, np.inf]])
    assert np.array_equal(baselines._signed_log(x.copy()), np.sign(x) * np.log1p(np.abs(x)))
    model = baselines.fit_logistic_baseline(rows[data.feature_columns], data.y(rows), list(data.categories))
    whole = model.predict_proba(data.test[data.feature_columns])[:, 1]
    monkeypatch.setattr(baselines, "PREDICT_ROWS", 777)
    assert len(data.test) > 2 * 777
    np.testing.assert_allclose(baselines.predict_in_chunks(model, data.test[data.feature_columns]), whole, rtol=1e-12)
