"""Raw-data validation: a tiny valid bank passes; each kind of bad input is named with table, column, rule and count.

Every case runs through both engines of the column rules: pandera chunks (small tables) and the DuckDB
aggregate pass (large tables, forced here with ``pandera_max_rows=0``); their findings must agree.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from custbase.config import Config
from features.validate import RawDataInvalid, ValidationReport, require_valid, schema_for, validate_raw
from features import contract

CONFIG = Config()
DATA_END = "2024-06-30"


def _bank() -> dict[str, pd.DataFrame]:
    """Three customers, four months: every table of the contract, all valid."""
    customers = pd.DataFrame({
        "customer_id": [1, 2, 3],
        "birth_date": pd.to_datetime(["1980-05-01", "1995-11-20", None]),
        "gender": ["F", "M", "U"],
        "city_tier": ["tier1", "tier2", "tier4"],
        "income_band": ["middle", "high", None],
        "onboarding_date": pd.to_datetime(["2023-01-15", "2024-02-10", "2024-03-01"]),
        "region": ["north", "south", None],
    })
    balances = pd.DataFrame({
        "customer_id": [1, 1, 2, 2, 3],
        "month": pd.to_datetime(["2024-03-31", "2024-04-30", "2024-02-29", "2024-03-31", "2024-03-31"]),
        "product": ["current_deposit", "current_deposit", "current_deposit", "fund", "current_deposit"],
        "balance_month_end": [1200.0, 900.0, 50.0, 10000.0, 0.0],
        "balance_month_avg": [1000.0, 1100.0, 40.0, 10000.0, 0.0],
    })
    transactions = pd.DataFrame({
        "transaction_id": [10, 11, 12, 13, 14, 15],
        "customer_id": [1, 1, 2, 2, 3, 1],
        "timestamp": pd.to_datetime([
            "2024-03-25 09:00", "2024-04-02 12:30", "2024-02-10 10:00", "2024-03-01 08:00", "2024-03-05 18:00", "2024-06-30 23:00",
        ]),
        "amount": [5000.0, 120.5, 300.0, 45.0, 10.0, 3.0],
        "direction": ["in", "out", "in", "out", "out", "out"],
        "channel": ["online", "pos", "branch", "mobile", "atm", "online"],
        "category": ["salary", "card_spend", "transfer", "bill_payment", "cash", "fee"],
    })
    interactions = pd.DataFrame({
        "customer_id": [1, 2, 3],
        "timestamp": pd.to_datetime(["2024-03-01 20:00", "2024-02-10 11:00", "2024-04-01 09:00"]),
        "kind": ["login", "complaint", "branch_visit"],
    })
    campaign_contacts = pd.DataFrame({
        "customer_id": [1, 2],
        "timestamp": pd.to_datetime(["2024-04-10 10:00", "2024-04-10 10:00"]),
        "campaign_id": ["2024-04-upgrade", "2024-04-upgrade"],
        "offer": ["upgrade", "upgrade"],
        "treated": [True, False],
        "responded": [False, False],
    })
    closures = pd.DataFrame({"customer_id": [3], "closed_date": pd.to_datetime(["2024-05-20"])})
    return {
        "customers": customers, "balances": balances, "transactions": transactions,
        "interactions": interactions, "campaign_contacts": campaign_contacts, "closures": closures,
    }


def _write(tmp_path: Path, tables: dict[str, pd.DataFrame], *, csv: tuple[str, ...] = ()) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, frame in tables.items():
        if name in csv:
            frame.to_csv(raw / f"{name}.csv", index=False)
        else:
            frame.to_parquet(raw / f"{name}.parquet", index=False)
    (raw / "manifest.json").write_text(json.dumps({"data_end": DATA_END}))
    return raw


ENGINES = [pytest.param({}, id="pandera"), pytest.param({"pandera_max_rows": 0}, id="duckdb")]


@pytest.mark.parametrize("engine", ENGINES)
def test_valid_bank_passes(tmp_path, engine):
    report = validate_raw(_write(tmp_path, _bank()), CONFIG, **engine)
    assert report.ok, report.render()
    assert report.tables["transactions"] == 6 and report.tables["customers"] == 3
    assert report.data_end == date(2024, 6, 30)
    assert report.render().endswith("OK: 6 tables, 20 rows, no violations")


def test_extra_columns_are_a_note_not_a_violation(tmp_path):
    tables = _bank()
    tables["customers"] = tables["customers"].assign(segment_code="X")
    report = validate_raw(_write(tmp_path, tables), CONFIG)
    assert report.ok
    assert any("segment_code" in note for note in report.notes)


def _only(report: ValidationReport, table: str, column: str, rule: str) -> int:
    found = [v for v in report.violations if (v.table, v.column, v.rule) == (table, column, rule)]
    assert found, report.render()
    text = report.render()
    assert table in text and column in text and rule in text
    return found[0].bad_rows


def _with(name: str, change) -> dict[str, pd.DataFrame]:
    tables = _bank()
    tables[name] = change(tables[name])
    return tables


# (tables, table, column, rule, bad rows)
BAD_INPUTS = {
    "duplicated customer row": (
        lambda: _with("customers", lambda f: pd.concat([f, f.iloc[[1]]], ignore_index=True)),
        "customers", "customer_id", "duplicate_key", 1,
    ),
    "missing required column": (
        lambda: _with("transactions", lambda f: f.drop(columns=["amount"])),
        "transactions", "amount", "missing_column", 0,
    ),
    "wrong type: amount as text": (
        lambda: _with("transactions", lambda f: f.assign(amount=["5000", "lots", "300", "45", "n/a", "3"])),
        "transactions", "amount", "type", 2,
    ),
    "wrong type: unparsable date": (
        lambda: _with("interactions", lambda f: f.assign(timestamp=["2024-03-01", "yesterday", "2024-04-01"])),
        "interactions", "timestamp", "type", 1,
    ),
    "unknown category": (
        lambda: _with("transactions", lambda f: f.assign(channel=["online", "pos", "telex", "mobile", "telex", "online"])),
        "transactions", "channel", "category", 2,
    ),
    "negative amount": (
        lambda: _with("transactions", lambda f: f.assign(amount=[5000.0, -120.5, 300.0, 45.0, 10.0, 3.0])),
        "transactions", "amount", "min_value", 1,
    ),
    "transaction after the data's end": (
        lambda: _with("transactions", lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 1, pd.Timestamp("2024-07-02")))),
        "transactions", "timestamp", "after_data_end", 1,
    ),
    "transaction in the future": (
        lambda: _with("transactions", lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 1, pd.Timestamp("2099-01-01")))),
        "transactions", "timestamp", "in_future", 1,
    ),
    "event before onboarding": (
        lambda: _with("interactions", lambda f: f.assign(timestamp=pd.to_datetime(["2022-12-31 10:00", "2024-02-10 11:00", "2024-04-01 09:00"]))),
        "interactions", "timestamp", "before_onboarding", 1,
    ),
    "balance month before the onboarding month": (
        lambda: _with("balances", lambda f: f.assign(month=f["month"].where(f.index != 2, pd.Timestamp("2024-01-31")))),
        "balances", "month", "before_onboarding", 1,
    ),
    "orphan customer_id": (
        lambda: _with("transactions", lambda f: f.assign(customer_id=[1, 1, 2, 2, 99, 98])),
        "transactions", "customer_id", "orphan_customer", 2,
    ),
    "null in non-nullable": (
        lambda: _with("customers", lambda f: f.assign(gender=["F", None, "U"])),
        "customers", "gender", "not_null", 1,
    ),
    "impossible age": (
        lambda: _with("customers", lambda f: f.assign(birth_date=pd.to_datetime(["1880-01-01", "2030-01-01", None]))),
        "customers", "birth_date", "age_range", 2,
    ),
    "duplicated closure": (
        lambda: _with("closures", lambda f: pd.concat([f, f], ignore_index=True)),
        "closures", "customer_id", "duplicate_key", 1,
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_rejected_with_table_column_rule_and_count(tmp_path, case, engine):
    make, table, column, rule, count = BAD_INPUTS[case]
    report = validate_raw(_write(tmp_path, make()), CONFIG, **engine)
    assert not report.ok
    assert _only(report, table, column, rule) == count
    assert "FAILED:" in report.render()


def test_unparsable_value_is_one_type_violation_not_also_a_null(tmp_path):
    tables = _with("transactions", lambda f: f.assign(amount=["5000", "lots", "300", "45", "10", "3"]))
    report = validate_raw(_write(tmp_path, tables, csv=("transactions",)), CONFIG)
    assert [(v.column, v.rule, v.bad_rows, v.examples) for v in report.violations] == [("amount", "type", 1, ("lots",))]


def test_missing_customers_table_is_rejected(tmp_path):
    tables = _bank()
    del tables["customers"]
    report = validate_raw(_write(tmp_path, tables), CONFIG)
    assert [(v.table, v.rule) for v in report.violations] == [("customers", "missing_table")]
    assert "customers" in report.render() and "missing_table" in report.render()


@pytest.mark.parametrize("engine", ENGINES)
def test_csv_tables_are_read_and_checked(tmp_path, engine):
    tables = _with("transactions", lambda f: f.assign(direction=["in", "out", "in", "sideways", "out", "out"]))
    raw = _write(tmp_path, tables, csv=("customers", "transactions", "closures"))
    report = validate_raw(raw, CONFIG, **engine)
    assert report.tables["transactions"] == 6
    assert [(v.table, v.column, v.rule, v.bad_rows) for v in report.violations] == [("transactions", "direction", "category", 1)]
    assert report.violations[0].examples == ("sideways",)


def test_partitioned_parquet_folder_is_read(tmp_path):
    tables = _bank()
    raw = _write(tmp_path, {k: v for k, v in tables.items() if k != "transactions"})
    txn = tables["transactions"].assign(period=tables["transactions"]["timestamp"].dt.strftime("%Y-%m"))
    txn.to_parquet(raw / "transactions", partition_cols=["period"], index=False)
    for engine in ({}, {"pandera_max_rows": 0}):
        report = validate_raw(raw, CONFIG, **engine)
        assert report.ok, report.render()
        assert report.tables["transactions"] == 6


def test_require_valid_raises_with_the_report(tmp_path):
    raw = _write(tmp_path, _with("customers", lambda f: pd.concat([f, f], ignore_index=True)))
    with pytest.raises(RawDataInvalid) as raised:
        require_valid(raw, CONFIG)
    assert raised.value.report.violations[0].rule == "duplicate_key"
    assert "customers" in str(raised.value)


def test_schema_for_is_built_from_the_contract():
    schema = schema_for(contract.TRANSACTIONS, data_end=date(2024, 6, 30))
    assert set(schema.columns) == set(contract.TRANSACTIONS.column_names)
    check_names = {check.name for check in schema.columns["timestamp"].checks}
    assert {"after_data_end", "in_future"} <= check_names
    assert not schema.columns["amount"].nullable and schema.columns["amount"].checks[0].name == "min_value"


@pytest.mark.parametrize("where", ["same month file", "two month files"])
def test_duplicate_transaction_ids_in_partitioned_files_are_counted(tmp_path, where):
    """Ids in posting order give each month file its own id range, so files are checked one by one;
    a repeat inside one file, or one that makes file ranges overlap, must be counted either way."""
    tables = _bank()
    raw = _write(tmp_path, {k: v for k, v in tables.items() if k != "transactions"})
    txn = tables["transactions"].sort_values("timestamp", ignore_index=True)
    txn = txn.assign(transaction_id=range(100, 100 + len(txn)))
    if where == "same month file":
        txn = pd.concat([txn, txn[txn["timestamp"].dt.month == 3].iloc[[0]]], ignore_index=True)
    else:
        txn.loc[len(txn) - 1, "transaction_id"] = 100
    repeated = txn["transaction_id"][txn["transaction_id"].duplicated()].iloc[0]
    txn.assign(period=txn["timestamp"].dt.strftime("%Y-%m")).to_parquet(raw / "transactions", partition_cols=["period"], index=False)
    report = validate_raw(raw, CONFIG, pandera_max_rows=0)
    assert _only(report, "transactions", "transaction_id", "duplicate_key") == 1
    assert report.violations[0].examples == (repeated,)
