"""Import the PKDD'99 Berka data (a real, anonymised Czech retail bank, 1993-1998) into the raw-data contract.

``custbase import berka --src PATH --out DIR``. PATH holds the challenge files (``account.asc.csv``,
``client.asc.csv``, ``disp.asc.csv``, ``district.asc.csv``, ``loan.asc.csv``, ``card.asc.csv`` and the two
transaction slices); nothing is copied into the repository.

Coverage: only two slices of the transaction table exist, and months outside a customer's slice are not
"inactive", they are unobserved. So every customer's rows are restricted to the months their slice covers
completely, and the coverage is recorded:

* ``1993-1994``: ``trans_1993-01_1994-04.csv``, every transaction of the bank (1,252 accounts) in date order,
  complete for 1993-01 .. 1994-03; 1994-04 is cut on the 20th, so its rows are left out (counted in the
  summary) and coverage ends 1994-03-31.
* ``1995-1998``: ``trans_354_accounts_1995-1998.csv``, the full history of 354 accounts that later took a
  loan, from opening up to the loan date. The loan month is partial, so coverage ends at the end of the
  month before it; the loan itself therefore lies outside the covered months of these customers.

``DIR/coverage.parquet`` holds ``customer_id, slice, coverage_start, coverage_end`` and ``manifest.json``
holds per-slice windows and counts. ``data_end`` is the latest coverage end of the imported slices: with
both slices customers of the 1993-94 slice have no rows after 1994-03, which a label builder must treat as
"unobserved", not "dormant" (import ``slices=("1993-1994",)`` for a single window where data_end is every
customer's coverage end).

Mapping
-------
customers (one per account OWNER disposition; customer_id = client_id; owners of accounts outside the
imported slices are left out, counted in the summary):

* ``birth_date``, ``gender``: ``birth_number`` YYMMDD, women carry month + 50 -> F, otherwise M (19YY).
* ``city_tier`` from the client's district (A4 inhabitants, A10 urban share): tier1 = Prague (>= 1M
  inhabitants); tier2 = other fully urban city districts (A10 = 100: Brno, Ostrava, Plzen) or >= 250k
  inhabitants; tier3 = urban share >= 60 %; tier4 = the rest.
* ``income_band`` from the district's average salary (A11) quintiles over the 77 districts: low ..
  high. It describes the district, not the person.
* ``onboarding_date`` = the account's opening date; ``region`` = the district's region (A3).

transactions (``type`` / ``operation`` / ``k_symbol``; Czech original, the guide's English and the 1993-94
slice's codes are all accepted):

* direction: PRIJEM / credit -> in; VYDAJ / VYBER / debit / withdrawal / cash_withdraw /
  withdrawal in cash -> out.
* channel: VYBER KARTOU (credit card withdrawal) -> atm; everything else -> branch (1993-98: no digital
  banking; cash, transfers and bank postings went through the branch).
* category, by k_symbol first: UROK (interest credited) -> interest; SANKC. UROK (sanction interest),
  SLUZBY (payment for statement) -> fee; DUCHOD (old-age pension) -> salary (regular income credit);
  SIPO (household), POJISTNE (insurance payment) -> bill_payment; UVER (loan payment), LEASING ->
  loan_repayment. Otherwise by operation: VKLAD (credit in cash), VYBER (withdrawal in cash),
  VYBER KARTOU -> cash; PREVOD Z UCTU / PREVOD NA UCET (collection from / remittance to another bank)
  -> transfer; anything else -> other.
* amount = absolute amount; timestamp = the posting day at 00:00; no transaction_id (the 1993-94 slice
  has none).

balances, one row per covered month-end:

* current_deposit: month-end = the last running balance of the month (carried over months without
  postings); month average = mean of the daily end-of-day balance over the covered days of the month.
  Overdrawn (negative) balances are written as 0, counted in the summary: the contract has no overdraft.
* consumer_loan / mortgage (``loan.asc``): mortgage when amount >= 250,000 CZK and duration >= 48 months,
  else consumer_loan; outstanding = amount - payments x (months since the loan month), which is exact
  because Berka's monthly payment is amount / duration. Rows from the loan month to the end of coverage
  or of the loan. Status B/D (unpaid) is not modelled.
* credit_card (``card.asc``, any type: junior, classic, gold): held from the ``issued`` month; Berka has
  no card balances, so both balances are 0 and the row marks the holding.

What the data lacks: closures (churn has to come from the dormancy definition), interactions and
campaigns, card balances, digital channels, dated standing orders (``order.asc`` has no dates, so it is
not used). Upgrade signals are card issuance (gold cards) and value-tier moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config
from features.importers.tables import ImportSummary, write_raw_tables
from features.validate import validate_raw


@dataclass(frozen=True)
class BerkaSlice:
    name: str
    file: str
    coverage_end: date | None  # None: per account, the end of the month before its loan month


SLICES: dict[str, BerkaSlice] = {
    "1993-1994": BerkaSlice("1993-1994", "trans_1993-01_1994-04.csv", date(1994, 3, 31)),
    "1995-1998": BerkaSlice("1995-1998", "trans_354_accounts_1995-1998.csv", None),
}

_DIRECTION = {
    "prijem": "in", "credit": "in",
    "vydaj": "out", "vyber": "out", "debit": "out", "withdrawal": "out", "cash_withdraw": "out", "withdrawal in cash": "out",
}
_CATEGORY_BY_K_SYMBOL = {
    "urok": "interest", "interest_pmt": "interest", "interest credited": "interest",
    "sankc. urok": "fee", "interest_for_negetive_balance": "fee", "sanction interest if negative balance": "fee",
    "sluzby": "fee", "service": "fee", "payment for statement": "fee",
    "duchod": "salary", "pension": "salary", "old-age pension": "salary",
    "sipo": "bill_payment", "household": "bill_payment",
    "pojistne": "bill_payment", "insurrance_pmt": "bill_payment", "insurrance payment": "bill_payment", "insurance payment": "bill_payment",
    "uver": "loan_repayment", "loan_pmt": "loan_repayment", "loan payment": "loan_repayment", "leasing": "loan_repayment",
}
_CARD_WITHDRAWAL = {"vyber kartou", "credit_card_withdrawal", "credit card withdrawal"}
_CATEGORY_BY_OPERATION = {
    "vklad": "cash", "deposit": "cash", "credit in cash": "cash",
    "vyber": "cash", "withdraw_cash": "cash", "withdrawal in cash": "cash",
    **{code: "cash" for code in _CARD_WITHDRAWAL},
    "prevod z uctu": "transfer", "collection_from_another_bank": "transfer", "collection from another bank": "transfer",
    "prevod na ucet": "transfer", "transer_to_another_bank": "transfer", "remittance to another bank": "transfer",
}
MORTGAGE_MIN_AMOUNT = 250_000
MORTGAGE_MIN_MONTHS = 48


# ------------------------------------------------------------------------------------------------ read


def _read(src: Path, name: str, **options) -> pd.DataFrame:
    path = src / name
    if not path.exists():
        raise FileNotFoundError(f"Berka file {path} is missing; --src must be the folder holding the PKDD'99 files")
    return pd.read_csv(path, sep=";", **options)


def _yymmdd(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.astype("str").str.slice(0, 6), format="%y%m%d")


def read_transactions(src: Path, slice_: BerkaSlice) -> pd.DataFrame:
    """One slice as account_id, day, type, operation, k_symbol, amount, balance, in posting order."""
    if slice_.name == "1993-1994":
        raw = pd.read_csv(src / slice_.file, dtype=str, keep_default_na=False)
        account_id = raw["account_id"].str.lstrip("A").astype("int64")
        day = pd.to_datetime(raw["date"], format="%Y-%m-%d")
        order = np.arange(len(raw))
    else:
        raw = pd.read_csv(src / slice_.file, sep=";", dtype=str, keep_default_na=False)
        account_id = raw["account_id"].astype("int64")
        day = _yymmdd(raw["date"])
        order = raw["trans_id"].astype("int64").to_numpy()
    frame = pd.DataFrame({
        "account_id": account_id,
        "day": day,
        "type": raw["type"].str.strip().str.lower(),
        "operation": raw["operation"].str.strip().str.lower(),
        "k_symbol": raw["k_symbol"].str.strip().str.lower(),
        "amount": raw["amount"].astype("float64").abs(),
        "balance": raw["balance"].astype("float64"),
        "order": order,
    })
    return frame.sort_values(["account_id", "day", "order"], kind="stable", ignore_index=True)


# ------------------------------------------------------------------------------------------- transform


def city_tier(inhabitants: pd.Series, urban_share: pd.Series) -> pd.Series:
    """Tier of a district by size and urban share (tier1 = Prague)."""
    return pd.Series(
        np.select(
            [inhabitants >= 1_000_000, (urban_share >= 100) | (inhabitants >= 250_000), urban_share >= 60],
            ["tier1", "tier2", "tier3"],
            "tier4",
        ),
        index=inhabitants.index,
    )


def income_band(average_salary: pd.Series) -> pd.Series:
    """Quintile band of the district's average salary."""
    return pd.qcut(average_salary, 5, labels=["low", "lower_middle", "middle", "upper_middle", "high"]).astype("str")


