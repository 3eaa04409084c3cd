"""Import a bank's own CSV or parquet extracts through a YAML column mapping, without code.

``custbase import csv --mapping MAPPING.yaml --out DIR`` reads each extract named in the mapping, renames
and recodes its columns onto the raw-data contract (:mod:`features.contract`), writes the contract tables
and ``manifest.json`` to DIR, and validates the result. A complete commented example ships as
``features/importers/example_mapping.yaml``.

The format::

    source: ACME retail extract 2024-06      # free text, stored in manifest.json
    data_end: 2024-06-30                     # optional; without it the data's end is inferred
    tables:
      customers:                             # a contract table name
        file: extract/clients.csv            # CSV, parquet file or parquet folder; relative to the YAML
        read: {sep: ";", encoding: latin-1}  # optional pandas.read_csv options (CSV only)
        columns:                             # contract column: how to fill it
          customer_id: {from: CLIENT_NO, id: true}
          birth_date: {from: DOB, format: "%d.%m.%Y"}
          gender: {from: SEX, codes: {M: M, W: F, X: U}}
          region: REGION                     # shorthand for {from: REGION}
          occupation: {value: unknown}       # a constant

Column specs:

``from``
    The source column.
``format``
    strftime format of a date or timestamp (``%d.%m.%Y``, ``%y%m%d``, ``%Y-%m-%d %H:%M``). Without it the
    values must be ISO dates.
``codes``
    Map of source codes to contract categories. A code missing from the map is kept as it is, so
    validation names it (``category`` violation with the code as an example) instead of it vanishing.
``id: true``
    Source identifiers that are not integers (``C-00017``). They are numbered 1..N in the order of the
    customers table, with the same number in every table; ids missing from customers get numbers after N
    so that validation reports them as orphans. The numbering is written to ``DIR/customer_ids.csv``.
``absolute: true``
    Take the absolute value (signed amounts; pair with ``by_sign`` for the direction).
``by_sign: {positive: in, negative: out}``
    Derive a category from the sign of the source number (zero counts as positive).
``scale``
    Multiply numbers (e.g. ``0.01`` for amounts in cents).
``value``
    A constant for every row (no ``from``).
``unknown: true``
    The attribute is not known for anyone: the contract's unknown code (``U`` for gender) or an empty value.

Transactions-only extracts (a purchase log) have no customer table. Then write::

    customers: {derive: transactions}

and one customer per id in the transactions is written, with the date of their first transaction as
``onboarding_date`` and every other attribute unknown.

Values that fail to parse (a date not matching ``format``, text in a number column) are written as text,
so that validation reports them as ``type`` violations with examples. Nothing is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from custbase.config import Config
from features import contract
from features.importers.tables import ImportSummary, write_raw_tables
from features.validate import validate_raw

_SPEC_KEYS = {"from", "format", "codes", "id", "absolute", "by_sign", "scale", "value", "unknown"}
#: Tables the mapping can derive instead of reading: table -> the table it is derived from.
DERIVABLE = {"customers": "transactions"}


class MappingError(ValueError):
    """The mapping file is malformed or names something that does not exist."""


def load_mapping(mapping_path: Path) -> dict:
    """Read and check the mapping file; names every mistake with the table and column it concerns."""
    mapping_path = Path(mapping_path)
    if not mapping_path.exists():
        raise MappingError(f"mapping file {mapping_path} does not exist")
    mapping = yaml.safe_load(mapping_path.read_text()) or {}
    tables = mapping.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise MappingError(f"{mapping_path}: needs a `tables:` section mapping contract tables to files")
    for name, spec in tables.items():
        if name not in contract.TABLES:
            raise MappingError(f"{mapping_path}: unknown table {name!r}; contract tables are {', '.join(contract.TABLES)}")
        if isinstance(spec, dict) and "derive" in spec:
            if DERIVABLE.get(name) != spec["derive"] or set(spec) != {"derive"}:
                allowed = "; ".join(f"{t}: {{derive: {s}}}" for t, s in DERIVABLE.items())
                raise MappingError(f"{mapping_path}: table {name!r} cannot be derived as {spec}; what can be derived: {allowed}")
            if spec["derive"] not in tables:
                raise MappingError(f"{mapping_path}: {name!r} is derived from {spec['derive']!r}, which the mapping does not read")
            continue
        if not isinstance(spec, dict) or "file" not in spec or "columns" not in spec:
            raise MappingError(f"{mapping_path}: table {name!r} needs `file:` and `columns:` (or `derive:`)")
        for column, column_spec in spec["columns"].items():
            if column not in contract.TABLES[name].column_names:
                raise MappingError(
                    f"{mapping_path}: table {name!r} has no contract column {column!r}; "
                    f"its columns are {', '.join(contract.TABLES[name].column_names)}"
                )
            column_spec = _spec(column_spec)
            unknown = set(column_spec) - _SPEC_KEYS
            if unknown:
                raise MappingError(f"{mapping_path}: {name}.{column}: unknown keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
            if sum(k in column_spec for k in ("from", "value", "unknown")) != 1:
                raise MappingError(f"{mapping_path}: {name}.{column}: give exactly one of `from:`, `value:` or `unknown: true`")
            if column_spec.get("unknown") and not contract.TABLES[name].column(column).can_be_unknown:
                raise MappingError(f"{mapping_path}: {name}.{column} cannot be unknown: the contract needs a value for every row")
        missing = [c for c in contract.TABLES[name].required_columns if c not in spec["columns"]]
        if missing:
            unknowable = [c for c in missing if contract.TABLES[name].column(c).can_be_unknown]
            hint = f" ({', '.join(unknowable)} can be declared `{{unknown: true}}`)" if unknowable else ""
            raise MappingError(f"{mapping_path}: table {name!r} maps no source to required column(s) {', '.join(missing)}{hint}")
    return mapping


def _spec(column_spec) -> dict:
    return {"from": column_spec} if isinstance(column_spec, str) else dict(column_spec or {})


def read_extract(path: Path, read_options: dict | None = None) -> pd.DataFrame:
    """One extract as text-valued columns (CSV) or as stored (parquet)."""
    if not path.exists():
        raise MappingError(f"extract {path} does not exist")
    if path.suffix.lower() in (".csv", ".txt", ".tsv", ".asc"):
        return pd.read_csv(path, dtype=str, **(read_options or {}))
    return pd.read_parquet(path)


def map_table(table: contract.Table, extract: pd.DataFrame, columns: dict, source_name: str) -> pd.DataFrame:
    """The contract columns of ``table`` built from ``extract`` by the column specs (ids not yet numbered)."""
    out = {}
    for name, column_spec in columns.items():
        spec = _spec(column_spec)
        if spec.get("unknown"):
            spec = {"value": table.column(name).unknown}
        if "value" in spec:
            out[name] = pd.Series([spec["value"]] * len(extract), index=extract.index, dtype="object")
            continue
        if spec["from"] not in extract.columns:
            raise MappingError(
                f"{source_name}: column {spec['from']!r} (for {table.name}.{name}) not found; "
                f"the extract has {', '.join(map(str, extract.columns))}"
            )
        out[name] = map_values(table.column(name), extract[spec["from"]], spec)
    return pd.DataFrame(out, index=extract.index)


def map_values(column: contract.Column, values: pd.Series, spec: dict) -> pd.Series:
    """Apply one column spec to source values; returns a new Series."""
    if "by_sign" in spec:
        numbers = pd.to_numeric(values, errors="coerce")
        labels = spec["by_sign"]
        return pd.Series(np.where(numbers >= 0, labels["positive"], labels["negative"]), index=values.index).where(numbers.notna(), values)
    if "codes" in spec:
        codes = {str(k): v for k, v in spec["codes"].items()}
        text = values.astype("str").str.strip().where(values.notna())
        # A code missing from the map stays as it is (validation names it); one mapped to null becomes empty.
        return text.map(codes).where(text.isin(list(codes)), text)
    if "format" in spec and column.dtype in ("date", "timestamp"):
        parsed = pd.to_datetime(values, format=spec["format"], errors="coerce")
        return parsed.astype(object).where(parsed.notna(), values) if (parsed.isna() & values.notna()).any() else parsed
    if spec.get("absolute") or "scale" in spec:
        numbers = pd.to_numeric(values, errors="coerce")
        if (numbers.isna() & values.notna()).any():
            return values  # leave text for validation to name
        if spec.get("absolute"):
            numbers = numbers.abs()
        return numbers * float(spec.get("scale", 1.0))
    return values


def number_customer_ids(frames: dict[str, pd.DataFrame], id_tables: set[str]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Replace text customer ids by integers 1..N in customers order; unknown ids get numbers after N.

    Linear in rows: one pass over each table's distinct ids, in first-seen order.
    """
    order = (["customers"] if "customers" in id_tables else []) + sorted(t for t in id_tables if t != "customers")
    seen = pd.concat([pd.Series(pd.unique(frames[name]["customer_id"].dropna())) for name in order if name in frames]
                     or [pd.Series([], dtype="object")], ignore_index=True)
    source_ids = pd.unique(seen)
    numbering = pd.Series(np.arange(1, len(source_ids) + 1, dtype="int64"), index=source_ids)
    numbered = {
        name: frame.assign(customer_id=frame["customer_id"].map(numbering).astype("Int64")) if name in id_tables else frame
        for name, frame in frames.items()
    }
    return numbered, pd.DataFrame({"source_id": source_ids, "customer_id": numbering.to_numpy()})


