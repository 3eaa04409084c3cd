"""Importers: a mapped hand-written extract, and the public Berka data when it is present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from custbase.config import Config
from features.importers import import_berka, import_mapped
from features.importers.mapping import MappingError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MAPPING = REPO / "features" / "importers" / "example_mapping.yaml"
EXTRACT = REPO / "tests" / "fixtures" / "bank_extract"
BERKA = Path(os.environ.get("CUSTBASE_BERKA_DIR") or REPO.parent / "shared" / "data" / "berka")
CONFIG = Config()


def test_example_mapping_imports_and_validates(tmp_path):
    summary = import_mapped(EXAMPLE_MAPPING, tmp_path / "raw", CONFIG)
    assert summary.ok, summary.render()
    assert summary.tables == {"customers": 8, "transactions": 12, "balances": 10, "closures": 1}

    customers = pd.read_parquet(tmp_path / "raw" / "customers.parquet")
    assert list(customers["customer_id"]) == list(range(1, 9))
    # W -> F, A -> tier1, "3" -> middle, 02.03.1984 -> 1984-03-02
    first = customers.iloc[0]
    assert (first["gender"], first["city_tier"], first["income_band"]) == ("F", "tier1", "middle")
    assert str(first["birth_date"]) == "1984-03-02" and str(first["onboarding_date"]) == "2019-06-14"

    transactions = pd.read_parquet(tmp_path / "raw" / "transactions.parquet")
    card = transactions[transactions["transaction_id"] == 90002].iloc[0]
    assert (card["amount"], card["direction"], card["channel"], card["category"]) == (89.9, "out", "pos", "card_spend")
    ids = pd.read_csv(tmp_path / "raw" / "customer_ids.csv")
    assert dict(zip(ids["source_id"], ids["customer_id"]))["C-005"] == 5
    assert summary.report.data_end.isoformat() == "2024-06-30"


def _copy_example(tmp_path: Path) -> tuple[Path, Path]:
    """The example mapping next to a private copy of the extract, so a test can break one file."""
    extract = tmp_path / "extract"
    shutil.copytree(EXTRACT, extract)
    mapping = yaml.safe_load(EXAMPLE_MAPPING.read_text())
    for spec in mapping["tables"].values():
        spec["file"] = str(extract / Path(spec["file"]).name)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path, extract


def test_unknown_code_in_the_extract_is_reported_by_name(tmp_path):
    mapping, extract = _copy_example(tmp_path)
    postings = (extract / "postings.csv").read_text().replace("90004,C-003,2024-03-01 08:15,-2300.00,M,", "90004,C-003,2024-03-01 08:15,-2300.00,TELEX,")
    (extract / "postings.csv").write_text(postings)
    summary = import_mapped(mapping, tmp_path / "raw", CONFIG)
    assert not summary.ok
    (violation,) = summary.report.violations
    assert (violation.table, violation.column, violation.rule, violation.bad_rows) == ("transactions", "channel", "category", 1)
    assert violation.examples == ("TELEX",)
    assert "TELEX" in summary.render()


def test_date_not_matching_the_format_is_a_type_violation_not_a_null(tmp_path):
    mapping, extract = _copy_example(tmp_path)
    clients = (extract / "clients.csv").read_text().replace("14.06.2019", "mid-June 2019")
    (extract / "clients.csv").write_text(clients)
    summary = import_mapped(mapping, tmp_path / "raw", CONFIG)
    rules = {(v.table, v.column, v.rule): v for v in summary.report.violations}
    assert rules[("customers", "onboarding_date", "type")].examples == ("mid-June 2019",)


def test_mapping_mistakes_name_table_and_column(tmp_path):
    mapping, _ = _copy_example(tmp_path)
    spec = yaml.safe_load(mapping.read_text())
    spec["tables"]["customers"]["columns"]["gender"] = {"from": "GENDER_CODE"}
    mapping.write_text(yaml.safe_dump(spec))
    with pytest.raises(MappingError, match="GENDER_CODE.*customers.gender"):
        import_mapped(mapping, tmp_path / "raw", CONFIG)
    spec["tables"]["customers"]["columns"]["favourite_colour"] = "SEX"
    mapping.write_text(yaml.safe_dump(spec))
    with pytest.raises(MappingError, match="favourite_colour"):
        import_mapped(mapping, tmp_path / "raw", CONFIG)


@pytest.mark.slow
@pytest.mark.skipif(not BERKA.is_dir(), reason=f"Berka data not found at {BERKA} (set CUSTBASE_BERKA_DIR to its folder)")
def test_berka_imports_and_validates(tmp_path):
    summary = import_berka(BERKA, tmp_path / "berka", CONFIG)
    assert summary.ok, summary.render()
    customers = pd.read_parquet(tmp_path / "berka" / "customers.parquet")
    transactions = pd.read_parquet(tmp_path / "berka" / "transactions.parquet")
    balances = pd.read_parquet(tmp_path / "berka" / "balances.parquet")
    # 1,252 accounts in the 1993-94 slice and 354 in the 1995-98 slice, one owner each; the slices are disjoint.
    assert len(customers) == 1_229 + 354  # 23 accounts opened in the cut month 1994-04 have no complete month
    assert len(transactions) == (52_816 - 3_616) + (30_200 - 1_145)  # partial last months left out
    assert set(transactions["category"]) <= {"salary", "transfer", "card_spend", "bill_payment", "cash", "investment", "loan_repayment", "interest", "fee", "other"}
    assert set(balances["product"]) >= {"current_deposit", "consumer_loan", "credit_card"}
    # Women's birth numbers carry month + 50.
    assert set(customers["gender"]) == {"F", "M"}
    manifest = (tmp_path / "berka" / "manifest.json").read_text()
    assert "coverage" in manifest


def test_a_transactions_only_purchase_log_imports_with_derived_customers(tmp_path):
    (tmp_path / "purchases.csv").write_text(
        "client;day;spend\n"
        "A-9;2024-01-15;12.50\n"
        "B-1;2024-01-20;3.00\n"
        "A-9;2024-03-02;40.00\n"
        "C-4;2024-05-31;7.25\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({"data_end": "2024-06-30", "tables": {
        "customers": {"derive": "transactions"},
        "transactions": {"file": "purchases.csv", "read": {"sep": ";"}, "columns": {
            "customer_id": {"from": "client", "id": True}, "timestamp": "day", "amount": "spend",
            "direction": {"value": "out"}, "channel": {"value": "pos"}, "category": {"value": "card_spend"}}},
    }}))
    summary = import_mapped(mapping, tmp_path / "raw", CONFIG)
    assert summary.ok, summary.render()
    assert summary.tables == {"transactions": 4, "customers": 3}
    customers = pd.read_parquet(tmp_path / "raw" / "customers.parquet").set_index("customer_id")
    ids = pd.read_csv(tmp_path / "raw" / "customer_ids.csv").set_index("source_id")["customer_id"]
    a9 = customers.loc[ids["A-9"]]
    assert str(a9["onboarding_date"]) == "2024-01-15"  # the first purchase
    assert a9["gender"] == "U" and pd.isna(a9["city_tier"]) and pd.isna(a9["income_band"]) and pd.isna(a9["birth_date"])
    assert any("derived from transactions" in note for note in summary.notes)


def test_unknown_attributes_are_declared_and_required_ones_cannot_be(tmp_path):
    mapping, _ = _copy_example(tmp_path)
    spec = yaml.safe_load(mapping.read_text())
    spec["tables"]["customers"]["columns"]["city_tier"] = {"unknown": True}
    spec["tables"]["customers"]["columns"]["gender"] = {"unknown": True}
    mapping.write_text(yaml.safe_dump(spec))
    summary = import_mapped(mapping, tmp_path / "raw", CONFIG)
    assert summary.ok, summary.render()
    customers = pd.read_parquet(tmp_path / "raw" / "customers.parquet")
    assert customers["city_tier"].isna().all() and set(customers["gender"]) == {"U"}
    spec["tables"]["customers"]["columns"]["onboarding_date"] = {"unknown": True}
    mapping.write_text(yaml.safe_dump(spec))
    with pytest.raises(MappingError, match="customers.onboarding_date cannot be unknown"):
        import_mapped(mapping, tmp_path / "raw", CONFIG)
    del spec["tables"]["customers"]["columns"]["onboarding_date"], spec["tables"]["customers"]["columns"]["city_tier"]
    mapping.write_text(yaml.safe_dump(spec))
    with pytest.raises(MappingError, match=r"required column\(s\) city_tier, onboarding_date \(city_tier can be declared"):
        import_mapped(mapping, tmp_path / "raw", CONFIG)


def test_numbering_text_ids_is_one_pass_in_first_seen_order():
    from features.importers.mapping import number_customer_ids

    frames = {"customers": pd.DataFrame({"customer_id": ["b", "a"]}),
              "transactions": pd.DataFrame({"customer_id": ["a", "z", "b", "z", None]})}
    numbered, numbering = number_customer_ids(frames, {"customers", "transactions"})
    assert numbered["customers"]["customer_id"].tolist() == [1, 2]
    assert numbered["transactions"]["customer_id"].tolist()[:4] == [2, 3, 1, 3]  # the orphan 'z' after the customers
    assert numbering["source_id"].tolist() == ["b", "a", "z"]