def birth_date_and_gender(birth_number: pd.Series) -> pd.DataFrame:
    """Decode YYMMDD birth numbers where women's months carry + 50."""
    text = birth_number.astype("str").str.zfill(6)
    month = text.str.slice(2, 4).astype(int)
    female = month > 50
    real = "19" + text.str.slice(0, 2) + (month - 50 * female).astype("str").str.zfill(2) + text.str.slice(4, 6)
    return pd.DataFrame({"birth_date": pd.to_datetime(real, format="%Y%m%d"), "gender": np.where(female, "F", "M")}, index=birth_number.index)


def map_transactions(txn: pd.DataFrame) -> pd.DataFrame:
    """Contract columns for postings of one or both slices. Unknown codes stay as they are, so validation names them."""
    category = txn["k_symbol"].map(_CATEGORY_BY_K_SYMBOL)
    category = category.fillna(txn["operation"].map(_CATEGORY_BY_OPERATION))
    category = category.fillna("other")
    return pd.DataFrame({
        "customer_id": txn["customer_id"],
        "timestamp": txn["day"],
        "amount": txn["amount"],
        "direction": txn["type"].map(_DIRECTION).fillna(txn["type"]),
        "channel": np.where(txn["operation"].isin(_CARD_WITHDRAWAL), "atm", "branch"),
        "category": category,
    })


