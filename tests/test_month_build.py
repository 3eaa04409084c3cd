"""One as_of month is built with conditional aggregates over its look-back (``pipeline_at_months``), not windows
over every month read: the same rows, columns and values as that month of the all-months build."""

from __future__ import annotations

import pandas as pd
import pytest
from raw_factory import make_bank

from features.build import build_customer_months_frame
from features.definitions import at_month


@pytest.fixture(scope="module")
def bank():
    return make_bank(n_customers=30, months=30, seed=5)


def _month(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return frame[frame["as_of"] == as_of].reset_index(drop=True)


def _coverage() -> pd.DataFrame:
    # partial extracts: some customers covered from a later month, some up to a mid-month day before the end
    return pd.DataFrame({"customer_id": [1001, 1002, 1005, 1008],
                         "coverage_start": pd.to_datetime(["2024-04-01", "2024-01-01", "2024-09-01", "2024-01-01"]),
                         "coverage_end": pd.to_datetime(["2026-06-30", "2025-03-15", "2025-12-31", "2024-11-30"])})


@pytest.mark.parametrize("tables", ["all", "all_with_coverage", "customers_and_transactions"])
def test_each_month_alone_equals_that_month_of_the_all_months_build(bank, config, tables):
    raw = {"all": bank.tables, "all_with_coverage": {**bank.tables, "coverage": _coverage()},
           "customers_and_transactions": {k: v for k, v in bank.tables.items() if k in ("customers", "transactions")}}[tables]
    every = build_customer_months_frame(raw, config, data_end=bank.data_end)
    months = sorted(every["as_of"].unique())
    # the first months (short history), one in the middle (labels known), the last (labels unknown)
    for as_of in [months[0], months[1], months[len(months) // 2], months[-4], months[-1]]:
        month = f"{pd.Timestamp(as_of):%Y-%m}"
        alone = build_customer_months_frame(raw, config, data_end=bank.data_end, start=month, end=month)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), _month(every, as_of), check_exact=False, rtol=1e-9,
                                      obj=f"as_of {month}")


def test_the_month_rewrite_refuses_a_window_it_does_not_know():
    with pytest.raises(ValueError, match="not over a customer's months"):
        at_month("SUM(x) OVER (PARTITION BY city ORDER BY month_idx ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)", {})
    with pytest.raises(ValueError, match="no ROWS frame"):
        at_month("SUM(x) OVER (PARTITION BY customer_id ORDER BY month_idx)", {})
    windows: dict[str, str] = {}
    assert at_month("aum - LAG(aum, 3) OVER (PARTITION BY customer_id ORDER BY month_idx)", windows) == "aum - w._w0"
    assert list(windows) == ["MAX(CASE WHEN month_idx = t_idx - 3 THEN aum END)"]
