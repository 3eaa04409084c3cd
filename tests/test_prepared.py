"""Training on a prepared table: leak screen, single-snapshot cross-validation, registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custbase.config import Config
from training.prepared import (
    EVENT_WORDS,
    binary_target,
    fold_kind,
    read_prepared_table,
    screen_columns,
    shape_prepared_table,
    sniff_separator,
    train_prepared_table,
)
from training.spec import get_spec


def _snapshot(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """One row per customer: a churn target driven by balance trend, tenure and segment; plus a leak and an id."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 120, n)
    trend = rng.normal(0, 1, n)
    segment = rng.choice(["mass", "affluent", "private"], n, p=[0.6, 0.3, 0.1])
    logit = -1.5 - 1.2 * trend - 0.01 * tenure + np.where(segment == "mass", 0.8, 0.0)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "client": [f"C{100000 + i}" for i in rng.permutation(n)],   # the id column (text)
        "balance_trend": trend,
        "tenure_months": tenure,
        "segment": segment,
        "region": rng.choice(["north", "south", "east", "west"], n),  # noise
        "card_spend": np.round(rng.gamma(2, 300, n), 2),              # noise
        "days_since_closure": np.where(churned == 1, rng.integers(1, 90, n), np.nan),  # planted leak: only churners have it
        "account_number": rng.permutation(n) + 5_000_000,            # identifier-like (named like one)
        "churned": churned,
    })


def test_screen_finds_the_identifier_and_the_leak():
    frame = _snapshot()
    y = frame["churned"].to_numpy(dtype="float64")
    columns = [c for c in frame.columns if c not in ("client", "churned")]
    report = screen_columns(frame, columns, y, binary=True, seed=0)
    assert [f.column for f in report.identifiers] == ["account_number"]
    assert [f.column for f in report.leaks] == ["days_since_closure"]
    # Real signal is not a leak, and continuous unique values are not identifiers.
    assert "balance_trend" not in report.excluded and "card_spend" not in report.excluded


def test_a_perfect_category_mapping_is_a_leak_but_high_cardinality_is_not():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    frame = pd.DataFrame({
        "status": np.where(y == 1, rng.choice(["closed", "closing"], n), rng.choice(["open", "active"], n)),
        "branch": rng.choice([f"b{i}" for i in range(150)], n),  # many categories, no signal
    })
    report = screen_columns(frame, ["status", "branch"], y, binary=True, seed=0)
    assert report.excluded == ["status"]


def test_shape_rejects_several_rows_per_customer_without_as_of():
    frame = pd.concat([_snapshot(50), _snapshot(50)])
    with pytest.raises(ValueError, match="several rows per 'client'"):
        shape_prepared_table(frame, get_spec("churn"), target="churned", id_column="client", as_of_column=None)


def test_single_snapshot_falls_back_to_cross_validation_and_registers(tmp_path):
    path = tmp_path / "snapshot.csv"
    _snapshot().to_csv(path, index=False)
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "training": {"num_threads": 1, "trials": 3, "early_stopping_rounds": 20, "max_boost_rounds": 300, "log_figures": False},
    })
    result = train_prepared_table("churn", config, table=path, target="churned", id_column="client", progress=False)
    assert result.mode == "cross_validation"
    assert set(result.screen.excluded) == {"account_number", "days_since_closure"}
    assert "segment" in result.categorical_columns and "region" in result.categorical_columns
    assert not set(result.feature_columns) & {"account_number", "days_since_closure", "client", "churned"}
    assert 0.6 < result.cv_default <= result.cv_tuned < 0.98
    text = result.render()
    assert "FELL BACK to stratified 5-fold cross-validation" in text and "LEAK 'days_since_closure'" in text
    assert result.version == "1"

    from serving.runtime.bundle import load_bundle
    from training.registry import CHALLENGER, alias_version

    assert alias_version("custbase-churn", CHALLENGER) == "1"
    bundle = load_bundle("models:/custbase-churn@challenger")
    p = bundle.predict(pd.read_csv(path).head(20))
    assert p.shape == (20,) and np.all((p >= 0) & (p <= 1))


def test_several_months_use_the_out_of_time_split(tmp_path):
    rng = np.random.default_rng(5)
    customers, months = 150, pd.date_range("2023-01-31", periods=24, freq="ME")
    n = customers * len(months)
    trend = rng.normal(0, 1, n)
    frame = pd.DataFrame({
        "cust": np.repeat(np.arange(1, customers + 1), len(months)),
        "month": np.tile(months, customers),
        "balance_trend": trend,
        "segment": rng.choice(["mass", "affluent"], n),
        "account_number": np.arange(n) + 7_000_000,  # unique per row: an identifier within every month
        "left": (rng.random(n) < 1 / (1 + np.exp(2.0 + 1.5 * trend))).astype(int),
    })
    path = tmp_path / "months.parquet"
    frame.to_parquet(path, index=False)
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "training": {"num_threads": 1, "trials": 1, "max_boost_rounds": 200, "log_figures": False},
    })
    result = train_prepared_table("churn", config, table=path, target="left", id_column="cust", as_of_column="month", progress=False)
    assert result.mode == "out_of_time" and result.months == 24
    assert result.screen.excluded == ["account_number"]
    trained = result.train_result
    assert [str(m) for m in trained.split.test_months] == ["2024-10", "2024-11", "2024-12"]
    assert trained.evaluation.test["roc_auc"] > 0.65
    assert "out-of-time split" in result.render() and result.version == "1"


