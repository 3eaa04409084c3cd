"""A straightforward pandas build of one month's customer-month features: the reference the DuckDB build is
measured against (``make bench``, issue 12: DuckDB >= 3x this).

Not part of the product and not a second definition to maintain: it covers the main families (profile, balances,
products, transactions, engagement, service, dormancy) with the plain pandas a data scientist would write
(filter the read window, group by customer and month, lay the months on each customer's spine, sum the trailing
windows), and ``tests/benchmarks/test_pandas_features.py`` checks that every column it gives equals the DuckDB
build's. The SQL in :mod:`features.definitions` stays the one definition.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config
from features.build import parse_month
from features.contract import (
    ASSET_PRODUCTS,
    CHANNELS,
    DIGITAL_CHANNELS,
    LIABILITY_PRODUCTS,
    NON_CUSTOMER_INITIATED_CATEGORIES,
    PARTITION_KEY,
    PRODUCTS,
    TRANSACTION_CATEGORIES,
)
from features.definitions import HISTORY_MONTHS, WINDOWS, MonthRange, features_for, month_end, month_index, month_range
from features.raw import TableSource, find_tables, resolve_data_end


def _read(source: TableSource, columns: list[str], since: datetime | None = None, column: str = "timestamp") -> pd.DataFrame:
    """``columns`` of a raw table, rows from ``since`` on when given (pushed down into the parquet read)."""
    if source.format == "csv":
        frame = pd.read_csv(source.path, usecols=columns)
    else:
        bound = (since.date() if column == "month" else pd.Timestamp(since)) if since is not None else None
        filters = [(column, ">=", bound)] if since is not None else None
        frame = pd.read_parquet(source.path, columns=columns, filters=filters)
        frame = frame.drop(columns=[PARTITION_KEY], errors="ignore")
    if since is not None and source.format == "csv":
        frame = frame[pd.to_datetime(frame[column]) >= pd.Timestamp(since)]
    return frame


def _month_idx(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    return (stamps.dt.year * 12 + stamps.dt.month - 1).astype("Int64")


def read_raw(raw_dir: Path, as_of: str | None, config: Config) -> tuple[dict[str, pd.DataFrame], MonthRange]:
    """The raw rows one month's features need (from the first month of its look-back on), and its month range."""
    sources = find_tables(Path(raw_dir))
    stamps = _read(sources["transactions"], ["timestamp"])["timestamp"]
    first = month_index(pd.to_datetime(stamps).min().date())
    data_end = resolve_data_end(Path(raw_dir))
    month = parse_month(as_of)
    if month is None:  # the latest complete month
        month = month_range(config, data_end=data_end, first_data_month=first, start=None, end=None).last
    r = month_range(config, data_end=data_end, first_data_month=first, start=month, end=month)
    since = datetime.combine(month_end(r.read_start - 1) + timedelta(days=1), time())
    wanted = {
        "customers": (["customer_id", "birth_date", "gender", "city_tier", "income_band", "onboarding_date"], None),
        "transactions": (["customer_id", "timestamp", "amount", "direction", "channel", "category"], "timestamp"),
        "balances": (["customer_id", "month", "product", "balance_month_end"], "month"),
        "interactions": (["customer_id", "timestamp", "kind"], "timestamp"),
        "closures": (["customer_id", "closed_date"], None),
        "coverage": (["customer_id", "coverage_start", "coverage_end"], None),
    }
    tables = {}
    for name, (columns, stamp) in wanted.items():
        if name in sources:
            tables[name] = _read(sources[name], columns, since if stamp else None, stamp or "timestamp")
    return tables, r


def latest_month_features(raw_dir: Path, config: Config, as_of: str | None = None) -> pd.DataFrame:
    """One row per customer open at ``as_of`` (``YYYY-MM``; default the data's last complete month) with the
    features of :func:`customer_month_features`, read from the raw tables in ``raw_dir``."""
    tables, r = read_raw(raw_dir, as_of, config)
    return customer_month_features(tables, r, config)


