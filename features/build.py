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
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from custbase.config import Config, LabelNames, Labels
from features.contract import check_revenue_names
from features.definitions import (
    CHURN_POPULATION_COLUMN,
    MonthRange,
    features_for,
    label_columns,
    month_end,
    month_index,
    month_range,
    pipeline,
    pipeline_at_months,
)
from features.feature_set import (
    CUSTOMER_MONTH_V1,
    FeatureTableWriter,
    arrow_schema,
    write_feature_table,
)
from features.raw import TableSource, declared_data_start, find_tables, resolve_data_end

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
    source: str | None = None,
    spark_read=None,
) -> BuildSummary:
    """Build the customer-month table of the raw tables in ``raw_dir`` and write it to ``out_path``.

    Parameters
    ----------
    raw_dir
        Folder of contract tables (see :mod:`features.contract`).
    out_path
        The table to write (atomically), with ``custbase`` metadata: with DuckDB a folder of one parquet file per
        as_of month (:class:`features.feature_set.FeatureTableWriter`, so that :func:`append_month` can add
        months), with Spark one parquet file. Read it with :func:`features.feature_set.read_feature_table`.
    start, end
        First and last as_of month (``YYYY-MM``); default (and bounds) the first month with transactions and
        the data's last complete month. Only the months these need are read (history before, label horizon after).
    engine
        ``duckdb`` (embedded) or ``spark``; default ``config.features.engine``.
    validate
        Check the raw tables against the contract first (raises ``features.validate.RawDataInvalid``).
    source
        Where the raw tables came from, recorded in the table's metadata (default: ``raw_dir``); a database read
        staged in a temporary folder gives its URI (:mod:`features.database`).
    spark_read
        With Spark: ``spark_read(spark, name)`` reads raw table ``name`` instead of the folder's file (the
        database through Spark's JDBC source); ``raw_dir`` still says which tables there are and is validated.
    """
    began = time.perf_counter()
    check_revenue_names(config.revenue)
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
    first = _first_data_month(raw_dir, sources)
    months = month_range(config, data_end=data_end, first_data_month=first, start=parse_month(start), end=parse_month(end))
    stages.set_postfix_str(f"{engine}: {month_end(months.start)} .. {month_end(months.end)}")
    stages.update()
    tables = frozenset(sources)
    stats = _TableStats(config.labels)

    def metadata() -> dict:
        return _metadata(config, tables, as_of_min=stats.as_of_min, as_of_max=stats.as_of_max, data_end=data_end,
                         raw_dir=source or str(raw_dir), engine=engine, data_start=month_end(first))

    if engine == "duckdb":
        with FeatureTableWriter(out_path, _schema(config, tables)) as writer:
            _write_duckdb(sources, config, tables, months, writer, stats, progress)
            stages.update()
            stages.set_postfix_str(f"writing {out_path}")
            writer.commit(metadata())
    else:
        from features.spark import run_steps, spark_session

        steps, final = pipeline(config, tables, months)
        table = _conform(run_steps(spark_session(), sources, _months_table(months), steps, final, read=spark_read), tables, config)
        stats.add(table)
        stages.update()
        stages.set_postfix_str(f"writing {out_path}")
        write_feature_table(table, out_path, metadata())
    stages.update()
    stages.close()
    return stats.summary(seconds=time.perf_counter() - began, engine=engine, out_path=Path(out_path))


@dataclass(frozen=True)
class AppendSummary:
    """What one append wrote: the new months' rows, and the earlier months rebuilt because labels matured."""

    path: Path
    added: tuple[str, ...]
    relabeled: tuple[str, ...]
    rows_added: int
    rows_relabeled: int
    seconds: float

    def render(self) -> str:
        if not self.added:
            return f"{self.path} already holds the raw data's last complete month: nothing to append"
        return "\n".join([
            f"appended {', '.join(self.added)} to {self.path}: {self.rows_added:,} rows, {self.seconds:.1f} s",
            f"  labels matured: rebuilt {', '.join(self.relabeled) or 'no month'} ({self.rows_relabeled:,} rows); "
            "every other month kept as it was",
        ])


