"""Where the raw tables of a bank live on disk, and how engines read them.

The only module that knows the on-disk layout of a raw folder. Everything else asks it for a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from features.contract import MANIFEST_FILE, PARTITION_KEY, TABLES


class RawDataError(ValueError):
    """The raw folder is missing, or a table cannot be found or read."""


@dataclass(frozen=True)
class TableSource:
    """One table on disk: a parquet file, a folder of parquet files, or a CSV file."""

    name: str
    path: Path
    format: str  # "parquet" | "csv"

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    def duckdb_scan(self) -> str:
        """A DuckDB table expression that reads this table (partition columns dropped)."""
        p = str(self.path).replace("'", "''")
        if self.format == "csv":
            return f"read_csv_auto('{p}', header = true)"
        if self.is_folder:
            return (
                f"(SELECT * EXCLUDE ({PARTITION_KEY}) FROM read_parquet('{p}/**/*.parquet', hive_partitioning = true, union_by_name = true))"
                if _has_partitions(self.path)
                else f"read_parquet('{p}/*.parquet', union_by_name = true)"
            )
        return f"read_parquet('{p}')"

    def read_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Read the whole table into pandas (small tables, tests and validation chunks only)."""
        if self.format == "csv":
            return pd.read_csv(self.path, usecols=columns)
        frame = pd.read_parquet(self.path, columns=columns)
        return frame.drop(columns=[PARTITION_KEY], errors="ignore")


def _has_partitions(folder: Path) -> bool:
    return any(child.is_dir() and child.name.startswith(f"{PARTITION_KEY}=") for child in folder.iterdir())


def find_table(raw_dir: Path, name: str) -> TableSource | None:
    """Locate table ``name`` in ``raw_dir``: ``NAME.parquet``, ``NAME/`` or ``NAME.csv``; None if absent."""
    raw_dir = Path(raw_dir)
    for candidate, fmt in ((raw_dir / f"{name}.parquet", "parquet"), (raw_dir / name, "parquet"), (raw_dir / f"{name}.csv", "csv")):
        if candidate.exists():
            return TableSource(name=name, path=candidate, format=fmt)
    return None


def find_tables(raw_dir: Path) -> dict[str, TableSource]:
    """All contract tables present in ``raw_dir``. Raises if the folder does not exist."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise RawDataError(f"raw data folder {raw_dir} does not exist; create one with `uv run custbase simulate --out {raw_dir}`")
    return {name: source for name in TABLES if (source := find_table(raw_dir, name)) is not None}


def read_manifest(raw_dir: Path) -> dict:
    path = Path(raw_dir) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(raw_dir: Path, **fields) -> None:
    path = Path(raw_dir) / MANIFEST_FILE
    current = read_manifest(raw_dir)
    current.update({k: (v.isoformat() if isinstance(v, date) else v) for k, v in fields.items()})
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def declared_data_end(raw_dir: Path) -> date | None:
    """The data's end as declared in the manifest (``data_end``), or None."""
    value = read_manifest(raw_dir).get("data_end")
    return date.fromisoformat(value) if value else None


def declared_data_start(raw_dir: Path) -> date | None:
    """The first day of the data's first month as declared in the manifest (``data_start``), or None.

    A folder staged from a database (:mod:`features.database`) holds only the months a build reads; it declares
    where the whole history starts, so that the build's first month is the database's, not the staged rows'.
    """
    value = read_manifest(raw_dir).get("data_start")
    return date.fromisoformat(value) if value else None


def resolve_data_end(raw_dir: Path) -> date:
    """The last day the raw data covers.

    The manifest's ``data_end`` when declared; otherwise the latest ``balances.month``; otherwise the last
    day of the month of the latest transaction. Labels whose horizon runs past it are null, and event dates
    after it are violations.
    """
    declared = declared_data_end(raw_dir)
    if declared is not None:
        return declared
    import duckdb  # local: keeps this module importable without starting an engine

    tables = find_tables(raw_dir)
    con = duckdb.connect()
    try:
        if "balances" in tables:
            (value,) = con.execute(f"SELECT max(CAST(month AS DATE)) FROM {tables['balances'].duckdb_scan()}").fetchone()
        elif "transactions" in tables:
            (value,) = con.execute(
                f"SELECT last_day(max(CAST(timestamp AS TIMESTAMP))) FROM {tables['transactions'].duckdb_scan()}"
            ).fetchone()
        else:
            value = None
    finally:
        con.close()
    if value is None:
        raise RawDataError(f"cannot tell where the data in {raw_dir} ends: no manifest.json data_end, no balances, no transactions")
    return value if isinstance(value, date) else pd.Timestamp(value).date()


#: The tables a month's extract must hold rows of, with the column that dates a row in its month.
MONTHLY_TABLES: dict[str, str] = {"balances": "month", "transactions": "timestamp"}


def month_rows(raw_dir: Path, month: str) -> dict[str, int | None]:
    """Rows of each of :data:`MONTHLY_TABLES` dated in ``month`` (``YYYY-MM``); None for a table that is absent.

    A month whose balances or transactions have no row has not fully landed: the monthly cycle refuses it.
    """
    import duckdb  # local: keeps this module importable without starting an engine

    first = date.fromisoformat(f"{month}-01")
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    tables = find_tables(raw_dir)
    counts: dict[str, int | None] = {}
    con = duckdb.connect()
    try:
        for name, column in MONTHLY_TABLES.items():
            if name not in tables:
                counts[name] = None
                continue
            (counts[name],) = con.execute(
                f"SELECT count(*) FROM {tables[name].duckdb_scan()} WHERE CAST({column} AS DATE) >= ? AND CAST({column} AS DATE) < ?",
                [first, after]).fetchone()
    finally:
        con.close()
    return counts