def customer_month_features(tables: dict[str, pd.DataFrame], r: MonthRange, config: Config) -> pd.DataFrame:
    """The features of month ``r.end`` from raw frames (same meaning as :mod:`features.definitions`).

    Returns ``customer_id``, ``as_of`` and the covered columns, typed as the feature set declares them, sorted by
    customer. ``tables`` needs ``customers`` and ``transactions``; ``balances``, ``interactions``, ``closures`` and
    ``coverage`` are used when present.
    """
    m = r.end
    spine = _spine(tables, r)
    monthly = spine.merge(_txn_monthly(tables["transactions"], r), on=["customer_id", "month_idx"], how="left")
    if "balances" in tables:
        monthly = monthly.merge(_balance_monthly(tables["balances"], r), on=["customer_id", "month_idx"], how="left")
    if "interactions" in tables:
        monthly = monthly.merge(_interaction_monthly(tables["interactions"], r), on=["customer_id", "month_idx"], how="left")
    value_columns = [c for c in monthly.columns if c not in spine.columns]
    monthly[value_columns] = monthly[value_columns].fillna(0)
    monthly = monthly.sort_values(["customer_id", "month_idx"], ignore_index=True)
    activity = monthly["customer_txn_count"].copy()
    if "interactions" in tables:
        activity += monthly["logins"] + monthly["branch_visits"] + monthly["call_center_calls"]
    monthly["active"] = (activity > 0).astype("int64")
    quiet = activity == 0
    if "balances" in tables:
        quiet &= monthly["aum"] < config.labels.dormancy_aum_threshold
        previous = monthly.groupby("customer_id")[[f"held_{p}" for p in PRODUCTS]].shift(1).fillna(0)
        held = monthly[[f"held_{p}" for p in PRODUCTS]].to_numpy()
        monthly["products_opened"] = ((held == 1) & (previous.to_numpy() == 0)).sum(axis=1)
        monthly["products_closed"] = ((held == 0) & (previous.to_numpy() == 1)).sum(axis=1)
    monthly["quiet"] = quiet.astype("int64")

    now = monthly[monthly["month_idx"] == m].set_index("customer_id")
    out: dict[str, pd.Series] = {}  # column -> values by customer_id, assembled once at the end

    def window(months: int):
        """The rows of the trailing ``months`` months up to as_of, by customer (a customer's spine may be shorter)."""
        return monthly[monthly["month_idx"] > m - months].groupby("customer_id")

    # profile
    out["age"] = np.floor((m - now["birth_idx"].astype("float64")) / 12.0)
    out["tenure_months"] = m - now["onboard_idx"]
    for column in ("gender", "city_tier", "income_band"):
        out[column] = now[column]
    # balances and products
    if "balances" in tables:
        out["aum_month_end"] = now["aum"]
        for w in (3, 6, 12):
            out[f"aum_avg_{w}m"] = window(w)["aum"].mean()
        for k in (1, 3, 6):
            before = monthly[monthly["month_idx"] == m - k].set_index("customer_id")["aum"].reindex(now.index)
            out[f"aum_change_ratio_{k}m"] = now["aum"] / before.where(before != 0) - 1
        out["aum_trend_slope_6m"] = _slope(monthly[monthly["month_idx"] > m - 6])
        top = window(12)["aum"].max()
        out["aum_drawdown_12m"] = 1 - now["aum"] / top.where(top != 0)
        out["liabilities_month_end"] = now["liabilities"]
        for p in PRODUCTS:
            out[f"balance_{p}"] = now[f"balance_{p}"]
        out["product_count"] = now["product_count"]
        for p in PRODUCTS:
            out[f"holds_{p}"] = now[f"held_{p}"]
        sums = window(3)[["products_opened", "products_closed"]].sum()
        out["products_opened_3m"], out["products_closed_3m"] = sums["products_opened"], sums["products_closed"]
    # transactions
    amounts = [f"txn_amount_{c}" for c in TRANSACTION_CATEGORIES] + ["txn_amount_in", "txn_amount_out"]
    for w in WINDOWS:
        sums = window(w)[["txn_count", *(f"txn_count_{c}" for c in CHANNELS), *amounts]].sum()
        out[f"txn_count_{w}m"] = sums["txn_count"]
        for c in CHANNELS:
            out[f"txn_count_{c}_{w}m"] = sums[f"txn_count_{c}"]
        for column in amounts:
            out[f"{column}_{w}m"] = sums[column]
    for w in (3, 12):
        sums = window(w)[["txn_count", *(f"txn_count_{c}" for c in DIGITAL_CHANNELS)]].sum()
        digital = sums[[f"txn_count_{c}" for c in DIGITAL_CHANNELS]].sum(axis=1)
        out[f"digital_share_{w}m"] = digital / sums["txn_count"].where(sums["txn_count"] != 0)
    out["txn_net_flow_3m"] = out["txn_amount_in_3m"] - out["txn_amount_out_3m"]
    salaried = monthly.assign(salaried=(monthly["salary_count"] > 0).astype("int64"),
                              salary_month=monthly["month_idx"].where(monthly["salary_count"] > 0))
    out["salary_months_6m"] = salaried[salaried["month_idx"] > m - 6].groupby("customer_id")["salaried"].sum()
    out["months_since_last_salary"] = m - salaried[salaried["month_idx"] > m - HISTORY_MONTHS].groupby("customer_id")["salary_month"].max()
    # engagement and service
    active_month = monthly["month_idx"].where(monthly["active"] == 1)
    recent = monthly["month_idx"] > m - HISTORY_MONTHS
    out["months_since_last_activity"] = m - active_month[recent].groupby(monthly.loc[recent, "customer_id"]).max()
    out["active_months_12m"] = window(12)["active"].sum()
    out["customer_txn_count_3m"] = window(3)["customer_txn_count"].sum()
    if "interactions" in tables:
        for w in (1, 3, 12):
            out[f"logins_{w}m"] = window(w)["logins"].sum()
        for column in ("complaints", "branch_visits", "call_center_calls"):
            for w in (3, 12):
                out[f"{column}_{w}m"] = window(w)[column].sum()
    # dormancy: consecutive quiet months up to as_of, capped at k
    k = config.labels.dormancy_inactive_months
    last_k = monthly[monthly["month_idx"] > m - k]
    busy = last_k["month_idx"].where(last_k["quiet"] == 0).groupby(last_k["customer_id"]).max()
    months_quiet = (m - busy).fillna(last_k.groupby("customer_id").size())
    out["is_dormant"] = (months_quiet >= k).astype("int64")
    out["months_quiet"] = months_quiet
    return _typed(pd.DataFrame(out, index=now.index).reset_index(), m, config, frozenset(tables))