class AppendError(ValueError):
    """The table cannot take the raw data's new months (missing, another version or layout, other settings)."""


def append_month(raw_dir: Path, table_path: Path, config: Config, *, validate: bool = True,
                 progress: bool = True, source: str | None = None) -> AppendSummary:
    """Add the raw data's months after the table's last one to an all-months table built by DuckDB, and rebuild
    the earlier months whose labels mature with them; every other month's file is kept as it is.

    A month m's features read months up to m and its labels months up to m + h (h: each label's horizon), so
    when the data's last complete month moves from L to L', the rows that change are those of the new months
    and of the months m with L < m + h <= L' for some h (their labels were null, past the data's end). Each is
    built by :func:`features.definitions.pipeline_at_months` in one pass, customer slice by customer slice, so the
    result equals a full rebuild on the same raw data (tested) and only one slice of one month is in memory.
    The new files are published with one manifest replace: a failed or killed run leaves the table as it was.
    Assumes the raw history before the table's data end did not change (else rebuild with ``custbase features``).
    """
    from features.definitions import last_complete_month
    from features.feature_set import FeatureSetMismatch, check_feature_set, read_feature_metadata, read_table_manifest

    began = time.perf_counter()
    table_path, raw_dir = Path(table_path), Path(raw_dir)
    # ``source``: where a staged database read came from (messages and metadata name it, not the temporary folder)
    where, raw_option = (source, "") if source else (raw_dir, f" --raw {raw_dir}")
    rebuild = f"rebuild it with `custbase features{raw_option} --out {table_path}`"
    if not table_path.exists():
        raise AppendError(f"customer-month table {table_path} does not exist: build it first with "
                          f"`custbase features{raw_option} --out {table_path}`")
    if not table_path.is_dir():
        raise AppendError(f"customer-month table {table_path} is a single parquet file (a Spark build, or built before "
                          f"month folders): months can be appended only to a DuckDB table folder; {rebuild}")
    try:
        metadata = read_feature_metadata(table_path)
        check_feature_set(metadata, config.features.feature_set, source=str(table_path), expected_by="the configuration")
    except (FileNotFoundError, FeatureSetMismatch) as err:
        raise AppendError(str(err)) from err
    if metadata.get("labels") != config.labels.model_dump():
        raise AppendError(f"{table_path} was built with other label settings (config.labels) than this configuration's: "
                          f"its labels would not match the appended months'; {rebuild}")
    if validate:
        from features.validate import require_valid

        require_valid(raw_dir, config)
    sources = find_tables(raw_dir)
    tables = frozenset(sources)
    if sorted(tables) != sorted(metadata.get("raw_tables") or []):
        raise AppendError(f"{table_path} was built from raw tables {sorted(metadata.get('raw_tables') or [])}, {where} holds "
                          f"{sorted(tables)}: the columns would differ; {rebuild}")
    data_end = resolve_data_end(raw_dir)
    first = _first_data_month(raw_dir, sources)
    if metadata.get("data_start") and date.fromisoformat(metadata["data_start"]) != month_end(first):
        raise AppendError(f"{table_path} starts its history at {metadata['data_start']}, the raw data in {where} at "
                          f"{month_end(first)}: not the same bank's history; {rebuild}")
    old_last = last_complete_month(date.fromisoformat(metadata["data_end"]))
    table_last = month_index(date.fromisoformat(metadata["as_of_max"]))
    new_last = last_complete_month(data_end)
    if new_last < old_last:
        raise AppendError(f"the raw data in {where} ends at {data_end}, before the table's data end {metadata['data_end']}; "
                          "point --raw at the bank's current extract")
    if table_last < old_last:
        raise AppendError(f"{table_path} was built up to {month_end(table_last)} (--to), not to its data's last month "
                          f"{month_end(old_last)}; {rebuild}")
    if new_last == old_last:
        return AppendSummary(table_path, (), (), 0, 0, time.perf_counter() - began)
    labels = config.labels
    horizons = {labels.churn_future_months, labels.upgrade_horizon_months, labels.clv_horizon_months}
    start = month_index(date.fromisoformat(metadata["as_of_min"]))
    added = list(range(old_last + 1, new_last + 1))
    matured = sorted({m for h in horizons for m in range(old_last - h + 1, new_last - h + 1) if start <= m <= old_last})
    parts = read_table_manifest(table_path)["parts"]
    keep = tuple(month for month in parts if parse_month(month) not in matured)
    stats = _TableStats(labels)
    with FeatureTableWriter(table_path, _schema(config, tables), keep=keep) as writer:
        # one pass over the raw months all of them read
        months = month_range(config, data_end=data_end, first_data_month=first, start=min(matured + added), end=new_last)
        _write_duckdb(sources, config, tables, months, writer, stats, progress, only=tuple(matured + added))
        as_of_min = date.fromisoformat(metadata["as_of_min"])
        writer.commit(_metadata(config, tables, as_of_min=as_of_min, as_of_max=month_end(new_last), data_end=data_end,
                                raw_dir=source or str(raw_dir), engine="duckdb", data_start=month_end(first)))
    rows = stats.rows_by_month
    return AppendSummary(table_path, tuple(f"{month_end(m):%Y-%m}" for m in added), tuple(f"{month_end(m):%Y-%m}" for m in matured),
                         sum(rows.get(month_end(m), 0) for m in added), sum(rows.get(month_end(m), 0) for m in matured),
                         time.perf_counter() - began)


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
    check_revenue_names(config.revenue)
    missing = {"customers", "transactions"} - set(tables)
    if missing:
        raise ValueError(f"tables {sorted(missing)} are required; got {sorted(tables)}")
    present = frozenset(tables)
    stamps = pd.to_datetime(tables["transactions"]["timestamp"])
    if not len(stamps):
        raise ValueError("table transactions has 0 rows: nothing to build features from")
    first = month_index(stamps.min().date())
    months = month_range(config, data_end=data_end, first_data_month=first, start=parse_month(start), end=parse_month(end))
    if engine == "duckdb":
        def register(con) -> None:
            for name, frame in tables.items():
                con.register(f"raw_{name}", frame)

        steps, final = duckdb_pipeline(config, present, months)
        table = _run_duckdb(config, register, _months_table(months), steps, final)
    elif engine == "spark":
        from features.spark import run_steps, spark_session

        steps, final = pipeline(config, present, months)
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


