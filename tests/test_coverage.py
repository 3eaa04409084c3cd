"""The optional ``coverage`` table: rows only inside a customer's covered months, labels null past its end."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from raw_factory import balance, customer, make_bank, tables_from_rows, txn, write_bank

from features.build import build_customer_months, build_customer_months_frame
from features.feature_set import read_feature_table

DATA_END = date(2024, 12, 31)
MONTHS = [f"2024-{m:02d}" for m in range(1, 13)]


def _bank() -> dict[str, pd.DataFrame]:
    """Three customers with a card payment and a small deposit every month of 2024.

    1: covered 2024-01-01 .. 2024-06-30 (a month end), and no data after it (as in a real partial extract).
    2: covered 2024-03-15 .. 2024-08-20 (mid-month both ends): as_of 2024-03-31 .. 2024-07-31.
    3: no coverage row: covered up to the data's end.
    """
    active = {1: MONTHS[:6], 2: MONTHS, 3: MONTHS}
    rows = tables_from_rows(
        customers=[customer(1, "2023-06-01"), customer(2, "2023-06-01"), customer(3, "2023-06-01")],
        transactions=[txn(c, f"{m}-10 12:00") for c, months in active.items() for m in months],
        balances=[balance(c, m, "current_deposit", 500.0) for c, months in active.items() for m in months],
    )
    return rows


def _coverage() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [1, 2],
        "coverage_start": pd.to_datetime(["2024-01-01", "2024-03-15"]).astype("datetime64[us]"),
        "coverage_end": pd.to_datetime(["2024-06-30", "2024-08-20"]).astype("datetime64[us]"),
        "slice": ["a", "b"],
    })


def _months(frame: pd.DataFrame, cid: int) -> list[str]:
    return frame.loc[frame.customer_id == cid, "as_of"].dt.strftime("%Y-%m").tolist()


def test_rows_stay_inside_each_customers_coverage(config):
    out = build_customer_months_frame({**_bank(), "coverage": _coverage()}, config, data_end=DATA_END)
    assert _months(out, 1) == MONTHS[:6]  # coverage_end is a month end: June is covered
    assert _months(out, 2) == MONTHS[2:7]  # 2024-03-31 is after the 15th; 2024-08-31 is after the 20th
    assert _months(out, 3) == MONTHS  # no coverage row: up to the data's end


def test_labels_are_null_when_the_horizon_runs_past_coverage_end(config):
    out = build_customer_months_frame({**_bank(), "coverage": _coverage()}, config, data_end=DATA_END)
    out = out.set_index(["customer_id", "as_of"])
    churn = out["churn_3m"].unstack(0)
    churn.index = churn.index.strftime("%Y-%m")
    # Churn reads 3 + 3 - 1 = 5 months after as_of: customer 1 (covered to June) has a label for January only,
    # customer 2 (covered March to July) none, customer 3 up to July (5 months before the data's end).
    assert churn[1].dropna().index.tolist() == MONTHS[:1]
    assert churn[2].dropna().empty
    assert churn[3].dropna().index.tolist() == MONTHS[:7]
    assert (churn[1].dropna() == 0).all()
    upgrade, clv = out["upgrade_3m"].unstack(0), out["clv_12m"].unstack(0)
    # 3-month upgrade horizon: customer 1 labelled Jan-Mar, customer 2 Mar-Apr.
    assert upgrade[1].notna().sum() == 3 and upgrade[2].notna().sum() == 2
    assert clv[1].isna().all() and clv[2].isna().all()  # a 12-month horizon never fits


def test_without_coverage_silence_after_the_extract_looks_like_churn(config):
    """Why the table exists: customer 1's data simply ends in June; read as inactivity, that is dormancy."""
    plain = build_customer_months_frame(_bank(), config, data_end=DATA_END)
    june = plain[(plain.customer_id == 1) & (plain.as_of == "2024-06-30")]
    assert june["churn_3m"].tolist() == [1.0]
    covered = build_customer_months_frame({**_bank(), "coverage": _coverage()}, config, data_end=DATA_END)
    june = covered[(covered.customer_id == 1) & (covered.as_of == "2024-06-30")]
    assert june["churn_3m"].isna().all()
    # Features of covered months do not change (customer 1's window starts with the data; 3 has no window):
    # coverage only removes rows and labels.
    labels = ["churn_3m", "upgrade_3m", "clv_12m"]
    key = ["customer_id", "as_of"]
    kept = covered[covered.customer_id != 2].drop(columns=labels).reset_index(drop=True)
    before = plain.merge(kept[key], on=key).drop(columns=labels).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, kept)


def test_file_build_reads_coverage_parquet(tmp_path, config):
    bank = make_bank(n_customers=8, months=10, seed=4)
    raw = write_bank(bank, tmp_path / "raw")
    ids = sorted(bank.tables["customers"]["customer_id"])
    coverage = pd.DataFrame({
        "customer_id": ids[:4],
        "coverage_start": pd.Timestamp("2024-01-01"),
        "coverage_end": pd.Timestamp("2024-05-31"),
    }).astype({"coverage_start": "datetime64[us]", "coverage_end": "datetime64[us]"})
    coverage.to_parquet(raw / "coverage.parquet", index=False)
    build_customer_months(raw, tmp_path / "cm.parquet", config, validate=True, progress=False)
    frame, metadata = read_feature_table(tmp_path / "cm.parquet")
    covered = frame[frame.customer_id.isin(ids[:4])]
    assert covered["as_of"].max() == pd.Timestamp("2024-05-31")
    assert covered.loc[covered.as_of > "2024-02-29", "churn_3m"].isna().all()
    assert frame.loc[~frame.customer_id.isin(ids[:4]), "as_of"].max() == pd.Timestamp("2024-10-31")
    assert "coverage" in metadata["raw_tables"]


@pytest.mark.spark
def test_spark_equals_duckdb_with_coverage(spark, config):
    bank = make_bank(n_customers=10, months=12, seed=8)
    ids = sorted(bank.tables["customers"]["customer_id"])
    coverage = pd.DataFrame({
        "customer_id": ids[:6],
        "coverage_start": pd.to_datetime(["2024-02-10", "2024-01-01", "2024-03-31", "2024-01-01", "2024-04-01", "2024-01-01"]),
        "coverage_end": pd.to_datetime(["2024-08-31", "2024-07-15", "2024-09-30", "2024-06-30", "2024-12-31", "2024-10-01"]),
    }).astype({"coverage_start": "datetime64[us]", "coverage_end": "datetime64[us]"})
    tables = {**bank.tables, "coverage": coverage}
    duck = build_customer_months_frame(tables, config, data_end=bank.data_end)
    sprk = build_customer_months_frame(tables, config, data_end=bank.data_end, engine="spark")
    pd.testing.assert_frame_equal(duck, sprk, check_exact=False, rtol=1e-9, atol=1e-6)
    first = duck[duck.customer_id == ids[0]]
    assert first["as_of"].min() == pd.Timestamp("2024-02-29") and first["as_of"].max() <= pd.Timestamp("2024-08-31")
    assert duck.loc[duck.customer_id == ids[1], "as_of"].max() <= pd.Timestamp("2024-06-30")