def deposit_balances(txn: pd.DataFrame, coverage: pd.DataFrame) -> pd.DataFrame:
    """current_deposit month-end and month-average balances from running balances, per covered month.

    ``coverage`` has account_id, customer_id, coverage_start, coverage_end. The end-of-day balance is the
    last running balance of the day, carried forward over days without postings.
    """
    end_of_day = txn.groupby(["account_id", "day"], sort=True)["balance"].last().reset_index()
    days = coverage.assign(day=[pd.date_range(s, e, freq="D") for s, e in zip(coverage["coverage_start"], coverage["coverage_end"])])
    days = days.explode("day")[["account_id", "customer_id", "day"]].astype({"day": "datetime64[us]"})
    days = days.sort_values(["day", "account_id"], ignore_index=True)
    daily = pd.merge_asof(days, end_of_day.astype({"day": "datetime64[us]"}).sort_values("day"), on="day", by="account_id", direction="backward")
    daily["balance"] = daily["balance"].fillna(0.0)
    daily["month"] = daily["day"] + pd.offsets.MonthEnd(0)
    monthly = daily.sort_values(["account_id", "day"]).groupby(["customer_id", "month"], sort=True).agg(
        balance_month_end=("balance", "last"), balance_month_avg=("balance", "mean")
    ).reset_index()
    return monthly.assign(product="current_deposit")


