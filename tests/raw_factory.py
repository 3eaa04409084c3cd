"""A tiny generator of valid contract tables for tests (5-50 customers, a few months).

Not the simulated bank: just enough variety that every feature family and label has something to see -
payroll and non-payroll customers, customers who fall silent, customers near a tier bound, closures,
logins and complaints, campaign contacts with a control group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import (
    ASSET_PRODUCTS,
    CHANNELS,
    CITY_TIERS,
    GENDERS,
    INCOME_BANDS,
    LIABILITY_PRODUCTS,
    MANIFEST_FILE,
    OFFERS,
    TRANSACTION_CATEGORIES,
)

ALL_TABLES = ("customers", "balances", "transactions", "interactions", "campaign_contacts", "closures")


@dataclass(frozen=True)
class RawBank:
    tables: dict[str, pd.DataFrame]
    data_end: date


def _month_ends(start: str, months: int) -> list[date]:
    return [d.date() for d in pd.date_range(pd.Timestamp(start + "-01"), periods=months, freq="ME")]


def make_bank(n_customers: int = 12, months: int = 10, seed: int = 0, start: str = "2024-01",
              tables: tuple[str, ...] = ALL_TABLES) -> RawBank:
    """Random but valid raw tables: ``n_customers`` customers over ``months`` months from ``start``."""
    rng = np.random.default_rng(seed)
    ends = _month_ends(start, months)
    data_end = ends[-1]
    first_day = date.fromisoformat(start + "-01")

    customers, closures, balances, transactions, interactions, contacts = [], [], [], [], [], []
    for n in range(n_customers):
        cid = 1001 + n
        # A third were customers before the data begins; the others join during the first half.
        onboarded = first_day - timedelta(days=int(rng.integers(30, 900))) if n % 3 == 0 else \
            first_day + timedelta(days=int(rng.integers(0, max(1, months * 15))))
        customers.append({
            "customer_id": cid,
            "birth_date": None if n % 7 == 6 else date(int(rng.integers(1950, 2004)), int(rng.integers(1, 13)), int(rng.integers(1, 29))),
            "gender": GENDERS[n % 3], "city_tier": CITY_TIERS[n % 4],
            "income_band": None if n % 9 == 8 else INCOME_BANDS[int(rng.integers(0, 5))],
            "onboarding_date": onboarded,
        })
        closed = None
        if rng.random() < 0.25:
            lo = max(onboarded, first_day) + timedelta(days=20)
            if lo < data_end:
                closed = lo + timedelta(days=int(rng.integers(0, (data_end - lo).days + 1)))
                closures.append({"customer_id": cid, "closed_date": closed})
        payroll = rng.random() < 0.5
        silent_from = int(rng.integers(2, months + 3)) if rng.random() < 0.4 else months + 1  # stops being active
        # AUM scale straddling the tier bounds (50k, 500k, 6M) so tiers move.
        scale = float(rng.choice([300.0, 20_000.0, 45_000.0, 300_000.0, 520_000.0, 5_800_000.0]))
        held = {"current_deposit"} | {p for p in ASSET_PRODUCTS[1:] + LIABILITY_PRODUCTS if rng.random() < 0.3}
        level = scale
        for m, month_end in enumerate(ends):
            if month_end < onboarded or (closed is not None and month_end.replace(day=1) > closed):
                continue
            level = max(0.0, level * float(rng.normal(1.02, 0.12)))
            if m >= silent_from:
                level *= 0.3
            if rng.random() < 0.15:  # a product opened or dropped now and then
                held ^= {str(rng.choice(["fund", "credit_card", "time_deposit"]))}
                held.add("current_deposit")
            for p in sorted(held):
                share = 0.6 if p == "current_deposit" else 0.4 / max(1, len(held) - 1)
                value = round(level * share, 2) if p in ASSET_PRODUCTS else round(float(rng.uniform(0, 20_000)), 2)
                balances.append({"customer_id": cid, "month": month_end, "product": p,
                                 "balance_month_end": value, "balance_month_avg": round(value * float(rng.uniform(0.9, 1.1)), 2)})
            month_first = month_end.replace(day=1)
            lo_day = max(month_first, onboarded)
            hi_day = month_end if closed is None or closed > month_end else closed

            def stamp() -> datetime:
                day = lo_day + timedelta(days=int(rng.integers(0, (hi_day - lo_day).days + 1)))
                return datetime.combine(day, datetime.min.time()) + timedelta(minutes=int(rng.integers(0, 1440)))

            if hi_day < lo_day:
                continue
            if payroll and m < silent_from + 1:
                transactions.append({"customer_id": cid, "timestamp": stamp(), "amount": round(float(rng.uniform(5e3, 3e4)), 2),
                                     "direction": "in", "channel": "online", "category": "salary"})
            n_txn = 0 if m >= silent_from else int(rng.poisson(4))
            for _ in range(n_txn):
                category = str(rng.choice([c for c in TRANSACTION_CATEGORIES if c != "salary"]))
                transactions.append({"customer_id": cid, "timestamp": stamp(), "amount": round(float(rng.gamma(2, 300)), 2),
                                     "direction": "in" if category in ("interest", "transfer") and rng.random() < 0.5 else "out",
                                     "channel": str(rng.choice(CHANNELS)), "category": category})
            if m < silent_from:
                for _ in range(int(rng.poisson(3))):
                    interactions.append({"customer_id": cid, "timestamp": stamp(), "kind": "login"})
            if rng.random() < 0.1:
                interactions.append({"customer_id": cid, "timestamp": stamp(), "kind": str(rng.choice(["complaint", "branch_visit", "call_center"]))})
            if rng.random() < 0.15:
                contacts.append({"customer_id": cid, "timestamp": stamp(), "campaign_id": f"{month_end:%Y-%m}-{cid}",
                                 "offer": str(rng.choice(OFFERS)), "treated": bool(rng.random() < 0.8), "responded": bool(rng.random() < 0.3)})

    frames = {
        "customers": pd.DataFrame(customers).astype({"birth_date": "datetime64[us]", "onboarding_date": "datetime64[us]"}),
        "balances": pd.DataFrame(balances, columns=["customer_id", "month", "product", "balance_month_end", "balance_month_avg"]),
        "transactions": pd.DataFrame(transactions, columns=["customer_id", "timestamp", "amount", "direction", "channel", "category"]),
        "interactions": pd.DataFrame(interactions, columns=["customer_id", "timestamp", "kind"]),
        "campaign_contacts": pd.DataFrame(contacts, columns=["customer_id", "timestamp", "campaign_id", "offer", "treated", "responded"]),
        "closures": pd.DataFrame(closures, columns=["customer_id", "closed_date"]),
    }
    for name, column in (("balances", "month"), ("closures", "closed_date")):
        frames[name][column] = frames[name][column].astype("datetime64[us]")
    for name in ("transactions", "interactions", "campaign_contacts"):
        frames[name]["timestamp"] = frames[name]["timestamp"].astype("datetime64[us]")
    return RawBank({name: frames[name] for name in tables}, data_end)


def write_bank(bank: RawBank, folder: Path, *, partition: tuple[str, ...] = ("transactions",)) -> Path:
    """Write the tables as parquet (``partition`` tables as ``period=YYYY-MM`` folders) and a manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in bank.tables.items():
        if name in partition:
            date_column = "timestamp" if "timestamp" in frame.columns else "month"
            periods = frame[date_column].dt.strftime("%Y-%m")
            for period, part in frame.groupby(periods):
                target = folder / name / f"period={period}"
                target.mkdir(parents=True, exist_ok=True)
                part.to_parquet(target / "part-0.parquet", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / MANIFEST_FILE).write_text(json.dumps({"data_end": bank.data_end.isoformat(), "source": "tests.raw_factory"}))
    return folder


