"""DuckDB and Spark run the same feature definitions and must give the same table."""

from __future__ import annotations

import pandas as pd
import pytest
from raw_factory import make_bank, write_bank

from features.build import build_customer_months
from features.definitions import pipeline, month_range
from features.feature_set import read_feature_table
from features.spark import to_spark_sql


def _assert_same_table(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert list(duck.columns) == list(spark.columns)
    assert duck.dtypes.to_dict() == spark.dtypes.to_dict()
    # Sums of doubles may be added up in a different order by the two engines.
    pd.testing.assert_frame_equal(duck, spark, check_exact=False, rtol=1e-9, atol=1e-6)


def test_every_step_transpiles_to_spark_sql(config):
    r = month_range(config, data_end=pd.Timestamp("2025-12-31").date(), first_data_month=2024 * 12, start=None, end=None)
    steps, final = pipeline(config, {"customers", "transactions", "balances", "interactions", "campaign_contacts", "closures"}, r)
    spark_sql = {step.name: to_spark_sql(step.sql) for step in steps}
    assert set(spark_sql) >= {"span", "txn_monthly", "monthly", "base", "customer_month_features", "customer_month_labels"}
    assert "`timestamp` >= CAST(" in spark_sql["txn_monthly"]  # quoted identifier, filter kept for pushdown
    assert "ORDER BY" not in to_spark_sql(final)


@pytest.mark.spark
def test_duckdb_and_spark_build_the_same_table(spark, tmp_path, config):
    bank = make_bank(n_customers=15, months=16, seed=21)
    raw = write_bank(bank, tmp_path / "raw", partition=("transactions", "interactions"))
    duck = build_customer_months(raw, tmp_path / "duck.parquet", config, validate=False, progress=False)
    sprk = build_customer_months(raw, tmp_path / "spark.parquet", config, engine="spark", validate=False, progress=False)
    (d, d_meta), (s, s_meta) = read_feature_table(duck.out_path), read_feature_table(sprk.out_path)
    _assert_same_table(d, s)
    assert (d_meta["engine"], s_meta["engine"]) == ("duckdb", "spark")
    assert d_meta["feature_set"] == s_meta["feature_set"]
    assert d.churn_3m.notna().any() and d.upgrade_3m.notna().any() and d.clv_12m.notna().any()


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_agree_on_the_simulated_bank(spark, tmp_path, config):
    simulate = pytest.importorskip("features.simulate")
    settings = config.simulation.model_copy(update={"customers": 300, "months": 15, "seed": 5})
    raw = tmp_path / "bank"
    simulate.simulate_bank(settings, raw, config=config, progress=False)
    duck = build_customer_months(raw, tmp_path / "duck.parquet", config, validate=False, progress=False)
    sprk = build_customer_months(raw, tmp_path / "spark.parquet", config, engine="spark", validate=False, progress=False)
    d, _ = read_feature_table(duck.out_path)
    s, _ = read_feature_table(sprk.out_path)
    assert len(d.columns) - 5 >= 80
    assert not d.duplicated(["customer_id", "as_of"]).any()
    _assert_same_table(d, s)
