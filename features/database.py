"""The bank's raw tables read from its PostgreSQL database (``raw.source``), and a raw folder loaded into one.

The second source of raw tables beside a folder (:mod:`features.raw`). It reads through libpq's ADBC driver
(``adbc-driver-postgresql``, the ``database`` extra), which returns Arrow record batches, and *stages* what it
read as a raw folder of parquet files in a temporary directory: one file per contract table and a
``manifest.json`` with the data's end and first month as the whole database has them. Everything after that is
the file path unchanged: the same contract validation (a bad row is reported by table, column and count), the
same customer slices and the same SQL on DuckDB or Spark, so features from the database equal features from the
same bank's files.

What is read:

* the month tables (``balances``, ``transactions``, ``interactions``, ``campaign_contacts``) only for the months
  the build reads (its as_of months, their look-back and their label horizon), with that predicate in the SQL the
  server runs: the latest month of a 36-month bank reads about 16 months of rows, not the tables;
* the per-customer tables (``customers``, ``closures``, ``coverage``) whole;
* only the contract's columns (others are ignored, as in a folder).

Credentials: the URI carries none (:func:`custbase.config.check_database_uri` refuses one); libpq reads the
password from ``PGPASSWORD``, ``~/.pgpass`` or the file ``PGPASSFILE`` names. Messages name the URI, which
therefore holds no secret.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custbase.config import Config, check_database_uri
from features import contract
from features.raw import RawDataError, find_tables, write_manifest

#: Tables with one row per event or month: read only for the months a build reads.
MONTH_TABLES: tuple[str, ...] = ("balances", "transactions", "interactions", "campaign_contacts")
#: Rows per Arrow batch asked of the driver (bounded memory while staging).
BATCH_ROWS = 250_000


class DatabaseError(RawDataError):
    """The database cannot be reached or read, or its tables do not fit the configuration."""


@dataclass(frozen=True)
class DatabaseSource:
    """Where the raw tables live in the bank's database: the URI (no password) and custbase name -> bank table."""

    uri: str
    tables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_database_uri(self.uri, setting="the database URI")
        unknown = sorted(set(self.tables) - set(contract.TABLES))
        if unknown:
            raise DatabaseError(f"raw.tables maps {', '.join(unknown)}, which is not a contract table; "
                                f"the tables are {', '.join(contract.TABLES)}")

    @classmethod
    def from_config(cls, config: Config) -> "DatabaseSource":
        if config.raw.source is None:
            raise DatabaseError("raw.source is not set: the raw tables are read from paths.raw_dir")
        return cls(uri=config.raw.source, tables=dict(config.raw.tables))

    def bank_table(self, name: str) -> str:
        """The bank's (possibly schema-qualified) table name for contract table ``name``, quoted for SQL."""
        return ".".join(_quote(part) for part in self.tables.get(name, name).split("."))


@dataclass(frozen=True)
class StagedRead:
    """What :func:`stage_tables` read: rows per table, and the months of the month tables (None: all rows)."""

    folder: Path
    source: str
    rows: dict[str, int]
    months: tuple[date, date] | None
    data_end: date
    seconds: float
    #: The SELECT each table was read with (Spark's JDBC source runs the same ones).
    queries: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        window = (f"months {self.months[0]:%Y-%m} .. {self.months[1]:%Y-%m} of the month tables" if self.months
                  else "every row")
        lines = [f"read {sum(self.rows.values()):,} rows from {self.source} ({window}) in {self.seconds:.1f} s"]
        lines += [f"  {name:<18} {rows:>14,} row{'s' if rows != 1 else ''}" for name, rows in self.rows.items()]
        return "\n".join(lines)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


@contextlib.contextmanager
def connect(uri: str):
    """An ADBC connection to ``uri`` (closed on exit); a :class:`DatabaseError` naming the URI if it fails."""
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        raise DatabaseError("reading raw tables from a database needs the package adbc-driver-postgresql "
                            "(the `database` extra: `make env`, or `uv sync --extra database`)") from None
    try:
        con = dbapi.connect(check_database_uri(uri, setting="the database URI"))
    except dbapi.Error as err:
        raise DatabaseError(f"cannot connect to {uri}: {_first_line(err)} (the password comes from PGPASSWORD, "
                            "~/.pgpass or PGPASSFILE)") from None
    try:
        yield con
    finally:
        con.close()


def _query(con, sql: str, uri: str) -> list[tuple]:
    import adbc_driver_postgresql.dbapi as dbapi

    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    except dbapi.Error as err:
        con.rollback()
        raise DatabaseError(f"{uri}: {_first_line(err)}") from None