def duckdb_pipeline(config: Config, tables: frozenset[str], months: MonthRange, only: tuple[int, ...] | None = None):
    """The SQL DuckDB runs: one as_of month (or the few months ``only``) as conditional aggregates over its
    look-back (:func:`features.definitions.pipeline_at_months`, a few times faster), every month as windows over
    every month read (:func:`features.definitions.pipeline`). Both give the same rows (tested)."""
    if only is not None or months.start == months.end:
        return pipeline_at_months(config, tables, months, only)
    return pipeline(config, tables, months)


def _scan_views(sources: dict[str, TableSource], ids: tuple[int, int] | None = None):
    """Register each raw table as view ``raw_<name>``; with ``ids = (first, last)`` only those customers' rows."""
    where = f" WHERE CAST(customer_id AS BIGINT) BETWEEN {int(ids[0])} AND {int(ids[1])}" if ids is not None else ""

    def register(con) -> None:
        for name, source in sources.items():
            con.execute(f"CREATE TEMP VIEW raw_{name} AS SELECT * FROM {source.duckdb_scan()}{where}")

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
            con.execute(f"CREATE TEMP {'TABLE' if step.materialize else 'VIEW'} {step.name} AS {step.sql}")
        return con.sql(final).to_arrow_table()
    finally:
        con.close()