def loan_balances(loans: pd.DataFrame, coverage: pd.DataFrame) -> pd.DataFrame:
    """Outstanding loan per covered month-end: amount less the monthly payments made since the loan month."""
    rows = []
    merged = loans.merge(coverage, on="account_id")
    for loan in merged.itertuples(index=False):
        first = loan.granted + pd.offsets.MonthEnd(0)
        last = min(loan.coverage_end, first + pd.offsets.MonthEnd(int(loan.duration)))
        for month in pd.date_range(first, last, freq="ME"):
            paid = (month.year - first.year) * 12 + month.month - first.month
            outstanding = max(0.0, float(loan.amount) - float(loan.payments) * paid)
            product = "mortgage" if loan.amount >= MORTGAGE_MIN_AMOUNT and loan.duration >= MORTGAGE_MIN_MONTHS else "consumer_loan"
            rows.append((loan.customer_id, month, product, outstanding, outstanding))
    return pd.DataFrame(rows, columns=["customer_id", "month", "product", "balance_month_end", "balance_month_avg"])


def card_holdings(cards: pd.DataFrame, coverage: pd.DataFrame) -> pd.DataFrame:
    """credit_card rows (balance 0: Berka has none) from the issue month to the end of coverage."""
    merged = cards.merge(coverage, on="account_id")
    rows = [
        (card.customer_id, month, "credit_card", 0.0, 0.0)
        for card in merged.itertuples(index=False)
        for month in pd.date_range(card.issued + pd.offsets.MonthEnd(0), card.coverage_end, freq="ME")
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "month", "product", "balance_month_end", "balance_month_avg"])
    # Two cards on one account are one product holding.
    return frame.drop_duplicates(["customer_id", "month", "product"], ignore_index=True)


# ------------------------------------------------------------------------------------------------ run