def present_tables(con, source: DatabaseSource) -> dict[str, str]:
    """Contract table name -> quoted bank table, for the tables the database has."""
    found = {}
    for name in contract.TABLES:
        bank = source.bank_table(name)
        ((oid,),) = _query(con, f"SELECT to_regclass({_literal(bank)}) IS NOT NULL", source.uri)
        if oid:
            found[name] = bank
    return found


def _columns(con, table: str, uri: str) -> list[str]:
    import adbc_driver_postgresql.dbapi as dbapi

    try:
        with con.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} LIMIT 0")
            return [d[0] for d in cur.description]
    except dbapi.Error as err:
        con.rollback()
        raise DatabaseError(f"{uri}: {_first_line(err)}") from None


def _as_date(value) -> date | None:
    if value is None:
        return None
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def data_bounds(con, source: DatabaseSource, tables: dict[str, str]) -> tuple[date, date]:
    """(the data's end, the first transaction's day), as :func:`features.raw.resolve_data_end` and the build
    find them in a folder: the latest ``balances.month``, else the month end of the latest transaction."""
    if "transactions" not in tables:
        raise DatabaseError(f"{source.uri} has no table {source.tables.get('transactions', 'transactions')} "
                            "(transactions is required; map the bank's name with raw.tables)")
    ((first, last_txn),) = _query(con, f'SELECT min("timestamp"), max("timestamp") FROM {tables["transactions"]}', source.uri)
    if first is None:
        raise DatabaseError(f"table transactions in {source.uri} has 0 rows: nothing to build features from")
    data_end = None
    if "balances" in tables:
        ((data_end,),) = _query(con, f'SELECT max("month") FROM {tables["balances"]}', source.uri)
    if data_end is None:
        last = _as_date(_parse(last_txn))
        data_end = date(last.year + last.month // 12, last.month % 12 + 1, 1) - timedelta(days=1)
    return _as_date(_parse(data_end)), _as_date(_parse(first))


def _parse(value):
    """Dates stored as text (an extract loaded as is) are read as ISO dates."""
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise DatabaseError(f"cannot tell where the data ends: {value!r} is not an ISO date (store dates as "
                                "date or timestamp columns, or as YYYY-MM-DD text)") from None
    return value


def _write_query(con, sql: str, path: Path, uri: str) -> int:
    """Stream the rows of ``sql`` into the parquet file ``path``; the row count."""
    import adbc_driver_postgresql.dbapi as dbapi

    rows = 0
    try:
        with con.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(64 << 20)})
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            with pq.ParquetWriter(path, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
    except dbapi.Error as err:
        con.rollback()
        raise DatabaseError(f"{uri}: {_first_line(err)}") from None
    return rows


def month_window(config: Config, data_end: date, first: date, start: str | None, end: str | None) -> tuple[date, date] | None:
    """First days of the first and last month a build of as_of months ``start``..``end`` reads; None when it
    reads every month (no ``start`` and no ``end``: the whole history, and validation sees every row)."""
    if start is None and end is None:
        return None
    from features.build import parse_month
    from features.definitions import month_end, month_index, month_range

    r = month_range(config, data_end=data_end, first_data_month=month_index(first), start=parse_month(start), end=parse_month(end))
    return month_end(r.read_start - 1) + timedelta(days=1), month_end(r.read_end - 1) + timedelta(days=1)


def table_query(name: str, bank: str, present: list[str], window: tuple[date, date] | None) -> str:
    """The SELECT that reads contract table ``name`` from the bank's table ``bank`` (whose columns are
    ``present``): the contract's columns, and for a month table only the rows of the months in ``window``."""
    table = contract.TABLES[name]
    sql = f"SELECT {', '.join(_quote(c) for c in table.column_names if c in present)} FROM {bank}"
    if window is not None and name in MONTH_TABLES and table.date_column in present:
        low, high = window
        after = date(high.year + high.month // 12, high.month % 12 + 1, 1)  # the first day after the last month
        column = _quote(table.date_column)
        sql += f" WHERE {column} >= {_literal(low.isoformat())} AND {column} < {_literal(after.isoformat())}"
    return sql


def stage_tables(source: DatabaseSource, folder: Path, config: Config, *, start: str | None = None,
                 end: str | None = None) -> StagedRead:
    """Read the raw tables a build of as_of months ``start``..``end`` needs into the raw folder ``folder``.

    The month tables are read with the build's month window pushed down into the query (``start`` and ``end``
    both None: every row). ``folder/manifest.json`` declares the data's end and first month of the whole
    database, so the build and the validation of the staged rows judge dates as they would on the full tables.
    """
    began = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with connect(source.uri) as con:
        tables = present_tables(con, source)
        data_end, first = data_bounds(con, source, tables)
        window = month_window(config, data_end, first, start, end)
        rows, queries = {}, {}
        for name, bank in tables.items():
            queries[name] = sql = table_query(name, bank, _columns(con, bank, source.uri), window)
            rows[name] = _write_query(con, sql, folder / f"{name}.parquet", source.uri)
    write_manifest(folder, source=source.uri, data_end=data_end, data_start=first.replace(day=1).isoformat())
    return StagedRead(folder=folder, source=source.uri, rows=rows, months=window, data_end=data_end,
                      seconds=time.perf_counter() - began, queries=queries)


@contextlib.contextmanager
def staged(source: DatabaseSource, config: Config, *, start: str | None = None, end: str | None = None) -> Iterator[StagedRead]:
    """:func:`stage_tables` into a temporary folder removed on exit."""
    with tempfile.TemporaryDirectory(prefix="custbase-db-") as folder:
        yield stage_tables(source, Path(folder), config, start=start, end=end)


def _named(report, source: str):
    """The validation report of a staged read, naming the database instead of the temporary folder."""
    from dataclasses import replace

    return replace(report, raw_dir=source)


def validate_database(source: DatabaseSource, config: Config, *, progress: bool = False):
    """Read every row of the database's contract tables and check them as :func:`features.validate.validate_raw`
    checks a folder; returns (the report, what was read)."""
    from features.validate import validate_raw

    with staged(source, config) as read:
        return _named(validate_raw(read.folder, config, progress=progress), source.uri), read


def build_from_database(source: DatabaseSource, out_path: Path, config: Config, *, start: str | None = None,
                        end: str | None = None, engine: str | None = None, validate: bool = True, progress: bool = True):
    """:func:`features.build.build_customer_months` over the database's rows for as_of months ``start``..``end``
    (only the months the build reads); returns (the build summary, what was read). The table's metadata names
    the URI as its source. Raises ``features.validate.RawDataInvalid`` on a violation in what was read.

    With ``engine="spark"`` the rows are validated as read through ADBC, and Spark reads them itself through its
    JDBC source with the same queries (:func:`jdbc_reader`)."""
    from features.build import build_customer_months
    from features.validate import RawDataInvalid

    engine = engine or config.features.engine
    with staged(source, config, start=start, end=end) as read:
        spark_read = jdbc_reader(source.uri, read.queries) if engine == "spark" else None
        try:
            summary = build_customer_months(read.folder, out_path, config, start=start, end=end, engine=engine,
                                            validate=validate, progress=progress, source=source.uri, spark_read=spark_read)
        except RawDataInvalid as err:
            raise RawDataInvalid(_named(err.report, source.uri)) from None
        return summary, read


def jdbc_url(uri: str) -> tuple[str, dict[str, str]]:
    """``postgresql://user@host:port/db?opts`` as Spark's JDBC URL and connection properties. The password is
    ``PGPASSWORD`` when set (JDBC reads no libpq environment), else the driver's own ``~/.pgpass`` lookup."""
    import os
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(check_database_uri(uri, setting="the database URI"))
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    url = f"jdbc:postgresql://{host}{f':{parts.port}' if parts.port else ''}{parts.path or '/'}"
    if parts.query:
        url += f"?{parts.query}"
    properties = {"driver": "org.postgresql.Driver"}
    user = unquote(parts.username) if parts.username else os.environ.get("PGUSER")
    if user:
        properties["user"] = user
    if os.environ.get("PGPASSWORD"):
        properties["password"] = os.environ["PGPASSWORD"]
    return url, properties


def jdbc_reader(uri: str, queries: Mapping[str, str]):
    """``read(spark, name)`` for :func:`features.spark.run_steps`: raw table ``name`` through Spark's JDBC source,
    running ``queries[name]`` on the server (the month predicate included). Raises :class:`DatabaseError` naming
    the missing jar when Spark has no PostgreSQL JDBC driver."""
    url, properties = jdbc_url(uri)

    def read(spark, name: str):
        from features.spark import DEBIAN_JDBC_JAR, JDBC_JAR_ENV, jdbc_jar

        if jdbc_jar() is None:
            raise DatabaseError(f"Spark reads the database through its JDBC source, which needs the PostgreSQL JDBC driver: "
                                f"apt-get install libpostgresql-jdbc-java (puts {DEBIAN_JDBC_JAR}), or set {JDBC_JAR_ENV} "
                                "to the jar; or build with --engine duckdb")
        reader = spark.read.format("jdbc").option("url", url).option("query", queries[name])
        reader = reader.option("preferTimestampNTZ", "true").option("fetchsize", "50000")
        try:
            return reader.options(**properties).load()
        except Exception as err:  # noqa: BLE001 - py4j wraps the JVM's error; its first line says what failed
            text = _first_line(err)
            if "org.postgresql.Driver" in text or "ClassNotFound" in text:
                raise DatabaseError(f"the running Spark session has no PostgreSQL JDBC driver ({text}); it loads "
                                    f"{JDBC_JAR_ENV} or {DEBIAN_JDBC_JAR} when it starts: start a new session") from None
            raise DatabaseError(f"Spark cannot read table {name} from {uri}: {text}") from None

    return read


def append_from_database(source: DatabaseSource, table_path: Path, config: Config, *, validate: bool = True,
                         progress: bool = True):
    """:func:`features.build.append_month` over the database: the new months, and the months whose labels
    mature with them, from only the months those read; returns (the append summary, what was read)."""
    from features.build import AppendError, append_month
    from features.definitions import last_complete_month, month_end, month_index
    from features.feature_set import read_feature_metadata
    from features.validate import RawDataInvalid

    table_path = Path(table_path)
    if not table_path.exists():
        raise AppendError(f"customer-month table {table_path} does not exist: build it first with "
                          f"`custbase features --out {table_path}`")
    try:
        metadata = read_feature_metadata(table_path)
        old_last = last_complete_month(date.fromisoformat(metadata["data_end"]))
        first_as_of = month_index(date.fromisoformat(metadata["as_of_min"]))
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        start = None  # append_month says what is wrong with the table; this reads every row first
    else:
        # the earliest month append_month rebuilds: the first whose longest label horizon passes the old data end
        labels = config.labels
        horizon = max(labels.churn_future_months, labels.upgrade_horizon_months, labels.clv_horizon_months)
        start = f"{month_end(max(first_as_of, old_last - horizon + 1)):%Y-%m}"
    with staged(source, config, start=start) as read:
        try:
            summary = append_month(read.folder, table_path, config, validate=validate, progress=progress, source=source.uri)
        except RawDataInvalid as err:
            raise RawDataInvalid(_named(err.report, source.uri)) from None
        return summary, read


# ------------------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class LoadSummary:
    """What :func:`load_raw_folder` wrote into the database."""

    source: str
    rows: dict[str, int]
    seconds: float

    def render(self) -> str:
        lines = [f"loaded {sum(self.rows.values()):,} rows into {self.source} in {self.seconds:.1f} s"]
        lines += [f"  {name:<18} {rows:>14,} row{'s' if rows != 1 else ''}" for name, rows in self.rows.items()]
        return "\n".join(lines)


def load_raw_folder(raw_dir: Path, source: DatabaseSource) -> LoadSummary:
    """Load the contract tables of the raw folder ``raw_dir`` into the database (tables replaced, COPY through
    ADBC bulk ingestion), with an index on each month table's date column and on every ``customer_id``."""
    import adbc_driver_postgresql.dbapi as dbapi
    import pyarrow.dataset as ds

    began = time.perf_counter()
    sources = find_tables(raw_dir)
    rows = {}
    with connect(source.uri) as con:
        for name, table_source in sources.items():
            table = contract.TABLES[name]
            if table_source.format == "csv":
                data = pa.Table.from_pandas(table_source.read_pandas(), preserve_index=False).to_reader()
            else:  # streamed batch by batch: a 100M-row table never sits in memory
                dataset = ds.dataset(table_source.path, format="parquet",
                                     partitioning="hive" if table_source.is_folder else None)
                data = dataset.scanner(columns=[c for c in dataset.schema.names if c != contract.PARTITION_KEY],
                                       batch_size=BATCH_ROWS).to_reader()
            columns = data.schema.names
            bank = source.tables.get(name, name)
            try:
                with con.cursor() as cur:
                    schema, _, plain = bank.rpartition(".")
                    rows[name] = cur.adbc_ingest(plain, data, mode="replace", db_schema_name=schema or None)
                    for column in ("customer_id", table.date_column if name in MONTH_TABLES else None):
                        if column and column in columns:
                            cur.execute(f"CREATE INDEX ON {source.bank_table(name)} ({_quote(column)})")
                con.commit()
            except dbapi.Error as err:
                con.rollback()
                raise DatabaseError(f"{source.uri}: cannot load table {bank}: {_first_line(err)}") from None
        with con.cursor() as cur:
            for name in rows:
                cur.execute(f"ANALYZE {source.bank_table(name)}")
        con.commit()
    return LoadSummary(source=source.uri, rows=rows, seconds=time.perf_counter() - began)