def _spine(tables: dict[str, pd.DataFrame], r: MonthRange) -> pd.DataFrame:
    """One row per customer and month on the books: from onboarding (and the read window's start) to as_of,
    before the closure month, inside the coverage."""
    customers = tables["customers"]
    span = pd.DataFrame({
        "customer_id": customers["customer_id"].astype("int64"),
        "birth_idx": _month_idx(customers["birth_date"]),
        "onboard_idx": _month_idx(customers["onboarding_date"]),
        "gender": customers["gender"], "city_tier": customers["city_tier"], "income_band": customers["income_band"],
    })
    first = span["onboard_idx"].clip(lower=r.read_start)
    last = pd.Series(r.end, index=span.index, dtype="Int64")
    if "closures" in tables:
        closed = tables["closures"].assign(closure_idx=_month_idx(tables["closures"]["closed_date"]))
        closure = span["customer_id"].map(closed.groupby("customer_id")["closure_idx"].min())
        last = last.where(closure.isna() | (closure - 1 >= last), closure - 1)
    if "coverage" in tables:
        cover = tables["coverage"]
        end = pd.to_datetime(cover["coverage_end"])
        last_covered = _month_idx(end) - (end != end + pd.offsets.MonthEnd(0)).astype("int64")
        cover = cover.assign(first_idx=_month_idx(cover["coverage_start"]), last_idx=last_covered).groupby("customer_id")
        cover_first, cover_last = span["customer_id"].map(cover["first_idx"].min()), span["customer_id"].map(cover["last_idx"].max())
        first = first.where(cover_first.isna() | (cover_first <= first), cover_first)
        last = last.where(cover_last.isna() | (cover_last >= last), cover_last)
    span = span.assign(first=first, last=last)
    span = span[span["last"] == r.end]  # open (and covered) at as_of
    span = span[span["first"] <= span["last"]]
    months = [np.arange(a, r.end + 1) for a in span["first"].astype("int64").to_numpy()]
    lengths = np.array([len(x) for x in months], dtype="int64")
    rows = span.loc[span.index.repeat(lengths)].reset_index(drop=True)
    rows["month_idx"] = np.concatenate(months) if months else np.zeros(0, dtype="int64")
    return rows.drop(columns=["first", "last"])


