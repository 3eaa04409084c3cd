"""Feature logic on hand-written rows, the table's shape, and the file build with its metadata."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from raw_factory import balance, customer, make_bank, tables_from_rows, txn, write_bank

from features.build import build_customer_months, build_customer_months_frame
from features.feature_set import (
    CUSTOMER_MONTH_V1,
    FEATURE_DESCRIPTIONS,
    feature_columns,
    read_feature_table,
)


def _row(frame: pd.DataFrame, cid: int, month: str) -> pd.Series:
    as_of = pd.Timestamp(month + "-01") + pd.offsets.MonthEnd(0)
    rows = frame[(frame.customer_id == cid) & (frame.as_of == as_of)]
    assert len(rows) == 1, f"expected one row for customer {cid} at {as_of.date()}, got {len(rows)}"
    return rows.iloc[0]


def test_value_tier_follows_aum_bounds_and_remembers_the_previous_tier(config):
    # AUM exactly at a lower bound belongs to that tier (50k affluent, 500k high-net-worth, 6M private).
    aum = {"2024-01": 49_999.99, "2024-02": 50_000.0, "2024-03": 500_000.0, "2024-04": 6_000_000.0,
           "2024-05": 6_000_000.0, "2024-06": 100.0}
    tables = tables_from_rows(
        customers=[customer(1)],
        balances=[balance(1, m, "current_deposit", v) for m, v in aum.items()],
        transactions=[txn(1, "2024-01-10 09:00")],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 6, 30)).set_index("as_of")
    assert cm.value_tier.tolist() == ["mass", "affluent", "high_net_worth", "private", "private", "mass"]
    assert cm.value_tier_rank.tolist() == [0, 1, 2, 3, 3, 0]
    # January is the data's first month: the tier is new to the data, with no known previous tier.
    assert cm.months_in_value_tier.tolist() == [1, 1, 1, 1, 2, 1]
    assert cm.previous_value_tier.tolist()[1:] == ["mass", "affluent", "high_net_worth", "high_net_worth", "private"]
    assert pd.isna(cm.previous_value_tier.iloc[0])
    assert cm.value_tier_rank_max_12m.tolist() == [0, 1, 2, 3, 3, 3]
    assert cm.aum_change_ratio_1m.iloc[1] == pytest.approx(50_000.0 / 49_999.99 - 1)
    assert cm.aum_drawdown_12m.iloc[-1] == pytest.approx(1 - 100.0 / 6_000_000.0)
    assert cm.aum_avg_3m.iloc[2] == pytest.approx((49_999.99 + 50_000 + 500_000) / 3)


def test_months_in_value_tier_is_capped_at_the_history_window(config):
    months = [f"{y}-{m:02d}" for y in (2022, 2023, 2024) for m in range(1, 13)]
    tables = tables_from_rows(
        customers=[customer(1, onboarded="2021-05-01")],
        balances=[balance(1, m, "time_deposit", 80_000.0) for m in months],
        transactions=[txn(1, "2022-01-05 10:00")],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 12, 31)).set_index("as_of")
    assert cm.months_in_value_tier.iloc[:24].tolist() == list(range(1, 25))
    assert set(cm.months_in_value_tier.iloc[24:]) == {24}


def test_payroll_regularity_and_months_since_the_last_salary(config):
    salary_months = ["2024-01", "2024-02", "2024-04", "2024-06"]
    tables = tables_from_rows(
        customers=[customer(2), customer(3)],
        transactions=[txn(2, f"{m}-25 08:00", 9_000.0, "salary", "online") for m in salary_months]
        + [txn(3, "2024-01-03 12:00"), txn(2, "2024-08-30 12:00")],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 8, 31))
    assert _row(cm, 2, "2024-06").salary_months_6m == 4
    assert _row(cm, 2, "2024-08").salary_months_6m == 2  # Mar..Aug hold April and June
    assert [_row(cm, 2, m).months_since_last_salary for m in ("2024-03", "2024-06", "2024-07", "2024-08")] == [1, 0, 1, 2]
    assert _row(cm, 2, "2024-06").txn_amount_salary_3m == pytest.approx(18_000.0)
    assert np.isnan(_row(cm, 3, "2024-05").months_since_last_salary)
    assert _row(cm, 3, "2024-05").salary_months_6m == 0


def _dormancy_tables():
    months = [f"2024-{m:02d}" for m in range(1, 9)]
    interest = lambda cid: [txn(cid, f"{m}-28 00:00", 0.5, "interest", "online") for m in months]  # noqa: E731
    return tables_from_rows(
        customers=[customer(4), customer(5), customer(6), customer(7, onboarded="2024-03-02")],
        balances=[balance(c, m, "current_deposit", v) for c, v in ((4, 500.0), (5, 500.0), (6, 5_000.0)) for m in months],
        transactions=[txn(4, "2024-01-05 10:00"), txn(5, "2024-01-05 10:00"), txn(6, "2024-01-05 10:00")]
        + interest(4) + interest(5) + interest(6),
        interactions=[{"customer_id": 5, "timestamp": "2024-03-14 19:00", "kind": "login"}],
    )


def test_dormancy_needs_low_aum_and_k_months_without_customer_initiated_activity(config):
    cm = build_customer_months_frame(_dormancy_tables(), config, data_end=date(2024, 8, 31))
    dormant = cm.pivot(index="as_of", columns="customer_id", values="is_dormant")
    # 4: active in January only (interest credits are not the customer's doing) -> dormant from April.
    assert dormant[4].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    # 5: a login in March keeps them awake until June.
    assert dormant[5].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    # 6: inactive but AUM 5,000 >= the 1,000 threshold.
    assert dormant[6].tolist() == [0] * 8
    # 7: onboarded in March, never active: dormant once three months have passed.
    assert dormant[7].dropna().tolist() == [0, 0, 1, 1, 1, 1]
    assert _row(cm, 4, "2024-08").months_since_last_activity == 7
    assert _row(cm, 5, "2024-08").months_since_last_activity == 5
    assert _row(cm, 5, "2024-03").logins_3m == 1


def test_transactions_only_data_has_no_balance_features_and_activity_dormancy(config):
    tables = tables_from_rows(
        customers=[customer(1), customer(2)],
        transactions=[txn(1, f"2024-{m:02d}-10 10:00", 50.0, "card_spend", "mobile") for m in range(1, 7)]
        + [txn(2, "2024-01-10 10:00", 20.0, "cash", "atm")],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 6, 30))
    expected = feature_columns({"customers", "transactions"})
    assert list(cm.columns) == ["customer_id", "as_of", *expected, "churn_3m", "clv_12m"]
    assert not {"aum_month_end", "value_tier", "balance_fund", "logins_3m", "upgrade_3m"} & set(cm.columns)
    assert len(expected) >= 80
    assert cm[cm.customer_id == 2].is_dormant.tolist() == [0, 0, 0, 1, 1, 1]
    assert cm[cm.customer_id == 1].is_dormant.tolist() == [0] * 6
    row = _row(cm, 1, "2024-06")
    assert row.txn_count_mobile_3m == 3 and row.txn_count_12m == 6 and row.digital_share_3m == 1.0
    assert row.txn_amount_card_spend_6m == pytest.approx(300.0)
    assert row.net_revenue_1m == pytest.approx(-8.0)  # no fees: just the cost to serve


def test_one_row_per_active_customer_month(config, small_bank):
    cm = build_customer_months_frame(small_bank.tables, config, data_end=small_bank.data_end)
    assert not cm.duplicated(["customer_id", "as_of"]).any()
    assert len(CUSTOMER_MONTH_V1.columns) >= 80
    assert list(cm.columns[2:-3]) == list(CUSTOMER_MONTH_V1.columns)
    customers = small_bank.tables["customers"].set_index("customer_id")
    closed = small_bank.tables["closures"].set_index("customer_id").closed_date
    for cid, rows in cm.groupby("customer_id"):
        first = pd.Timestamp(customers.onboarding_date[cid]) + pd.offsets.MonthEnd(0)
        assert rows.as_of.min() == max(first, pd.Timestamp("2024-01-31"))
        last = pd.Timestamp(closed[cid]) - pd.offsets.MonthEnd(1) if cid in closed.index else pd.Timestamp(small_bank.data_end)
        assert rows.as_of.max() == last, f"customer {cid}: active rows must stop before the closure month"
        assert len(rows) == len(pd.date_range(rows.as_of.min(), rows.as_of.max(), freq="ME"))


def test_builder_does_not_change_its_input_frames(config, small_bank):
    before = {k: v.copy() for k, v in small_bank.tables.items()}
    build_customer_months_frame(small_bank.tables, config, data_end=small_bank.data_end, start="2024-06", end="2024-06")
    for name, frame in before.items():
        pd.testing.assert_frame_equal(small_bank.tables[name], frame)


def test_every_feature_has_a_description():
    assert set(FEATURE_DESCRIPTIONS) == set(CUSTOMER_MONTH_V1.columns)
    assert all(len(text) > 10 for text in FEATURE_DESCRIPTIONS.values())
    assert set(CUSTOMER_MONTH_V1.categorical_columns) == {"gender", "city_tier", "income_band", "value_tier", "previous_value_tier"}


def test_file_build_writes_table_and_metadata(tmp_path, config):
    bank = make_bank(n_customers=8, months=14, seed=5)
    raw = write_bank(bank, tmp_path / "raw", partition=("transactions", "balances"))
    out = tmp_path / "cm.parquet"
    summary = build_customer_months(raw, out, config, validate=False, progress=False)
    frame, meta = read_feature_table(out)
    in_memory = build_customer_months_frame(bank.tables, config, data_end=bank.data_end)
    pd.testing.assert_frame_equal(frame, in_memory)
    assert meta["feature_set"]["name"] == "customer_month_v1" and meta["feature_set"]["columns"] == list(CUSTOMER_MONTH_V1.columns)
    assert meta["label_columns"] == ["churn_3m", "upgrade_3m", "clv_12m"]
    assert meta["data_end"] == bank.data_end.isoformat() and meta["engine"] == "duckdb"
    assert meta["as_of_max"] == bank.data_end.isoformat()
    assert summary.rows == len(frame) and summary.customers == frame.customer_id.nunique()
    assert summary.feature_count == len(CUSTOMER_MONTH_V1.columns)
    assert summary.null_label_share["clv_12m"] > summary.null_label_share["churn_3m"] > 0
    assert "customer-month table" in summary.render()
    assert not list(tmp_path.glob(".cm.parquet*"))  # no temporary file left behind


def test_from_to_limits_the_output_months(tmp_path, config):
    bank = make_bank(n_customers=6, months=12, seed=2)
    raw = write_bank(bank, tmp_path / "raw")
    summary = build_customer_months(raw, tmp_path / "cm.parquet", config, start="2024-05", end="2024-07",
                                    validate=False, progress=False)
    assert (summary.as_of_min, summary.as_of_max) == (date(2024, 5, 31), date(2024, 7, 31))
    with pytest.raises(ValueError, match="no as_of month"):
        build_customer_months(raw, tmp_path / "x.parquet", config, start="2026-01", validate=False, progress=False)


def test_a_build_in_customer_slices_equals_one_pass(tmp_path, config, monkeypatch):
    import features.build

    bank = make_bank(n_customers=9, months=8, seed=4)
    raw = write_bank(bank, tmp_path / "raw")
    one = build_customer_months(raw, tmp_path / "one.parquet", config, validate=False, progress=False)
    monkeypatch.setattr(features.build, "SPINE_ROWS_PER_PASS", 40)  # forces several customer slices
    sliced = build_customer_months(raw, tmp_path / "sliced.parquet", config, validate=False, progress=False)
    assert sliced.rows == one.rows
    pd.testing.assert_frame_equal(read_feature_table(sliced.out_path)[0], read_feature_table(one.out_path)[0])


def test_reading_a_missing_feature_table_says_how_to_build_it(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match="custbase features --out"):
        read_feature_table(missing)