def _first_data_month(raw_dir: Path, sources: dict[str, TableSource]) -> int:
    """The month of the first transaction: as the manifest declares it (a staged database read), else as read."""
    declared = declared_data_start(raw_dir)
    return month_index(declared) if declared is not None else _first_data_month_duckdb(sources["transactions"])


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


def _customer_slices(customers: TableSource, r: MonthRange) -> list[tuple[int, int] | None]:
    """Consecutive customer id ranges ``(first, last)`` of about :data:`SPINE_ROWS_PER_PASS` spine rows each
    (``[None]``: one pass over everyone). Every feature and label is a function of one customer's rows, so the
    slices are exact."""
    import duckdb
    import numpy as np

    con = duckdb.connect()
    try:
        ids = con.execute(f"SELECT DISTINCT CAST(customer_id AS BIGINT) AS id FROM {customers.duckdb_scan()} ORDER BY id").fetchnumpy()["id"]
    finally:
        con.close()
    passes = max(1, -(-len(ids) * (r.read_end - r.read_start + 1) // SPINE_ROWS_PER_PASS))
    if passes == 1:
        return [None]
    chunks = [chunk for chunk in np.array_split(np.asarray(ids, dtype="int64"), passes) if len(chunk)]
    return [(int(chunk[0]), int(chunk[-1])) for chunk in chunks]


def _write_duckdb(sources: dict[str, TableSource], config: Config, tables: frozenset[str], months: MonthRange,
                  writer: FeatureTableWriter, stats: "_TableStats", progress: bool, only: tuple[int, ...] | None = None) -> None:
    """Build ``months`` (or the months ``only`` among them) with DuckDB customer slice by customer slice, each
    written as soon as it is built: only one slice is ever in memory, and each month file is sorted by customer."""
    slices = _customer_slices(sources["customers"], months)
    steps, final = duckdb_pipeline(config, tables, months, only)
    for ids in tqdm(slices, desc="customer slices", unit="slice", disable=not progress or len(slices) == 1, leave=False):
        part = _conform(_run_duckdb(config, _scan_views(sources, ids), _months_table(months), steps, final), tables, config)
        writer.write(part)
        stats.add(part)
        del part


def _schema(config: Config, tables: frozenset[str]) -> pa.Schema:
    return arrow_schema([f.name for f in features_for(config, tables)], label_columns(tables, config.labels))


def _months_table(r: MonthRange) -> pa.Table:
    indexes = list(range(r.read_start, r.read_end + 1))
    return pa.table({"month_idx": pa.array(indexes, pa.int64()), "as_of": pa.array([month_end(i) for i in indexes], pa.date32())})


def _conform(table: pa.Table, tables: frozenset[str], config: Config) -> pa.Table:
    """The engine's result with the published column order and types, sorted by customer and as_of."""
    schema = _schema(config, tables)
    return table.select(schema.names).cast(schema).sort_by([("customer_id", "ascending"), ("as_of", "ascending")])


# ------------------------------------------------------------------------------------------------ metadata, summary


def _metadata(config: Config, tables: frozenset[str], *, as_of_min: date | None, as_of_max: date | None, data_end: date,
              raw_dir: str | None, engine: str, data_start: date | None = None) -> dict:
    columns = [f.name for f in features_for(config, tables)]
    return {
        "feature_set": {"name": CUSTOMER_MONTH_V1.name, "version": CUSTOMER_MONTH_V1.version, "columns": columns},
        "categorical_columns": [c for c in CUSTOMER_MONTH_V1.categorical_columns if c in columns],
        "label_columns": list(label_columns(tables, config.labels)),
        "label_names": config.labels.names.model_dump(),
        "labels": config.labels.model_dump(),
        "value_tiers": list(config.value_tiers.names),
        "data_end": data_end.isoformat(),
        # the month end of the raw data's first month: how much history the first as_of months' windows saw
        "data_start": data_start.isoformat() if data_start is not None else None,
        "as_of_min": str(as_of_min) if as_of_min is not None else None,
        "as_of_max": str(as_of_max) if as_of_max is not None else None,
        "raw_dir": raw_dir,
        "raw_tables": sorted(tables),
        "engine": engine,
    }


def summarize(table: pa.Table, *, seconds: float, engine: str, out_path: Path | None, labels: Labels | None = None) -> BuildSummary:
    """Row, customer and label statistics of a built table (label names from ``labels``' horizons)."""
    stats = _TableStats(labels or Labels())
    stats.add(table)
    return stats.summary(seconds=seconds, engine=engine, out_path=out_path)


class _TableStats:
    """The statistics of :class:`BuildSummary`, added up part by part (parts hold disjoint sets of customers)."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.columns: list[str] = []
        self.rows = self.customers = 0
        self.as_of_min: date | None = None
        self.as_of_max: date | None = None
        self.label_sum: dict[str, float] = {}
        self.label_count: dict[str, int] = {}
        self.label_nulls: dict[str, int] = {}
        self.quiet = {"churn population": 0, "lapsing": 0, "dormant": 0}
        self.rows_by_month: dict[date, int] = {}

    def add(self, table: pa.Table) -> None:
        self.columns = table.column_names
        self.rows += len(table)
        if not len(table):
            return
        for row in pc.value_counts(table.column("as_of")).to_pylist():
            self.rows_by_month[row["values"]] = self.rows_by_month.get(row["values"], 0) + row["counts"]
        self.customers += len(pc.unique(table.column("customer_id")))
        as_of = table.column("as_of")
        low, high = pc.min(as_of).as_py(), pc.max(as_of).as_py()
        self.as_of_min = low if self.as_of_min is None else min(self.as_of_min, low)
        self.as_of_max = high if self.as_of_max is None else max(self.as_of_max, high)
        for column in self.labels.names.labels:
            if column in table.column_names:
                values = table.column(column)
                present = pc.drop_null(values)
                self.label_sum[column] = self.label_sum.get(column, 0.0) + float(pc.sum(present).as_py() or 0.0)
                self.label_count[column] = self.label_count.get(column, 0) + len(present)
                self.label_nulls[column] = self.label_nulls.get(column, 0) + values.null_count
        if CHURN_POPULATION_COLUMN in table.column_names:
            quiet = table.column(CHURN_POPULATION_COLUMN).to_numpy(zero_copy_only=False)
            k = self.labels.dormancy_inactive_months
            self.quiet["churn population"] += int((quiet == 0).sum())
            self.quiet["lapsing"] += int(((quiet > 0) & (quiet < k)).sum())
            self.quiet["dormant"] += int((quiet >= k).sum())

    def summary(self, *, seconds: float, engine: str, out_path: Path | None) -> BuildSummary:
        names = self.labels.names
        present = [c for c in names.labels if c in self.columns]

        def mean(column: str) -> float | None:
            count = self.label_count.get(column, 0)
            return self.label_sum[column] / count if count else None

        shares = {}
        if CHURN_POPULATION_COLUMN in self.columns and self.rows:
            k = self.labels.dormancy_inactive_months
            shares = {"churn population": self.quiet["churn population"] / self.rows,
                      f"lapsing (quiet 1..{k - 1} months)": self.quiet["lapsing"] / self.rows,
                      "dormant": self.quiet["dormant"] / self.rows}
        return BuildSummary(
            rows=self.rows,
            customers=self.customers,
            as_of_min=self.as_of_min,
            as_of_max=self.as_of_max,
            feature_count=max(len(self.columns) - 2 - len(present), 0),
            churn_rate=mean(names.churn),
            upgrade_rate=mean(names.upgrade),
            clv_mean=mean(names.clv),
            null_label_share={c: (self.label_nulls.get(c, 0) / self.rows if self.rows else 0.0) for c in present},
            seconds=seconds,
            engine=engine,
            out_path=out_path,
            names=names,
            population_shares=shares,
        )
