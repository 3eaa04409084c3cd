"""Labels on hand-written rows: churn (closure, dormancy), upgrade, discounted CLV, nulls at the data's end."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from raw_factory import balance, customer, tables_from_rows, txn

from features.build import build_customer_months_frame

MONTHS = [f"2024-{m:02d}" for m in range(1, 9)]


def _series(frame: pd.DataFrame, cid: int, column: str) -> list:
    return frame[frame.customer_id == cid].sort_values("as_of")[column].tolist()


def _nan_list(values: list) -> list:
    return ["nan" if (isinstance(v, float) and np.isnan(v)) else v for v in values]


@pytest.fixture(scope="module")
def churn_bank(config):
    active = lambda cid: [txn(cid, f"{m}-12 10:00") for m in MONTHS]  # noqa: E731
    interest = lambda cid: [txn(cid, f"{m}-28 00:00", 0.5, "interest", "online") for m in MONTHS]  # noqa: E731
    tables = tables_from_rows(
        customers=[customer(c) for c in (4, 6, 8, 9)],
        balances=[balance(c, m, "current_deposit", 20_000.0) for c in (6, 8) for m in MONTHS]
        + [balance(4, m, "current_deposit", 500.0) for m in MONTHS]
        # 9 grows from mass to affluent in April and to high-net-worth in August.
        + [balance(9, m, "fund", v) for m, v in zip(MONTHS, [10e3, 20e3, 30e3, 60e3, 70e3, 80e3, 90e3, 600e3])],
        transactions=[txn(4, "2024-01-05 10:00")] + interest(4) + active(6) + active(9)
        + [t for t in active(8) if t["timestamp"] < "2024-05"],
        closures=[{"customer_id": 8, "closed_date": "2024-05-10"}],
    )
    return build_customer_months_frame(tables, config, data_end=date(2024, 8, 31))


def test_churn_by_closure_within_the_horizon(churn_bank):
    # Closed 10 May: active at the end of Jan..Apr only; exits within 3 months of Feb, Mar, Apr, not of Jan.
    assert _series(churn_bank, 8, "churn_3m") == [0.0, 1.0, 1.0, 1.0]
    assert _series(churn_bank, 8, "upgrade_3m") == [0.0, 0.0, 0.0, 0.0]


def test_churn_by_dormancy_reached_within_the_horizon(churn_bank):
    # 4 becomes dormant in April (AUM 500, nothing of their own doing since January).
    assert _series(churn_bank, 4, "is_dormant") == [0, 0, 0, 1, 1, 1, 1, 1]
    assert _nan_list(_series(churn_bank, 4, "churn_3m")) == [1.0, 1.0, 1.0, 1.0, 1.0, "nan", "nan", "nan"]


def test_labels_are_null_when_the_horizon_runs_past_the_data(churn_bank):
    assert _nan_list(_series(churn_bank, 6, "churn_3m")) == [0.0] * 5 + ["nan"] * 3
    assert _nan_list(_series(churn_bank, 6, "upgrade_3m")) == [0.0] * 5 + ["nan"] * 3
    assert churn_bank.clv_12m.isna().all()  # 8 months of data cannot show 12 months ahead


def test_upgrade_compares_the_tier_three_months_ahead(churn_bank):
    # Tiers: mass Jan-Mar, affluent Apr-Jul, high-net-worth Aug.
    assert _series(churn_bank, 9, "value_tier_rank") == [0, 0, 0, 1, 1, 1, 1, 2]
    assert _nan_list(_series(churn_bank, 9, "upgrade_3m")) == [1.0, 1.0, 1.0, 0.0, 1.0, "nan", "nan", "nan"]


def test_upgrade_is_null_for_the_top_tier(config):
    tables = tables_from_rows(
        customers=[customer(1)],
        balances=[balance(1, m, "wealth_management", 7e6) for m in MONTHS],
        transactions=[txn(1, f"{m}-03 11:00") for m in MONTHS],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 8, 31))
    assert cm.value_tier.eq("private").all()
    assert cm.upgrade_3m.isna().all()
    assert cm.churn_3m.notna().sum() == 5


def test_clv_discounts_twelve_months_of_net_revenue(config):
    # Transactions only: net revenue = fees - cost to serve (8) = 100 a month for customers 1 and 2.
    months = [f"{y}-{m:02d}" for y, m in [(2024, m) for m in range(1, 13)] + [(2025, 1), (2025, 2)]]
    fees = lambda cid, until: [txn(cid, f"{m}-20 09:00", 108.0, "fee", "online") for m in months if m < until]  # noqa: E731
    tables = tables_from_rows(
        customers=[customer(1), customer(2), customer(3)],
        transactions=fees(1, "2099") + fees(2, "2024-07") + [txn(3, "2024-01-02 10:00")],
        closures=[{"customer_id": 2, "closed_date": "2024-07-15"}],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2025, 2, 28))
    discount = 1.10 ** (-np.arange(1, 13) / 12)
    # 1: twelve months of 100, discounted at 10% a year.
    assert _series(cm, 1, "clv_12m")[:2] == pytest.approx([100 * discount.sum()] * 2)
    assert np.isnan(_series(cm, 1, "clv_12m")[2:]).all()
    # 2 closes in July: revenue of Feb..Jun counts, July onwards is 0.
    assert _series(cm, 2, "clv_12m")[0] == pytest.approx(100 * discount[:5].sum())
    # 3 only costs money: CLV is floored at 0.
    assert _series(cm, 3, "clv_12m")[:2] == [0.0, 0.0]
    assert "upgrade_3m" not in cm.columns


def test_the_value_definition_comes_from_config():
    """Bank default: fees count, card spend does not; a retailer's config counts spend x 1 and no cost to serve."""
    from custbase.config import Config

    months = [f"2024-{m:02d}" for m in range(1, 7)]
    tables = tables_from_rows(
        customers=[customer(1, onboarded="2024-01-01", born=None, gender="U", city_tier=None, income_band=None)],
        transactions=[txn(1, f"{m}-10 10:00", 50.0) for m in months] + [txn(1, "2024-02-20 10:00", 4.0, "fee", "online")],
    )
    bank = build_customer_months_frame(tables, Config(), data_end=date(2024, 6, 30))
    assert _series(bank, 1, "net_revenue_1m") == [-8.0, -4.0, -8.0, -8.0, -8.0, -8.0]
    retailer = Config.model_validate({"revenue": {"transaction_rate": {"card_spend": 1.0}, "annual_rate": {},
                                                  "cost_to_serve_monthly": 0}, "labels": {"clv_horizon_months": 2,
                                                                                          "clv_annual_discount_rate": 0.0}})
    shop = build_customer_months_frame(tables, retailer, data_end=date(2024, 6, 30))
    assert _series(shop, 1, "net_revenue_1m") == [50.0] * 6
    # The label follows the horizon: clv_2m, two months of spend; customer-initiated activity is unchanged.
    assert _nan_list(_series(shop, 1, "clv_2m")) == [100.0, 100.0, 100.0, 100.0, "nan", "nan"]
    assert _series(shop, 1, "customer_txn_count_3m") == _series(bank, 1, "customer_txn_count_3m")
    with pytest.raises(ValueError, match="revenue.transaction_rate names spend"):
        Config.model_validate({"revenue": {"transaction_rate": {"spend": 1.0}}})
