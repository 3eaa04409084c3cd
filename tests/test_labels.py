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
    active = lambda cid, until="2099": [txn(cid, f"{m}-12 10:00") for m in MONTHS if m < until]  # noqa: E731
    interest = lambda cid: [txn(cid, f"{m}-28 00:00", 0.5, "interest", "online") for m in MONTHS]  # noqa: E731
    tables = tables_from_rows(
        customers=[customer(c) for c in (4, 5, 6, 7, 8, 9)],
        balances=[balance(c, m, "current_deposit", 20_000.0) for c in (6, 8) for m in MONTHS]
        + [balance(c, m, "current_deposit", 500.0) for c in (4, 5, 7) for m in MONTHS]
        # 9 grows from mass to affluent in April and to high-net-worth in August.
        + [balance(9, m, "fund", v) for m, v in zip(MONTHS, [10e3, 20e3, 30e3, 60e3, 70e3, 80e3, 90e3, 600e3])],
        transactions=[txn(4, "2024-01-05 10:00")] + interest(4) + active(6) + active(9) + active(8, "2024-05")
        # 5 goes quiet from June (a run Jun, Jul, Aug); 7 is quiet in Mar and Apr only, then active again.
        + active(5, "2024-06") + [t for t in active(7) if not t["timestamp"].startswith(("2024-03", "2024-04"))],
        closures=[{"customer_id": 8, "closed_date": "2024-05-10"}],
    )
    return build_customer_months_frame(tables, config, data_end=date(2024, 8, 31))


def test_churn_by_closure_within_the_horizon(churn_bank):
    # Closed 10 May: open at the end of Jan..Apr only; exits within 3 months of Feb and Mar, not of Jan. April's
    # label needs 3 + 3 - 1 = 5 months after it (to September): null, though the closure is already in the data.
    assert _nan_list(_series(churn_bank, 8, "churn_3m")) == [0.0, 1.0, 1.0, "nan"]
    assert _series(churn_bank, 8, "upgrade_3m") == [0.0, 0.0, 0.0, 0.0]


def test_a_dormancy_exit_is_dated_at_the_first_quiet_month(churn_bank):
    # 4 acts in January only (AUM 500): quiet from February, dormant once the run is 3 months long (April).
    assert _series(churn_bank, 4, "months_quiet") == [0, 1, 2, 3, 3, 3, 3, 3]
    assert _series(churn_bank, 4, "is_dormant") == [0, 0, 0, 1, 1, 1, 1, 1]
    # The exit is dated February, within 3 months of January; from February on 4 is quiet: not in the population.
    assert _nan_list(_series(churn_bank, 4, "churn_3m")) == [1.0] + ["nan"] * 7


def test_a_run_that_starts_within_the_horizon_is_a_churn_even_before_it_completes(churn_bank):
    # 5 is active until May and quiet from June: the exit is dated June, known once August (the 3rd quiet month) is.
    assert _series(churn_bank, 5, "months_quiet") == [0, 0, 0, 0, 0, 1, 2, 3]
    # Jan, Feb: June is past (as_of, as_of + 3]; Mar: June is inside it; Apr onwards: too few months to see the run.
    assert _nan_list(_series(churn_bank, 5, "churn_3m")) == [0.0, 0.0, 1.0] + ["nan"] * 5


def test_the_readme_worked_example(config):
    months = [f"2024-{m:02d}" for m in range(1, 11)]
    tables = tables_from_rows(
        customers=[customer(1)],
        transactions=[txn(1, f"{m}-12 10:00") for m in months[:5]],
        balances=[balance(1, m, "current_deposit", 20_000.0 if i < 5 else 500.0) for i, m in enumerate(months)],
    )
    cm = build_customer_months_frame(tables, config, data_end=date(2024, 10, 31))
    assert _series(cm, 1, "months_quiet") == [0, 0, 0, 0, 0, 1, 2, 3, 3, 3]
    assert _series(cm, 1, "is_dormant") == [0] * 7 + [1] * 3
    assert _nan_list(_series(cm, 1, "churn_3m")) == [0.0, 0.0, 1.0, 1.0, 1.0] + ["nan"] * 5


def test_a_quiet_spell_shorter_than_k_is_no_exit_and_lapsing_rows_have_no_label(churn_bank):
    # 7 is quiet in March and April only: never dormant, no exit; the two lapsing rows are outside the population.
    assert _series(churn_bank, 7, "months_quiet") == [0, 0, 1, 2, 0, 0, 0, 0]
    assert _nan_list(_series(churn_bank, 7, "churn_3m")) == [0.0, 0.0, "nan", "nan", "nan", "nan", "nan", "nan"]


def test_no_positive_was_already_quiet_at_as_of(churn_bank):
    labeled = churn_bank[churn_bank.churn_3m.notna()]
    assert (labeled.months_quiet == 0).all() and (labeled.is_dormant == 0).all()
    assert labeled.churn_3m.sum() == 4  # 8 Feb, 8 Mar, 4 Jan, 5 Mar


def test_labels_are_null_when_the_horizon_runs_past_the_data(churn_bank):
    assert _nan_list(_series(churn_bank, 6, "churn_3m")) == [0.0] * 3 + ["nan"] * 5  # needs H + k - 1 = 5 months
    assert _nan_list(_series(churn_bank, 6, "upgrade_3m")) == [0.0] * 5 + ["nan"] * 3
    assert churn_bank.clv_12m.isna().all()  # 8 months of data cannot show 12 months ahead


def test_label_names_and_windows_follow_the_configured_horizons(churn_bank, config):
    labels = config.labels.model_copy(update={"churn_horizon_months": 6, "dormancy_inactive_months": 2,
                                              "upgrade_horizon_months": 2, "clv_horizon_months": 4})
    six = config.model_copy(update={"labels": labels})
    active = lambda cid, until="2099": [txn(cid, f"{m}-12 10:00") for m in MONTHS if m < until]  # noqa: E731
    tables = tables_from_rows(customers=[customer(5)], transactions=active(5, "2024-06"),
                              balances=[balance(5, m, "current_deposit", 500.0) for m in MONTHS])
    cm = build_customer_months_frame(tables, six, data_end=date(2024, 8, 31))
    assert {"churn_6m", "upgrade_2m", "clv_4m"} <= set(cm.columns)
    assert not {"churn_3m", "upgrade_3m", "clv_12m"} & set(cm.columns)
    # k = 2: quiet Jun, Jul -> dormant in July; the exit (June) is within 6 months of Jan..May; each label needs
    # 6 + 2 - 1 = 7 months after as_of, so only January's is known.
    assert _series(cm, 5, "months_quiet") == [0, 0, 0, 0, 0, 1, 2, 2]
    assert _nan_list(_series(cm, 5, "churn_6m")) == [1.0] + ["nan"] * 7


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
    assert cm.churn_3m.notna().sum() == 3  # churn needs 3 + 3 - 1 months after as_of


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
    typo = Config.model_validate({"revenue": {"transaction_rate": {"spend": 1.0}}})
    with pytest.raises(ValueError, match="revenue.transaction_rate names spend"):
        build_customer_months_frame(tables, typo, data_end=date(2024, 6, 30))
