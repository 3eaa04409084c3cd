"""Build the point-in-time customer-month table (features and labels) with DuckDB or Spark.

The features and labels are defined once, in :mod:`features.definitions`; this module picks the months to
build, runs the SQL on the chosen engine and writes the table with its metadata
(:func:`features.feature_set.write_feature_table`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from custbase.config import Config, LabelNames, Labels
from features.definitions import (
    CHURN_POPULATION_COLUMN,
    MonthRange,
    features_for,
    label_columns,
    month_end,
    month_index,
    month_range,
    pipeline,
)
from features.feature_set import CUSTOMER_MONTH_V1, arrow_schema, write_feature_table
from features.raw import TableSource, find_tables, resolve_data_end

ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class BuildSummary:
    """What one build wrote. Label rates are means over rows with a label (churn: the churn population only)."""

    rows: int
    customers: int
    as_of_min: date | None
    as_of_max: date | None
    feature_count: int
    churn_rate: float | None
    upgrade_rate: float | None
    clv_mean: float | None
    null_label_share: dict[str, float]
    seconds: float
    engine: str
    out_path: Path | None
    names: LabelNames = Labels().names
    #: Share of customer-month rows in the churn population (not quiet at as_of), lapsing, and dormant.
    population_shares: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.2%}"

        nulls = ", ".join(f"{k} {v:.1%}" for k, v in self.null_label_share.items())
        return "\n".join([
            f"customer-month table: {self.rows:,} rows, {self.customers:,} customers, as_of {self.as_of_min} .. {self.as_of_max}",
            f"  features: {self.feature_count} columns ({CUSTOMER_MONTH_V1.name} v{CUSTOMER_MONTH_V1.version}), engine {self.engine}, "
            f"{self.seconds:.1f} s",
            f"  labels: {self.names.churn} {pct(self.churn_rate)} (churn population), {self.names.upgrade} {pct(self.upgrade_rate)}, "
            f"mean {self.names.clv} {'n/a' if self.clv_mean is None else f'{self.clv_mean:,.0f}'}",
            *([("  rows by status at as_of: " + ", ".join(f"{k} {v:.1%}" for k, v in self.population_shares.items()))]
              if self.population_shares else []),
            f"  label null (horizon past the data's end or a customer's coverage end; churn also outside its population): {nulls}",
            *([f"  written to {self.out_path}"] if self.out_path else []),
        ])


def parse_month(text: str | None) -> int | None:
    """``YYYY-MM`` (or a ``YYYY-MM-DD`` date) as a month index; None stays None."""
    if text is None:
        return None
    try:
        year, month = (int(part) for part in str(text).split("-")[:2])
        return month_index(date(year, month, 1))
    except ValueError as err:
        raise ValueError(f"month {text!r} is not YYYY-MM") from err


def build_customer_months(
    raw_dir: Path,
    out_path: Path,
    config: Config,
    *,
    start: str | None = None,
    end: str | None = None,
    engine: str | None = None,
    validate: bool = True,
    progress: bool = True,
) -> BuildSummary:
    """Build the customer-month table of the raw tables in ``raw_dir`` and write it to ``out_path``.

    Parameters
    ----------
    raw_dir
        Folder of contract tables (see :mod:`features.contract`).
    out_path
        Parquet file to write (atomically), with ``custbase`` metadata.
    start, end
        First and last as_of month (``YYYY-MM``); default (and bounds) the first month with transactions and
        the data's last complete month. Only the months these need are read (history before, label horizon after).
    engine
        ``duckdb`` (embedded) or ``spark``; default ``config.features.engine``.
    validate
        Check the raw tables against the contract first (raises ``features.validate.RawDataInvalid``).
    """
    began = time.perf_counter()
    engine = engine or config.features.engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    stages = tqdm(total=4, desc="features", unit="step", disable=not progress)
    raw_dir = Path(raw_dir)
    if validate:
        from features.validate import require_valid

        stages.set_postfix_str("validating raw tables")
        require_valid(raw_dir, config)
    stages.update()
    sources = find_tables(raw_dir)
    data_end = resolve_data_end(raw_dir)
    first = _first_data_month_duckdb(sources["transactions"])
    months = month_range(config, data_end=data_end, first_data_month=first, start=parse_month(start), end=parse_month(end))
    stages.set_postfix_str(f"{engine}: {month_end(months.start)} .. {month_end(months.end)}")
    stages.update()
    if engine == "duckdb":
        passes = _passes(sources["customers"], months)
        parts = []
        for bucket in tqdm(range(passes), desc="customer slices", unit="slice", disable=not progress or passes == 1, leave=False):
            steps, final = pipeline(config, frozenset(sources), months, bucket=(bucket, passes))
            parts.append(_run_duckdb(config, _scan_views(sources), _months_table(months), steps, final))
        table = pa.concat_tables([_conform(part, frozenset(sources), config) for part in parts])
    else:
        from features.spark import run_steps, spark_session

        steps, final = pipeline(config, frozenset(sources), months)
        table = run_steps(spark_session(), sources, _months_table(months), steps, final)
    table = _conform(table, frozenset(sources), config)
    stages.update()
    stages.set_postfix_str(f"writing {out_path}")
    metadata = table_metadata(table, config, data_end=data_end, raw_dir=str(raw_dir), engine=engine, tables=frozenset(sources))
    write_feature_table(table, out_path, metadata)
    stages.update()
    stages.close()
    return summarize(table, seconds=time.perf_counter() - began, engine=engine, out_path=Path(out_path), labels=config.labels)


def build_customer_months_frame(
    tables: dict[str, pd.DataFrame],
    config: Config,
    *,
    data_end: date,
    start: str | None = None,
    end: str | None = None,
    engine: str = "duckdb",
) -> pd.DataFrame:
    """The customer-month table of in-memory raw tables (tests, serving), as a DataFrame.

    ``tables`` maps contract table names to frames (``customers`` and ``transactions`` required);
    ``data_end`` is the last day the data covers. The frames are not changed. Same SQL as the file build.
    """
    missing = {"customers", "transactions"} - set(tables)
    if missing:
        raise ValueError(f"tables {sorted(missing)} are required; got {sorted(tables)}")
    present = frozenset(tables)
    stamps = pd.to_datetime(tables["transactions"]["timestamp"])
    if not len(stamps):
        raise ValueError("table transactions has 0 rows: nothing to build features from")
    first = month_index(stamps.min().date())
    months = month_range(config, data_end=data_end, first_data_month=first, start=parse_month(start), end=parse_month(end))
    steps, final = pipeline(config, present, months)
    if engine == "duckdb":
        def register(con) -> None:
            for name, frame in tables.items():
                con.register(f"raw_{name}", frame)

        table = _run_duckdb(config, register, _months_table(months), steps, final)
    elif engine == "spark":
        from features.spark import run_steps, spark_session

        with tempfile.TemporaryDirectory(prefix="custbase-raw-") as folder:
            sources = {}
            for name, frame in tables.items():
                path = Path(folder) / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                sources[name] = TableSource(name=name, path=path, format="parquet")
            table = run_steps(spark_session(), sources, _months_table(months), steps, final)
    else:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    frame = _conform(table, present, config).to_pandas()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame


# ------------------------------------------------------------------------------------------------ engines


def _scan_views(sources: dict[str, TableSource]):
    def register(con) -> None:
        for name, source in sources.items():
            con.execute(f"CREATE TEMP VIEW raw_{name} AS SELECT * FROM {source.duckdb_scan()}")

    return register


def _run_duckdb(config: Config, register, months: pa.Table, steps, final: str) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {int(config.features.duckdb_threads)}")
        con.execute(f"SET memory_limit = '{config.features.duckdb_memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        register(con)
        con.register("months", months)
        for step in steps:
            con.execute(f"CREATE TEMP VIEW {step.name} AS {step.sql}")
        return con.sql(final).to_arrow_table()
    finally:
        con.close()


def _first_data_month_duckdb(transactions: TableSource) -> int:
    import duckdb

    con = duckdb.connect()
    try:
        (first,) = con.execute(f'SELECT min(CAST("timestamp" AS TIMESTAMP)) FROM {transactions.duckdb_scan()}').fetchone()
    finally:
        con.close()
    if first is None:
        raise ValueError(f"table transactions at {transactions.path} has 0 rows: nothing to build features from")
    return month_index(first.date() if hasattr(first, "date") else first)


#: DuckDB builds customers in slices of about this many customer-months of spine (read months x customers),
#: so peak memory stays near what 100k customers x 25 months need (about 4 GB).
SPINE_ROWS_PER_PASS = 2_500_000


def _passes(customers: TableSource, r: MonthRange) -> int:
    import duckdb

    con = duckdb.connect()
    try:
        (count,) = con.execute(f"SELECT count(*) FROM {customers.duckdb_scan()}").fetchone()
    finally:
        con.close()
    return max(1, -(-count * (r.read_end - r.read_start + 1) // SPINE_ROWS_PER_PASS))


def _months_table(r: MonthRange) -> pa.Table:
    indexes = list(range(r.read_start, r.read_end + 1))
    return pa.table({"month_idx": pa.array(indexes, pa.int64()), "as_of": pa.array([month_end(i) for i in indexes], pa.date32())})


def _conform(table: pa.Table, tables: frozenset[str], config: Config) -> pa.Table:
    """The engine's result with the published column order and types, sorted by customer and as_of."""
    columns = [f.name for f in features_for(config, tables)]
    schema = arrow_schema(columns, label_columns(tables, config.labels))
    return table.select(schema.names).cast(schema).sort_by([("customer_id", "ascending"), ("as_of", "ascending")])


