"""Point in time: features at as_of never move when data dated after as_of changes or disappears.

Every example checks every feature family (the failure message names the families that moved), and the
last test checks that the families cover every feature column.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from raw_factory import make_bank

from custbase.config import Config
from features.build import build_customer_months_frame
from features.contract import CHANNELS, INTERACTION_KINDS, OFFERS, TRANSACTION_CATEGORIES
from features.feature_set import CUSTOMER_MONTH_V1, FEATURE_FAMILIES

CONFIG = Config()
FAMILIES = sorted(set(FEATURE_FAMILIES.values()))


def _rotate(values: pd.Series, categories: tuple[str, ...]) -> pd.Series:
    nxt = {c: categories[(i + 1) % len(categories)] for i, c in enumerate(categories)}
    return values.map(nxt).astype("str")


def _after(frame: pd.DataFrame, column: str, as_of: pd.Timestamp) -> pd.Series:
    """Rows dated after as_of (a timestamp on the as_of day is dated at as_of)."""
    return frame[column] >= as_of + timedelta(days=1)


def future_changed(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, *, delete: bool, change: bool) -> dict[str, pd.DataFrame]:
    """A copy of ``tables`` whose rows dated after ``as_of`` are deleted, altered, or altered and multiplied."""
    dated = {"customers": "onboarding_date", "balances": "month", "transactions": "timestamp", "interactions": "timestamp",
             "campaign_contacts": "timestamp", "closures": "closed_date"}
    out = {}
    for name, frame in tables.items():
        later = _after(frame, dated[name], as_of)
        if delete and not change:
            out[name] = frame[~later].reset_index(drop=True)
            continue
        future = frame[later].copy()
        if name == "transactions":
            future["amount"] = future["amount"] * 3.7 + 1
            future["channel"] = _rotate(future["channel"], CHANNELS)
            future["category"] = _rotate(future["category"], TRANSACTION_CATEGORIES)
        elif name == "balances":
            future["balance_month_end"] = future["balance_month_end"] * 40 + 7
            future["balance_month_avg"] = future["balance_month_avg"] / 3
        elif name == "interactions":
            future["kind"] = _rotate(future["kind"], INTERACTION_KINDS)
        elif name == "campaign_contacts":
            future["offer"] = _rotate(future["offer"], OFFERS)
            future["responded"] = ~future["responded"]
            future["treated"] = True
        elif name == "closures":
            future["closed_date"] = as_of + timedelta(days=1)
        elif name == "customers":
            future["gender"] = "U"
        if delete:  # keep only the altered copies of future events that stay after as_of: half of them
            future = future.iloc[::2]
        out[name] = pd.concat([frame[~later], future], ignore_index=True)
    # Brand-new activity after as_of for customers already known.
    extra = tables["transactions"].head(5).copy()
    extra["timestamp"] = as_of + timedelta(days=1, hours=3)
    out["transactions"] = pd.concat([out["transactions"], extra], ignore_index=True)
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_customers=st.integers(4, 10),
    months=st.integers(4, 14),
    position=st.floats(0.0, 1.0),
    mode=st.sampled_from(["delete", "change", "both"]),
)
def test_features_at_as_of_ignore_everything_after_it(seed, n_customers, months, position, mode):
    bank = make_bank(n_customers=n_customers, months=months, seed=seed)
    month_ends = pd.date_range(pd.Timestamp("2024-01-31"), periods=months, freq="ME")
    as_of = month_ends[min(int(position * months), months - 1)]
    assume(bank.tables["transactions"].timestamp.min() < as_of)
    changed = future_changed(bank.tables, as_of, delete=mode != "change", change=mode != "delete")
    month = f"{as_of:%Y-%m}"
    before = build_customer_months_frame(bank.tables, CONFIG, data_end=bank.data_end, start=month, end=month)
    after = build_customer_months_frame(changed, CONFIG, data_end=bank.data_end, start=month, end=month)
    assert len(before) > 0
    moved = []
    for family in FAMILIES:
        columns = ["customer_id", "as_of", *(c for c, f in FEATURE_FAMILIES.items() if f == family)]
        try:
            pd.testing.assert_frame_equal(before[columns], after[columns])
        except AssertionError as err:
            moved.append(f"{family}: {str(err).splitlines()[0]}")
    assert not moved, f"features at {as_of.date()} moved when data after it changed ({mode}): {moved}"


def test_the_families_cover_every_feature():
    assert set(FEATURE_FAMILIES) == set(CUSTOMER_MONTH_V1.columns)
    assert set(FAMILIES) == {"profile", "balances", "value_tier", "products", "transactions", "engagement", "service",
                             "campaigns", "revenue", "dormancy"}


@pytest.mark.parametrize("months", [("2024-03", "2024-03"), ("2024-09", "2024-11"), ("2025-02", None)])
def test_a_restricted_build_gives_the_rows_of_a_full_build(config, months):
    """Reading only the months a window needs must not change any value (features and labels)."""
    bank = make_bank(n_customers=10, months=28, seed=9)
    full = build_customer_months_frame(bank.tables, config, data_end=bank.data_end)
    start, end = months
    part = build_customer_months_frame(bank.tables, config, data_end=bank.data_end, start=start, end=end)
    last = pd.Timestamp(end + "-01") + pd.offsets.MonthEnd(0) if end else full.as_of.max()
    expected = full[(full.as_of >= pd.Timestamp(start + "-01")) & (full.as_of <= last)].reset_index(drop=True)
    assert len(part) == len(expected) > 0
    pd.testing.assert_frame_equal(part, expected)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    months=st.integers(8, 16),
    position=st.floats(0.0, 1.0),
    mode=st.sampled_from(["delete", "change", "both"]),
)
def test_the_churn_population_is_point_in_time_and_the_label_reads_only_its_window(seed, months, position, mode):
    """Population: data after as_of never moves it. Label: data after as_of + H + k - 1 never moves it."""
    from features.definitions import in_churn_population

    labels = CONFIG.labels
    bank = make_bank(n_customers=10, months=months, seed=seed)
    month_ends = pd.date_range(pd.Timestamp("2024-01-31"), periods=months, freq="ME")
    at = min(int(position * months), months - 1)
    as_of = month_ends[at]
    assume(bank.tables["transactions"].timestamp.min() < as_of)
    month = f"{as_of:%Y-%m}"
    base = build_customer_months_frame(bank.tables, CONFIG, data_end=bank.data_end, start=month, end=month)
    assert len(base) > 0
    changed_after_as_of = future_changed(bank.tables, as_of, delete=mode != "change", change=mode != "delete")
    moved = build_customer_months_frame(changed_after_as_of, CONFIG, data_end=bank.data_end, start=month, end=month)
    pd.testing.assert_series_equal(in_churn_population(base), in_churn_population(moved))
    window_end = as_of + pd.offsets.MonthEnd(labels.churn_future_months)
    label = labels.names.churn
    changed_after_window = future_changed(bank.tables, window_end, delete=mode != "change", change=mode != "delete")
    later = build_customer_months_frame(changed_after_window, CONFIG, data_end=bank.data_end, start=month, end=month)
    pd.testing.assert_series_equal(base[label], later[label])
    # Outside the population the label is null; inside it no positive was already quiet at as_of.
    assert base.loc[~in_churn_population(base), label].isna().all()
    assert (base.loc[base[label] == 1, "months_quiet"] == 0).all()