def customers_from_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """One customer per id of the mapped ``transactions``: onboarding on the first transaction's day, the rest unknown.

    Ids whose timestamps do not parse are still listed (with the earliest parsable day, or none), so that
    validation reports the bad timestamps rather than orphan transactions.
    """
    stamps = pd.to_datetime(transactions["timestamp"], errors="coerce", format="ISO8601") \
        if not pd.api.types.is_datetime64_any_dtype(transactions["timestamp"]) else transactions["timestamp"]
    first = stamps.groupby(transactions["customer_id"], sort=False).min()
    out = pd.DataFrame({"customer_id": first.index, "onboarding_date": first.dt.normalize().to_numpy()})
    for column in contract.CUSTOMERS.columns:
        if column.name not in out.columns and column.required:
            out[column.name] = pd.Series([column.unknown] * len(out), dtype="object")
    return out


def import_mapped(mapping_path: Path, out_dir: Path, config: Config) -> ImportSummary:
    """Import the extracts named in ``mapping_path`` into contract tables in ``out_dir`` and validate them.

    Parameters
    ----------
    mapping_path
        The YAML mapping (format in this module's docstring); extract paths are relative to it.
    out_dir
        Raw folder to write; contract tables already there are replaced.
    config
        Passed to validation.
    """
    mapping_path = Path(mapping_path)
    mapping = load_mapping(mapping_path)
    frames: dict[str, pd.DataFrame] = {}
    id_tables: set[str] = set()
    derived = {name: spec["derive"] for name, spec in mapping["tables"].items() if "derive" in spec}
    for name, spec in mapping["tables"].items():
        if name in derived:
            continue
        path = (mapping_path.parent / spec["file"]).resolve()
        extract = read_extract(path, spec.get("read"))
        frames[name] = map_table(contract.TABLES[name], extract, spec["columns"], str(path))
        del extract
        if _spec(spec["columns"].get("customer_id", {})).get("id"):
            id_tables.add(name)
    notes = []
    for name, source in derived.items():
        frames[name] = customers_from_transactions(frames[source])
        if source in id_tables:
            id_tables.add(name)
        notes.append(f"{name} derived from {source}: {len(frames[name]):,} customers, onboarding = first transaction, "
                     "every other attribute unknown")
    if id_tables:
        frames, numbering = number_customer_ids(frames, id_tables)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        numbering.to_csv(Path(out_dir) / "customer_ids.csv", index=False)
        notes.append(f"customer ids numbered 1..{len(numbering)}; source ids in {Path(out_dir) / 'customer_ids.csv'}")
    data_end = mapping.get("data_end")
    written = write_raw_tables(
        out_dir,
        frames,
        source=str(mapping.get("source") or mapping_path.name),
        data_end=str(data_end) if data_end is not None else None,
    )
    report = validate_raw(Path(out_dir), config)
    return ImportSummary(out_dir=Path(out_dir), source=str(mapping.get("source") or mapping_path), tables=written, report=report, notes=tuple(notes))