# ------------------------------------------------------------------------------------------------ metadata, summary


def table_metadata(table: pa.Table, config: Config, *, data_end: date, raw_dir: str | None, engine: str,
                   tables: frozenset[str]) -> dict:
    """The ``custbase`` parquet metadata of a customer-month table (see the interface brief)."""
    columns = [f.name for f in features_for(config, tables)]
    as_of = table.column("as_of")
    return {
        "feature_set": {"name": CUSTOMER_MONTH_V1.name, "version": CUSTOMER_MONTH_V1.version, "columns": columns},
        "categorical_columns": [c for c in CUSTOMER_MONTH_V1.categorical_columns if c in columns],
        "label_columns": list(label_columns(tables, config.labels)),
        "label_names": config.labels.names.model_dump(),
        "labels": config.labels.model_dump(),
        "value_tiers": list(config.value_tiers.names),
        "data_end": data_end.isoformat(),
        "as_of_min": str(pc.min(as_of).as_py()) if len(table) else None,
        "as_of_max": str(pc.max(as_of).as_py()) if len(table) else None,
        "raw_dir": raw_dir,
        "raw_tables": sorted(tables),
        "engine": engine,
    }


def summarize(table: pa.Table, *, seconds: float, engine: str, out_path: Path | None, labels: Labels | None = None) -> BuildSummary:
    """Row, customer and label statistics of a built table (label names from ``labels``' horizons)."""
    labels = labels or Labels()
    names = labels.names

    def mean(column: str) -> float | None:
        if column not in table.column_names:
            return None
        values = pc.drop_null(table.column(column))
        return float(pc.mean(values).as_py()) if len(values) else None

    present = [c for c in names.labels if c in table.column_names]
    shares = {}
    if CHURN_POPULATION_COLUMN in table.column_names and len(table):
        quiet = table.column(CHURN_POPULATION_COLUMN).to_numpy(zero_copy_only=False)
        k = labels.dormancy_inactive_months
        shares = {"churn population": float((quiet == 0).mean()), f"lapsing (quiet 1..{k - 1} months)": float(((quiet > 0) & (quiet < k)).mean()),
                  "dormant": float((quiet >= k).mean())}
    as_of = table.column("as_of")
    return BuildSummary(
        rows=len(table),
        customers=len(pc.unique(table.column("customer_id"))),
        as_of_min=pc.min(as_of).as_py() if len(table) else None,
        as_of_max=pc.max(as_of).as_py() if len(table) else None,
        feature_count=len(table.column_names) - 2 - len(present),
        churn_rate=mean(names.churn),
        upgrade_rate=mean(names.upgrade),
        clv_mean=mean(names.clv),
        null_label_share={c: (table.column(c).null_count / len(table) if len(table) else 0.0) for c in present},
        seconds=seconds,
        engine=engine,
        out_path=out_path,
        names=names,
        population_shares=shares,
    )