def _txn_monthly(transactions: pd.DataFrame, r: MonthRange) -> pd.DataFrame:
    t = transactions.assign(month_idx=_month_idx(transactions["timestamp"]).astype("int64"),
                            customer_id=transactions["customer_id"].astype("int64"),
                            amount=transactions["amount"].astype("float64"))
    t = t[(t["month_idx"] >= r.read_start) & (t["month_idx"] <= r.end)]
    for c in CHANNELS:
        t[f"txn_count_{c}"] = (t["channel"] == c).astype("int64")
    for c in TRANSACTION_CATEGORIES:
        t[f"txn_amount_{c}"] = t["amount"].where(t["category"] == c, 0.0)
    t["txn_amount_in"] = t["amount"].where(t["direction"] == "in", 0.0)
    t["txn_amount_out"] = t["amount"].where(t["direction"] == "out", 0.0)
    t["salary_count"] = (t["category"] == "salary").astype("int64")
    t["customer_txn_count"] = (~t["category"].isin(NON_CUSTOMER_INITIATED_CATEGORIES)).astype("int64")
    t["txn_count"] = 1
    columns = ["txn_count", *(f"txn_count_{c}" for c in CHANNELS), *(f"txn_amount_{c}" for c in TRANSACTION_CATEGORIES),
               "txn_amount_in", "txn_amount_out", "salary_count", "customer_txn_count"]
    return t.groupby(["customer_id", "month_idx"], as_index=False)[columns].sum()


def _balance_monthly(balances: pd.DataFrame, r: MonthRange) -> pd.DataFrame:
    b = balances.assign(month_idx=_month_idx(balances["month"]).astype("int64"), customer_id=balances["customer_id"].astype("int64"),
                        balance=balances["balance_month_end"].astype("float64"))
    b = b[(b["month_idx"] >= r.read_start) & (b["month_idx"] <= r.end)]
    per_product = b.pivot_table(index=["customer_id", "month_idx"], columns="product", values="balance", aggfunc="sum",
                                fill_value=0.0, observed=True)
    held = b.assign(one=1).pivot_table(index=["customer_id", "month_idx"], columns="product", values="one", aggfunc="max",
                                       fill_value=0, observed=True)
    out = pd.DataFrame(index=per_product.index)
    for p in PRODUCTS:
        out[f"balance_{p}"] = per_product[p] if p in per_product.columns else 0.0
        out[f"held_{p}"] = held[p].astype("int64") if p in held.columns else 0
    out["aum"] = out[[f"balance_{p}" for p in ASSET_PRODUCTS]].sum(axis=1)
    out["liabilities"] = out[[f"balance_{p}" for p in LIABILITY_PRODUCTS]].sum(axis=1)
    out["product_count"] = b.groupby(["customer_id", "month_idx"])["product"].nunique()
    return out.reset_index()


def _interaction_monthly(interactions: pd.DataFrame, r: MonthRange) -> pd.DataFrame:
    i = interactions.assign(month_idx=_month_idx(interactions["timestamp"]).astype("int64"),
                            customer_id=interactions["customer_id"].astype("int64"))
    i = i[(i["month_idx"] >= r.read_start) & (i["month_idx"] <= r.end)]
    kinds = {"login": "logins", "complaint": "complaints", "branch_visit": "branch_visits", "call_center": "call_center_calls"}
    for kind, column in kinds.items():
        i[column] = (i["kind"] == kind).astype("int64")
    return i.groupby(["customer_id", "month_idx"], as_index=False)[list(kinds.values())].sum()


def _slope(rows: pd.DataFrame) -> pd.Series:
    """Least-squares slope of ``aum`` on ``month_idx`` per customer (null with fewer than 2 months)."""
    x = rows["month_idx"].astype("float64")
    y = rows["aum"].astype("float64")
    g = pd.DataFrame({"customer_id": rows["customer_id"], "x": x, "y": y})
    means = g.groupby("customer_id")[["x", "y"]].transform("mean")
    g["sxy"] = (g["x"] - means["x"]) * (g["y"] - means["y"])
    g["sxx"] = (g["x"] - means["x"]) ** 2
    sums = g.groupby("customer_id")[["sxy", "sxx"]].sum()
    return sums["sxy"] / sums["sxx"].where(sums["sxx"] != 0)


def _typed(frame: pd.DataFrame, m: int, config: Config, tables: frozenset[str]) -> pd.DataFrame:
    """Columns in the feature set's order and dtypes, ``as_of`` as the build writes it."""
    dtypes = {f.name: f.dtype for f in features_for(config, tables)}
    columns = [name for name in dtypes if name in frame.columns]
    out = frame.loc[:, ["customer_id", *columns]].sort_values("customer_id", ignore_index=True)
    out = out.astype({"customer_id": "int64", **{name: dtypes[name] for name in columns}})
    as_of = pd.Series(pd.Timestamp(month_end(m)).as_unit("us"), index=out.index, name="as_of")
    return pd.concat([out["customer_id"], as_of, out[columns]], axis=1)


def covered_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a reference frame (everything but the keys)."""
    return [c for c in frame.columns if c not in ("customer_id", "as_of")]


