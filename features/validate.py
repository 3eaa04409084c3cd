"""Check a raw folder against the contract and report every violation; never filter a row.

Every rule is derived from :mod:`features.contract` (tables, columns, dtypes, categories, bounds, date
flags, keys); nothing here restates a column name.

How the work is split, so that a 1,000,000-customer bank (~300M transaction rows) validates in minutes:

* **Column rules** (type, null, category, minimum, date bounds, age) are declared once in ``_RULES``, each
  with a pandas form and a SQL form. Tables with at most ``pandera_max_rows`` rows are validated chunk
  by chunk with the pandera schema built by :func:`schema_for` (lazy validation; failure cases are turned
  into counts per column and rule). Larger tables run the same rules as one DuckDB aggregate pass
  (``count_if`` per column and rule) that reads every row: no sampling, so counts are exact either way.
* **Relational rules** (duplicate keys, orphan customer_id, dates before onboarding) always run in
  DuckDB SQL over :meth:`features.raw.TableSource.duckdb_scan`.

A value that cannot be parsed is reported once, as ``type``; it is not counted again as a null.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
from tqdm.auto import tqdm

from custbase.config import Config
from features import contract
from features.raw import TableSource, declared_data_end, find_tables, resolve_data_end

#: Tables above this many rows run the column rules as a DuckDB aggregate pass instead of pandera chunks.
PANDERA_MAX_ROWS = 2_000_000
CHUNK_ROWS = 500_000
MAX_AGE_YEARS = 120
EXAMPLES = 3

HINTS: dict[str, str] = {
    "missing_table": "add the table to the raw folder (NAME.parquet, NAME/ or NAME.csv)",
    "unreadable_table": "rewrite the table as parquet or a CSV with a header row",
    "missing_column": "add the column, or map it from your extract (custbase import csv --mapping)",
    "type": "fix the values so they parse as the column's type (dates as YYYY-MM-DD)",
    "not_null": "fill the values, or drop the rows at the source if they are not real records",
    "category": "map the codes onto the contract's categories (see features/contract.py)",
    "min_value": "amounts and balances are absolute values >= 0; the direction/product carries the sign",
    "age_range": "birth dates must give an age between 0 and 120 at the data's end; fix or null them",
    "not_month_end": "use the month's last day for balances.month",
    "after_data_end": "remove rows after the data's end or move manifest.json data_end",
    "in_future": "fix the dates: they lie after today",
    "duplicate_key": "keep one row per key; duplicates double-count customers and amounts",
    "orphan_customer": "add the customers to the customers table or remove their rows",
    "before_onboarding": "fix onboarding_date or the event dates: a customer cannot act before joining",
}


# --------------------------------------------------------------------------------------------- report

_STRUCTURAL_RULES = ("missing_table", "missing_column", "unreadable_table")
#: Rules whose examples are customer_ids rather than the offending values.
_CUSTOMER_RULES = ("orphan_customer", "before_onboarding")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which table and column, how many rows, a few examples, and what to do."""

    table: str
    column: str
    rule: str
    bad_rows: int
    examples: tuple = ()
    hint: str = ""

    def render(self) -> str:
        examples = ", ".join(_show(v) for v in self.examples)
        if examples and self.rule in _CUSTOMER_RULES:
            examples = f"customer_id {examples}"
        rows = "-" if self.rule in _STRUCTURAL_RULES else f"{self.bad_rows:,} row{'s' if self.bad_rows != 1 else ''}"
        line = f"  {self.table:<18} {self.column:<18} {self.rule:<18} {rows:>14}"
        if examples:
            line += f"  e.g. {examples}"
        return line + f"\n  {'':<18} -> {self.hint}"


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_raw` found. ``ok`` is True when there is no violation (notes are fine)."""

    raw_dir: Path
    data_end: date | None
    tables: dict[str, int]
    violations: tuple[Violation, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    def render(self) -> str:
        lines = [f"raw data: {self.raw_dir}   data end: {self.data_end or 'unknown'}   checked in {self.seconds:.1f} s"]
        lines += [f"  {name:<18} {rows:>14,} row{'s' if rows != 1 else ''}" for name, rows in self.tables.items()]
        lines += [f"  note: {note}" for note in self.notes]
        if self.violations:
            lines.append(f"  {'table':<18} {'column':<18} {'rule':<18} {'bad rows':>14}")
            lines += [v.render() for v in self.violations]
            tables = sorted({v.table for v in self.violations})
            lines.append(f"FAILED: {len(self.violations)} violations in {', '.join(tables)}")
        else:
            lines.append(f"OK: {len(self.tables)} tables, {self.total_rows:,} rows, no violations")
        return "\n".join(lines)


class RawDataInvalid(ValueError):
    """The raw folder breaks the contract; ``.report`` holds the full report."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.render())
        self.report = report


def _show(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return repr(text) if isinstance(value, str) else text


# ---------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Bounds:
    """Dates the rules compare against."""

    data_end: date | None
    today: date


@dataclass(frozen=True)
class _Rule:
    """A per-row rule on one parsed column, in two forms: pandas (bad-row mask) and SQL (bad-row predicate)."""

    name: str
    pandas_bad: Callable[[pd.Series], pd.Series]
    sql_bad: Callable[[str], str]


def _sql_date(value: date) -> str:
    return f"DATE '{value.isoformat()}'"


def _rules_for(column: contract.Column, bounds: _Bounds) -> list[_Rule]:
    """The value rules of one column, evaluated on its parsed values (nulls are never bad here)."""
    rules: list[_Rule] = []
    if column.categories is not None:
        allowed = list(column.categories)
        in_list = ", ".join("'" + c.replace("'", "''") + "'" for c in allowed)
        rules.append(_Rule("category", lambda s: s.notna() & ~s.isin(allowed), lambda x: f"{x} NOT IN ({in_list})"))
    if column.min_value is not None:
        low = column.min_value
        rules.append(_Rule("min_value", lambda s: s < low, lambda x: f"{x} < {low}"))
    if column.dtype in ("date", "timestamp"):
        if column.name == "birth_date":
            reference = bounds.data_end or bounds.today
            oldest = reference - timedelta(days=round(365.25 * MAX_AGE_YEARS))
            ref_ts, old_ts = pd.Timestamp(reference), pd.Timestamp(oldest)
            rules.append(_Rule(
                "age_range",
                lambda s: (s.dt.normalize() > ref_ts) | (s.dt.normalize() < old_ts),
                lambda x: f"(CAST({x} AS DATE) > {_sql_date(reference)} OR CAST({x} AS DATE) < {_sql_date(oldest)})",
            ))
        if column.name == "month" and column.not_before_onboarding:
            rules.append(_Rule(
                "not_month_end",
                lambda s: s.dt.normalize() != (s.dt.normalize() + pd.offsets.MonthEnd(0)),
                lambda x: f"CAST({x} AS DATE) <> last_day(CAST({x} AS DATE))",
            ))
        if column.not_after_data_end and bounds.data_end is not None:
            end_ts = pd.Timestamp(bounds.data_end)
            rules.append(_Rule(
                "after_data_end",
                lambda s: s.dt.normalize() > end_ts,
                lambda x: f"CAST({x} AS DATE) > {_sql_date(bounds.data_end)}",
            ))
        if column.not_after_data_end:
            today_ts = pd.Timestamp(bounds.today)
            rules.append(_Rule(
                "in_future",
                lambda s: s.dt.normalize() > today_ts,
                lambda x: f"CAST({x} AS DATE) > {_sql_date(bounds.today)}",
            ))
    return rules


_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "date": "TIMESTAMP", "timestamp": "TIMESTAMP", "str": "VARCHAR"}
# The spellings DuckDB's TRY_CAST(... AS BOOLEAN) accepts, so both engines agree.
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


_NATIVE = {
    "int64": ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT"),
    "float64": ("DOUBLE", "FLOAT", "DECIMAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT"),
    "date": ("DATE", "TIMESTAMP"),
    "timestamp": ("DATE", "TIMESTAMP"),
    "bool": ("BOOLEAN",),
    "str": ("VARCHAR",),
}


def _is_native(column: contract.Column, duck_type: str | None) -> bool:
    """True when the stored type already is the contract type: nothing can fail to parse."""
    return duck_type is not None and duck_type.upper().startswith(_NATIVE[column.dtype])


def _sql_typed(column: contract.Column, name: str, duck_type: str | None = None) -> str:
    """SQL expression parsing column ``name``; NULL where the value does not parse."""
    quoted = _quote(name)
    if _is_native(column, duck_type):
        return quoted  # already typed: casting 300M values for nothing costs minutes
    if column.dtype == "int64":
        # Integer-valued doubles are fine (CSV readers may infer 1.0); 1.5 is not an id.
        as_double = f"TRY_CAST({quoted} AS DOUBLE)"
        return f"(CASE WHEN {as_double} = round({as_double}) THEN CAST({as_double} AS BIGINT) END)"
    return f"TRY_CAST({quoted} AS {_SQL_TYPES[column.dtype]})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse_column(column: contract.Column, values: pd.Series) -> pd.Series:
    """Parse raw values into the column's type; values that do not parse become null.

    Returns a new Series; ``values`` is not changed.
    """
    if column.dtype in ("int64", "float64"):
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        if column.dtype == "int64":
            numbers = numbers.where(numbers == np.round(numbers))
            return numbers.astype("Int64")
        return numbers
    if column.dtype in ("date", "timestamp"):
        if pd.api.types.is_datetime64_any_dtype(values):
            parsed = values
        else:
            parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
            # pandas reads 20240105 as a date, DuckDB does not; both engines must agree, so digits alone are not a date.
            parsed = parsed.where(~values.astype("str").str.fullmatch(r"\d+").fillna(False))
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        return parsed.astype("datetime64[us]")
    if column.dtype == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean")
        text = values.astype("str").str.lower()
        return pd.Series(
            np.where(text.isin(_TRUE), True, np.where(text.isin(_FALSE), False, None)), index=values.index, dtype="boolean"
        ).where(values.notna())
    return values.astype("str").where(values.notna())


_PANDERA_DTYPES = {"int64": "Int64", "float64": "float64", "bool": "boolean"}


def schema_for(table: contract.Table, *, data_end: date | None = None, today: date | None = None) -> pa.DataFrameSchema:
    """The pandera schema of ``table``'s parsed rows (see :func:`parse_column`), built from the contract.

    Columns are optional in the schema (missing required columns are reported separately) and extra
    columns are allowed. Date checks against the data's end are included only when ``data_end`` is given.
    """
    bounds = _Bounds(data_end=data_end, today=today or date.today())
    columns = {}
    for column in table.columns:
        checks = [
            pa.Check(lambda s, bad=rule.pandas_bad: ~bad(s), name=rule.name, ignore_na=True)
            for rule in _rules_for(column, bounds)
        ]
        columns[column.name] = pa.Column(
            _PANDERA_DTYPES.get(column.dtype), checks=checks, nullable=column.nullable, required=False, coerce=False
        )
    return pa.DataFrameSchema(columns, name=table.name, strict=False)


# -------------------------------------------------------------------------------------------- engine


class _Tally:
    """Bad-row counts and first examples per (table, column, rule), summed over chunks."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.examples: dict[tuple[str, str, str], list] = {}

    def add(self, key: tuple[str, str, str], count: int, examples) -> None:
        if count <= 0:
            return
        self.counts[key] = self.counts.get(key, 0) + int(count)
        kept = self.examples.setdefault(key, [])
        for value in examples:
            if len(kept) >= EXAMPLES:
                break
            value = _plain(value)
            if value not in kept:
                kept.append(value)

    def violations(self) -> list[Violation]:
        return [
            Violation(table, column, rule, count, tuple(self.examples.get((table, column, rule), ())), HINTS[rule])
            for (table, column, rule), count in self.counts.items()
        ]


def _plain(value):
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (pd.Timestamp,)):
        return value.date().isoformat() if value == value.normalize() else value.isoformat(sep=" ")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _chunks(source: TableSource, columns: list[str]) -> Iterator[pd.DataFrame]:
    """The table's rows in chunks of at most CHUNK_ROWS, only ``columns``; CSV cells as text."""
    if source.format == "csv":
        yield from pd.read_csv(source.path, usecols=columns, dtype=str, chunksize=CHUNK_ROWS)
        return
    import pyarrow.dataset as ds

    dataset = ds.dataset(source.path, format="parquet", partitioning="hive" if source.is_folder else None)
    wanted = [c for c in columns if c != contract.PARTITION_KEY]
    for batch in dataset.to_batches(columns=wanted, batch_size=CHUNK_ROWS):
        yield batch.to_pandas()


def _check_columns_with_pandera(
    table: contract.Table, source: TableSource, present: list[str], bounds: _Bounds, tally: _Tally, progress: bool
) -> None:
    schema = schema_for(table, data_end=bounds.data_end, today=bounds.today)
    columns = [table.column(name) for name in present]
    offset = 0
    for chunk in tqdm(_chunks(source, present), desc=f"validate {table.name}", disable=not progress, unit="chunk"):
        chunk = chunk.set_axis(pd.RangeIndex(offset, offset + len(chunk)))
        offset += len(chunk)
        parsed = pd.DataFrame({c.name: parse_column(c, chunk[c.name]) for c in columns}, index=chunk.index)
        unparsed: dict[str, pd.Index] = {}
        for column in columns:
            bad = chunk[column.name].notna() & parsed[column.name].isna()
            unparsed[column.name] = chunk.index[bad]
            tally.add((table.name, column.name, "type"), int(bad.sum()), chunk.loc[bad, column.name].head(EXAMPLES))
        try:
            schema.validate(parsed, lazy=True)
        except pa.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            cases = cases[cases["column"].notna()]
            for (name, check), group in cases.groupby(["column", "check"], sort=False):
                rule = "not_null" if check == "not_nullable" else str(check)
                if rule not in HINTS:
                    continue  # a dtype mismatch after parsing cannot happen; anything else is pandera internals
                if rule == "not_null":
                    # Unparsable values were reported as `type`; count only values that were missing.
                    group = group[~group["index"].isin(unparsed[name])]
                    examples: list = []
                else:
                    examples = list(group["failure_case"].head(EXAMPLES))
                tally.add((table.name, name, rule), len(group), examples)


def _check_columns_with_sql(
    con: duckdb.DuckDBPyConnection, table: contract.Table, scan: str, present: dict[str, str], bounds: _Bounds, tally: _Tally
) -> None:
    """The same column rules as the pandera schema, as one aggregate pass over every row."""
    predicates: list[tuple[str, str, str, str]] = []  # (column, rule, bad predicate, example expression)
    for name in present:
        column = table.column(name)
        raw, typed = _quote(name), _sql_typed(column, name, present[name])
        if not _is_native(column, present[name]) and column.dtype != "str":
            predicates.append((name, "type", f"{raw} IS NOT NULL AND {typed} IS NULL", raw))
        if not column.nullable:
            predicates.append((name, "not_null", f"{raw} IS NULL", "NULL"))
        value = typed if column.dtype != "str" else f"CAST({raw} AS VARCHAR)"
        for rule in _rules_for(column, bounds):
            predicates.append((name, rule.name, f"{value} IS NOT NULL AND {rule.sql_bad(value)}", value))
    if not predicates:
        return
    counts = con.execute(
        "SELECT " + ", ".join(f"count_if({p})" for _, _, p, _ in predicates) + f" FROM {scan}"
    ).fetchone()
    for (name, rule, predicate, example), count in zip(predicates, counts):
        if count:
            examples = [] if example == "NULL" else [
                row[0] for row in con.execute(f"SELECT {example} FROM {scan} WHERE {predicate} LIMIT {EXAMPLES}").fetchall()
            ]
            tally.add((table.name, name, rule), count, examples)


def _check_relations(
    con: duckdb.DuckDBPyConnection,
    table: contract.Table,
    source: TableSource,
    present: dict[str, str],
    customers: tuple[str, dict[str, str]] | None,
    tally: _Tally,
) -> None:
    """Duplicate keys, orphan customer_ids and dates before the customer's onboarding."""
    scan = source.duckdb_scan()
    if table.key and all(k in present for k in table.key):
        surplus, examples = _duplicate_keys(con, source, table, present)
        tally.add((table.name, ", ".join(table.key), "duplicate_key"), surplus, examples)
    if customers is None or table.name == "customers" or "customer_id" not in present:
        return
    customer_id = _sql_typed(table.column("customer_id"), "customer_id", present["customer_id"])
    customers_scan, customer_types = customers
    checks: list[tuple[str, str, str]] = [("customer_id", "orphan_customer", f"t.cid IS NOT NULL AND c.cid IS NULL")]
    for name in present:
        column = table.column(name)
        if not column.not_before_onboarding:
            continue
        value = f"CAST(t.{_quote(name)} AS DATE)"
        if name == "month":  # balances are month-ends: the onboarding month itself is fine
            checks.append((name, "before_onboarding", f"date_trunc('month', {value}) < date_trunc('month', c.onboarding)"))
        else:
            checks.append((name, "before_onboarding", f"{value} < c.onboarding"))
    typed_columns = ", ".join(
        f"{_sql_typed(table.column(n), n, t)} AS {_quote(n)}" for n, t in present.items() if table.column(n).not_before_onboarding
    )
    joined = (
        f"(SELECT {customer_id} AS cid{', ' + typed_columns if typed_columns else ''} FROM {scan}) t "
        f"LEFT JOIN (SELECT {_sql_typed(contract.CUSTOMERS.column('customer_id'), 'customer_id', customer_types['customer_id'])} AS cid, "
        f"min(TRY_CAST(onboarding_date AS DATE)) AS onboarding FROM {customers_scan} GROUP BY 1) c ON t.cid = c.cid"
    )
    counts = con.execute("SELECT " + ", ".join(f"count_if({p})" for _, _, p in checks) + f" FROM {joined}").fetchone()
    for (name, rule, predicate), count in zip(checks, counts):
        if count:
            rows = con.execute(f"SELECT DISTINCT t.cid FROM {joined} WHERE {predicate} LIMIT {EXAMPLES}").fetchall()
            tally.add((table.name, name, rule), count, [r[0] for r in rows])


def _duplicate_keys(
    con: duckdb.DuckDBPyConnection, source: TableSource, table: contract.Table, present: dict[str, str]
) -> tuple[int, list]:
    """Rows beyond the first per key (null keys are `not_null` violations, not duplicates), and example keys.

    A single integer key in parquet files whose min/max statistics do not overlap (ids assigned in order,
    as a bank's posting ids are) can only repeat inside one file, so each file is checked alone: first
    whether its ids strictly increase (a cheap pass that proves uniqueness), otherwise by counting. That
    keeps 300M transaction ids to one streaming pass instead of one 300M-entry hash table.
    """
    keys = ", ".join(_quote(k) for k in table.key)
    not_null = " AND ".join(f"{_quote(k)} IS NOT NULL" for k in table.key)
    files = _files_with_disjoint_keys(con, source, table, present)
    if files is None:
        scans = [source.duckdb_scan()]
    else:
        key = _quote(table.key[0])
        scans = []
        for file in files:
            scan = f"read_parquet('{_sql_text(file)}')"
            (decreasing,) = con.execute(
                f"SELECT count(*) FROM (SELECT {key} AS k, lag({key}) OVER () AS previous FROM (SELECT {key} FROM {scan} WHERE {not_null})) WHERE k <= previous"
            ).fetchone()
            if decreasing:
                scans.append(scan)
    surplus, examples = 0, []
    for scan in scans:
        grouped = f"SELECT {keys}, count(*) AS n FROM {scan} WHERE {not_null} GROUP BY {keys} HAVING n > 1"
        (found,) = con.execute(f"SELECT coalesce(sum(n - 1), 0) FROM ({grouped})").fetchone()
        if found:
            surplus += found
            if len(examples) < EXAMPLES:
                rows = con.execute(f"SELECT {keys} FROM ({grouped}) LIMIT {EXAMPLES}").fetchall()
                examples += [r[0] if len(r) == 1 else tuple(r) for r in rows]
    return int(surplus), examples[:EXAMPLES]


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _files_with_disjoint_keys(
    con: duckdb.DuckDBPyConnection, source: TableSource, table: contract.Table, present: dict[str, str]
) -> list[str] | None:
    """The table's parquet files when its single integer key has non-overlapping min/max per file; else None."""
    if source.format != "parquet" or len(table.key) != 1 or not source.is_folder:
        return None
    key = table.key[0]
    if not _is_native(table.column(key), present[key]) or table.column(key).dtype != "int64":
        return None
    pattern = _sql_text(f"{source.path}/**/*.parquet")
    try:
        ranges = con.execute(
            f"SELECT file_name, min(TRY_CAST(stats_min AS BIGINT)) AS low, max(TRY_CAST(stats_max AS BIGINT)) AS high, "
            f"count_if(stats_min IS NULL OR stats_max IS NULL) AS unknown "
            f"FROM parquet_metadata('{pattern}') WHERE path_in_schema = '{_sql_text(key)}' GROUP BY 1 ORDER BY low"
        ).fetchall()
    except duckdb.Error:
        return None
    if not ranges or any(unknown or low is None for _, low, _, unknown in ranges):
        return None
    for (_, _, previous_high, _), (_, low, _, _) in zip(ranges, ranges[1:]):
        if low <= previous_high:
            return None
    return [file for file, _, _, _ in ranges]


def _data_end(raw_dir: Path, notes: list[str]) -> date | None:
    declared = declared_data_end(raw_dir)
    if declared is not None:
        return declared
    try:
        return resolve_data_end(raw_dir)
    except (ValueError, duckdb.Error) as err:
        notes.append(f"data end unknown, so no date is checked against it ({str(err).splitlines()[0]})")
        return None


def validate_raw(
    raw_dir: Path,
    config: Config,
    *,
    progress: bool = False,
    today: date | None = None,
    pandera_max_rows: int = PANDERA_MAX_ROWS,
) -> ValidationReport:
    """Check every contract table in ``raw_dir`` and report each violated rule with its bad-row count.

    Parameters
    ----------
    raw_dir
        Folder of raw tables (see :mod:`features.raw`).
    config
        Supplies DuckDB threads and memory limit.
    progress
        Show a progress bar per table.
    today
        The date "in the future" is measured from; defaults to the real today.
    pandera_max_rows
        Tables up to this size run pandera per chunk; larger ones run the same rules as a DuckDB pass.
    """

    started = time.perf_counter()
    raw_dir = Path(raw_dir)
    sources = find_tables(raw_dir)
    notes: list[str] = []
    violations: list[Violation] = []
    for name in contract.REQUIRED_TABLES:
        if name not in sources:
            violations.append(Violation(name, "-", "missing_table", 0, (), HINTS["missing_table"]))
    bounds = _Bounds(data_end=_data_end(raw_dir, notes), today=today or date.today())
    if bounds.data_end is not None and bounds.data_end > bounds.today:
        notes.append(f"data end {bounds.data_end} lies after today {bounds.today}")

    tally = _Tally()
    row_counts: dict[str, int] = {}
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {max(1, config.features.duckdb_threads)}")
        con.execute(f"SET memory_limit = '{config.features.duckdb_memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        readable: dict[str, tuple[TableSource, list[str]]] = {}
        for name, source in sources.items():
            table = contract.TABLES[name]
            try:
                described = con.execute(f"DESCRIBE SELECT * FROM {source.duckdb_scan()}").fetchall()
                (row_counts[name],) = con.execute(f"SELECT count(*) FROM {source.duckdb_scan()}").fetchone()
            except duckdb.Error as err:
                violations.append(Violation(name, "-", "unreadable_table", 0, (str(err).splitlines()[0][:120],), HINTS["unreadable_table"]))
                continue
            found = {row[0]: row[1] for row in described}
            for column in table.required_columns:
                if column not in found:
                    violations.append(Violation(name, column, "missing_column", 0, (), HINTS["missing_column"]))
            extra = [c for c in found if c not in table.column_names]
            if extra:
                notes.append(f"{name}: columns not in the contract are ignored: {', '.join(extra)}")
            readable[name] = (source, {c: found[c] for c in table.column_names if c in found})

        customers = None
        if "customers" in readable and {"customer_id", "onboarding_date"} <= set(readable["customers"][1]):
            customers = (readable["customers"][0].duckdb_scan(), readable["customers"][1])
        for name, (source, present) in tqdm(readable.items(), desc="validate", disable=not progress, unit="table"):
            table = contract.TABLES[name]
            if row_counts[name] <= pandera_max_rows:
                _check_columns_with_pandera(table, source, list(present), bounds, tally, progress)
            else:
                _check_columns_with_sql(con, table, source.duckdb_scan(), present, bounds, tally)
            _check_relations(con, table, source, present, customers, tally)
    finally:
        con.close()

    order = {name: i for i, name in enumerate(contract.TABLES)}
    violations += sorted(tally.violations(), key=lambda v: (order[v.table], v.column, v.rule))
    return ValidationReport(
        raw_dir=raw_dir,
        data_end=bounds.data_end,
        tables={name: row_counts[name] for name in contract.TABLES if name in row_counts},
        violations=tuple(violations),
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
    )


def require_valid(raw_dir: Path, config: Config, **options) -> ValidationReport:
    """Validate ``raw_dir`` and raise :class:`RawDataInvalid` (carrying the report) on any violation."""
    report = validate_raw(raw_dir, config, **options)
    if not report.ok:
        raise RawDataInvalid(report)
    return report