# --------------------------------------------------------------------------------------------- hand-written rows

_COLUMNS = {
    "customers": ["customer_id", "birth_date", "gender", "city_tier", "income_band", "onboarding_date"],
    "balances": ["customer_id", "month", "product", "balance_month_end", "balance_month_avg"],
    "transactions": ["customer_id", "timestamp", "amount", "direction", "channel", "category"],
    "interactions": ["customer_id", "timestamp", "kind"],
    "campaign_contacts": ["customer_id", "timestamp", "campaign_id", "offer", "treated", "responded"],
    "closures": ["customer_id", "closed_date"],
}
_DATES = {"birth_date", "onboarding_date", "month", "closed_date", "timestamp"}


def customer(cid: int, onboarded: str = "2023-06-01", born: str | None = "1980-05-20", **extra) -> dict:
    return {"customer_id": cid, "birth_date": born, "gender": "F", "city_tier": "tier2", "income_band": "middle",
            "onboarding_date": onboarded, **extra}


def txn(cid: int, when: str, amount: float = 100.0, category: str = "card_spend", channel: str = "pos",
        direction: str | None = None) -> dict:
    direction = direction or ("in" if category in ("salary", "interest") else "out")
    return {"customer_id": cid, "timestamp": when, "amount": amount, "direction": direction, "channel": channel, "category": category}


def balance(cid: int, month: str, product: str, amount: float, avg: float | None = None) -> dict:
    end = pd.Timestamp(month + "-01") + pd.offsets.MonthEnd(0)
    return {"customer_id": cid, "month": end, "product": product, "balance_month_end": amount,
            "balance_month_avg": amount if avg is None else avg}


def tables_from_rows(**rows: list[dict]) -> dict[str, pd.DataFrame]:
    """Typed contract frames from hand-written rows (``customers=[...], transactions=[...]``)."""
    out = {}
    for name, records in rows.items():
        frame = pd.DataFrame(records, columns=_COLUMNS[name])
        for column in _DATES & set(frame.columns):
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
        out[name] = frame
    return out


def simulated_customer_months(folder: Path, config, **settings) -> tuple[Path, Path]:
    """A simulated bank in ``folder/bank`` (``settings`` override ``config.simulation``) and its customer-month table."""
    from features.build import build_customer_months
    from features.simulate import simulate_bank

    simulate_bank(config.simulation.model_copy(update=settings), folder / "bank", config=config, progress=False)
    build_customer_months(folder / "bank", folder / "cm.parquet", config, validate=False, progress=False)
    return folder / "bank", folder / "cm.parquet"