def import_berka(src: Path, out_dir: Path, config: Config, *, slices: tuple[str, ...] = tuple(SLICES)) -> ImportSummary:
    """Turn the Berka files in ``src`` into contract tables in ``out_dir`` and validate them.

    Parameters
    ----------
    src
        Folder of the PKDD'99 files (e.g. ``../shared/data/berka``).
    out_dir
        Raw folder to write; contract tables already there are replaced.
    config
        Passed to validation.
    slices
        Transaction slices to import: ``"1993-1994"`` and/or ``"1995-1998"`` (see the module docstring).
    """
    src = Path(src)
    unknown = set(slices) - set(SLICES)
    if unknown or not slices:
        raise ValueError(f"unknown Berka slices {sorted(unknown) or '(none given)'}; choose from {', '.join(SLICES)}")
    accounts = _read(src, "account.asc.csv")
    accounts["opened"] = _yymmdd(accounts["date"])
    clients = _read(src, "client.asc.csv", dtype={"birth_number": str})
    dispositions = _read(src, "disp.asc.csv")
    districts = _read(src, "district.asc.csv")
    loans = _read(src, "loan.asc.csv").assign(granted=lambda f: _yymmdd(f["date"]))
    cards = _read(src, "card.asc.csv").assign(issued=lambda f: _yymmdd(f["issued"]))
    notes: list[str] = []

    owners = dispositions.loc[dispositions["type"] == "OWNER", ["account_id", "client_id", "disp_id"]]
    txn_parts, coverage_parts, slice_facts = [], [], {}
    for name in slices:
        slice_ = SLICES[name]
        txn = read_transactions(src, slice_)
        ends = (
            pd.Series(pd.Timestamp(slice_.coverage_end), index=pd.Index(txn["account_id"].unique(), name="account_id"))
            if slice_.coverage_end is not None
            # The loan month is cut at the loan date: cover up to the month before it.
            else loans.set_index("account_id")["granted"].reindex(txn["account_id"].unique()).sub(pd.offsets.MonthBegin(1)).sub(pd.Timedelta(days=1))
        )
        coverage = (
            accounts.set_index("account_id").loc[ends.index, ["opened"]]
            .assign(coverage_end=ends)
            .rename(columns={"opened": "coverage_start"})
            .reset_index()
            .merge(owners, on="account_id")
            .rename(columns={"client_id": "customer_id"})
            .assign(slice=name)
        )
        coverage = coverage[coverage["coverage_start"] <= coverage["coverage_end"]]
        covered = txn.merge(coverage[["account_id", "customer_id", "coverage_end"]], on="account_id")
        kept = covered[covered["day"] <= covered["coverage_end"]]
        left_out = len(txn) - len(kept)
        if left_out:
            notes.append(f"{name}: {left_out:,} postings in partially covered months left out (after each account's coverage end)")
        txn_parts.append(kept)
        coverage_parts.append(coverage)
        slice_facts[name] = {
            "file": slice_.file,
            "accounts": int(coverage["account_id"].nunique()),
            "coverage_start": coverage["coverage_start"].min().date().isoformat(),
            "coverage_end": coverage["coverage_end"].max().date().isoformat(),
            "transactions": len(kept),
        }
    txn = pd.concat(txn_parts, ignore_index=True)
    coverage = pd.concat(coverage_parts, ignore_index=True)
    if coverage["account_id"].duplicated().any():
        raise ValueError("Berka slices overlap in accounts; import one slice at a time")

    district = districts.rename(columns={"A1": "district_id", "A3": "region_name"})
    district = district.assign(city_tier=city_tier(district["A4"], district["A10"]), income_band=income_band(district["A11"]))
    people = clients.merge(district[["district_id", "region_name", "city_tier", "income_band"]], on="district_id", how="left")
    people = people.join(birth_date_and_gender(people["birth_number"]))
    customers = (
        coverage[["customer_id", "account_id"]]
        .merge(people.rename(columns={"client_id": "customer_id"}), on="customer_id")
        .merge(accounts[["account_id", "opened"]], on="account_id")
        .sort_values("customer_id", ignore_index=True)
    )
    customers = pd.DataFrame({
        "customer_id": customers["customer_id"],
        "birth_date": customers["birth_date"],
        "gender": customers["gender"],
        "city_tier": customers["city_tier"],
        "income_band": customers["income_band"],
        "onboarding_date": customers["opened"],
        "region": customers["region_name"],
    })
    notes.append(f"{len(owners) - len(customers):,} account owners outside the imported slices left out (no transactions observed)")

    deposits = deposit_balances(txn, coverage)
    overdrawn = int((deposits["balance_month_end"] < 0).sum() + (deposits["balance_month_avg"] < 0).sum())
    deposits = deposits.assign(
        balance_month_end=deposits["balance_month_end"].clip(lower=0), balance_month_avg=deposits["balance_month_avg"].clip(lower=0)
    )
    if overdrawn:
        notes.append(f"{overdrawn:,} overdrawn current_deposit month balances (month-end or average) written as 0")
    card_accounts = cards.merge(dispositions[["disp_id", "account_id"]], on="disp_id")[["account_id", "issued", "type"]]
    balances = pd.concat(
        [deposits, loan_balances(loans, coverage), card_holdings(card_accounts, coverage)], ignore_index=True
    )[["customer_id", "month", "product", "balance_month_end", "balance_month_avg"]]
    balances = balances.sort_values(["customer_id", "month", "product"], ignore_index=True)
    transactions = map_transactions(txn).sort_values(["customer_id", "timestamp"], kind="stable", ignore_index=True)

    out_dir = Path(out_dir)
    data_end = coverage["coverage_end"].max().date()
    written = write_raw_tables(
        out_dir,
        {"customers": customers, "transactions": transactions, "balances": balances},
        source="Berka PKDD'99 financial data (Czech retail bank, 1993-1998)",
        data_end=data_end,
        coverage={
            "note": "rows exist only inside each customer's coverage window; months outside it are unobserved, not inactive",
            "customer_coverage_file": "coverage.parquet",
            "slices": slice_facts,
        },
    )
    coverage_out = coverage[["customer_id", "slice", "coverage_start", "coverage_end"]].sort_values("customer_id")
    coverage_out.assign(
        coverage_start=coverage_out["coverage_start"].dt.date, coverage_end=coverage_out["coverage_end"].dt.date
    ).to_parquet(out_dir / "coverage.parquet", index=False)
    gold = int((card_accounts["type"] == "gold").sum())
    notes.append(f"cards: {len(card_accounts):,} issued in all ({gold} gold); those on covered accounts become credit_card holdings")
    report = validate_raw(out_dir, config)
    return ImportSummary(out_dir=out_dir, source=f"Berka ({', '.join(slices)}) from {src}", tables=written, report=report, notes=tuple(notes))