# --------------------------------------------------------------------------------------------- tables as they come


def _bank_churners(n: int = 500, seed: int = 2) -> pd.DataFrame:
    """Like the public credit-card churn tables: a text target, no id column, and a score column built from the target."""
    frame = _snapshot(n, seed).drop(columns=["client", "account_number", "days_since_closure"])
    churned = frame.pop("churned")
    frame["Attrition_Flag"] = np.where(churned == 1, "Attrited Customer", "Existing Customer")
    # The public set ships two classifier scores named after the target: a leak by name even when noisy.
    rng = np.random.default_rng(seed)
    frame["Naive_Bayes_Classifier_Attrition_Flag_mon_1"] = np.clip(churned * 0.6 + rng.random(n) * 0.5, 0, 1)
    frame["churn_3m"] = churned  # this project's own label, fed back in
    return frame


def test_a_text_target_semicolon_csv_without_id_trains_with_no_edits(tmp_path):
    path = tmp_path / "BankChurners.csv"
    _bank_churners().to_csv(path, index=False, sep=";")
    config = Config.model_validate({
        "paths": {"mlruns_dir": str(tmp_path / "mlruns")},
        "training": {"num_threads": 1, "trials": 2, "early_stopping_rounds": 20, "max_boost_rounds": 200, "log_figures": False},
    })
    result = train_prepared_table("churn", config, table=path, target="Attrition_Flag", progress=False)
    assert result.mode == "cross_validation"
    assert [f.column for f in result.screen.labels] == ["Naive_Bayes_Classifier_Attrition_Flag_mon_1", "churn_3m"]
    assert "segment" in result.categorical_columns  # read with the sniffed ';', not as one column
    assert any("'Attrited Customer' -> 1" in n for n in result.notes) and any("row number" in n for n in result.notes)
    assert 0.6 < result.cv_logistic < 0.98 and 0.6 < result.cv_default < 0.98
    assert "logistic regression" in result.render()


def test_binary_text_targets_map_by_positive_or_by_a_known_pair():
    y, note = binary_target(pd.Series(["Yes", "No", "No", "Yes"]), target="churned", positive=None)
    assert y.tolist() == [1.0, 0.0, 0.0, 1.0] and "'Yes' -> 1" in note and "inferred" in note
    y, _ = binary_target(pd.Series(["stay", "leave", "stay"]), target="status", positive="leave")
    assert y.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"name the positive class, e\.g\. --positive 'leave'"):
        binary_target(pd.Series(["stay", "leave"]), target="status", positive=None)
    # The churn model's event named in one of the two values: inferred, and said so.
    y, note = binary_target(pd.Series(["Existing Customer", "Attrited Customer"]), target="Attrition_Flag", positive=None,
                            event=EVENT_WORDS["churn"])
    assert y.tolist() == [0.0, 1.0] and "'Attrited Customer' -> 1" in note and "inferred" in note
    with pytest.raises(ValueError, match="--positive 'gone' is not a value of target column 'status'"):
        binary_target(pd.Series(["stay", "leave"]), target="status", positive="gone")
    with pytest.raises(ValueError, match="must have two classes.*found 3"):
        binary_target(pd.Series(["a", "b", "c"]), target="status", positive=None)


def test_a_wrong_column_names_close_matches_and_every_column():
    frame = pd.DataFrame({f"feature_{i:02d}": [0.0, 1.0] for i in range(30)} | {"Attrition_Flag": ["a", "b"]})
    with pytest.raises(ValueError) as err:
        shape_prepared_table(frame, get_spec("churn"), target="attrition_flag ", id_column=None, as_of_column=None)
    message = str(err.value)
    assert "did you mean 'Attrition_Flag'" in message and "feature_29" in message and "31 columns" in message


def test_the_leak_screen_refuses_label_columns_for_clv_too():
    rng = np.random.default_rng(3)
    n = 200
    value = rng.gamma(2, 100, n)
    frame = pd.DataFrame({"spend_12m": value * rng.uniform(0.5, 1.5, n), "churn_3m": rng.integers(0, 2, n),
                          "value_copy": value * 2 + 1, "region": rng.choice(["a", "b"], n), "clv": value})
    prepared = shape_prepared_table(frame, get_spec("clv"), target="clv", id_column=None, as_of_column=None)
    assert [f.column for f in prepared.screen.labels] == ["churn_3m"]
    assert [f.column for f in prepared.screen.leaks] == ["value_copy"]
    assert prepared.feature_columns == ["spend_12m", "region"]
    assert fold_kind(False) == "5-fold" and fold_kind(True) == "stratified 5-fold"
    with pytest.raises(ValueError, match="constant 0 in all 200 labeled rows"):
        shape_prepared_table(frame.assign(clv=0.0), get_spec("clv"), target="clv", id_column=None, as_of_column=None)


@pytest.mark.parametrize("sep", [";", "\t", "|", ","])
def test_the_separator_is_sniffed(tmp_path, sep):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a b": [1.5, 2.5], "c": ["x, y", "z"], "d": [1, 2]}).to_csv(path, index=False, sep=sep)
    assert sniff_separator(path) == sep
    assert list(read_prepared_table(path).columns) == ["a b", "c", "d"]
