"""The pandas reference of the feature benchmark computes the same values as the DuckDB build, column for column."""

from __future__ import annotations

import pandas as pd
import pytest
from raw_factory import make_bank, write_bank

from benchmarks.pandas_features import covered_columns, latest_month_features
from features.build import build_customer_months
from features.feature_set import read_feature_table

#: The families the reference must cover (a few columns each), so that it stays a meaningful yardstick.
MUST_COVER = ("tenure_months", "aum_avg_12m", "aum_change_ratio_3m", "aum_trend_slope_6m", "holds_fund", "products_opened_3m",
              "txn_count_mobile_3m", "txn_amount_card_spend_12m", "digital_share_12m", "months_since_last_salary",
              "months_since_last_activity", "logins_3m", "complaints_12m", "months_quiet", "is_dormant")


def _same(raw, tmp_path, config, as_of: str | None) -> pd.DataFrame:
    reference = latest_month_features(raw, config, as_of=as_of)
    month = as_of or str(reference["as_of"].iloc[0])[:7]
    summary = build_customer_months(raw, tmp_path / f"duck-{month}.parquet", config, start=month, end=month,
                                    validate=False, progress=False)
    duck, _ = read_feature_table(summary.out_path)
    columns = covered_columns(reference)
    assert set(MUST_COVER) <= set(columns)
    assert reference["customer_id"].tolist() == duck["customer_id"].tolist()
    expected = duck.loc[:, ["customer_id", *columns]].reset_index(drop=True)
    got = reference.loc[:, ["customer_id", *columns]]
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    # sums of doubles are added in a different order by the two implementations
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9, atol=1e-6)
    return reference


@pytest.mark.parametrize("as_of", [None, "2024-11"])
def test_the_pandas_reference_equals_the_duckdb_build(tmp_path, config, as_of):
    bank = make_bank(n_customers=40, months=16, seed=21)
    raw = write_bank(bank, tmp_path / "raw", partition=("transactions", "interactions"))
    reference = _same(raw, tmp_path, config, as_of)
    assert len(reference) >= 20 and reference["is_dormant"].isin([0, 1]).all()


@pytest.mark.slow
def test_the_pandas_reference_equals_the_duckdb_build_on_the_simulated_bank(tmp_path, config):
    simulate = pytest.importorskip("features.simulate")
    settings = config.simulation.model_copy(update={"customers": 300, "months": 15, "seed": 5})
    raw = tmp_path / "bank"
    simulate.simulate_bank(settings, raw, config=config, progress=False)
    reference = _same(raw, tmp_path, config, None)
    assert len(reference) >= 200
