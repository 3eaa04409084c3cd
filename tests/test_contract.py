"""The raw-data contract is declared once; the README shows exactly that declaration."""

from pathlib import Path

from features.contract import REQUIRED_TABLES, TABLES, contract_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_required_tables_are_customers_and_transactions():
    assert set(REQUIRED_TABLES) == {"customers", "transactions"}


def test_every_key_column_is_declared():
    for table in TABLES.values():
        for column in table.key:
            assert column in table.column_names, (table.name, column)


def test_readme_shows_the_contract_as_declared():
    """If this fails, paste the output of `custbase contract` into README.md."""
    assert contract_markdown() in README.read_text()
