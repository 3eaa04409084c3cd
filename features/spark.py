"""Apache Spark as the second engine of the customer-month build: the session and the execution.

Spark runs the same SQL steps as DuckDB (:mod:`features.definitions`), transpiled from DuckDB's dialect
with ``sqlglot``. Nothing here defines a feature.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pyarrow as pa

from features.contract import PARTITION_KEY
from features.definitions import Step
from features.raw import TableSource


#: Environment variable naming the PostgreSQL JDBC driver jar (default: Debian's, if installed).
JDBC_JAR_ENV = "CUSTBASE_JDBC_JAR"
#: Where Debian's ``libpostgresql-jdbc-java`` puts the driver.
DEBIAN_JDBC_JAR = Path("/usr/share/java/postgresql.jar")


def jdbc_jar() -> Path | None:
    """The PostgreSQL JDBC driver jar Spark's JDBC source loads: ``$CUSTBASE_JDBC_JAR``, else Debian's; None if absent."""
    named = os.environ.get(JDBC_JAR_ENV)
    jar = Path(named) if named else DEBIAN_JDBC_JAR
    return jar if jar.is_file() else None


def spark_session(master: str | None = None, app_name: str = "custbase"):
    """A Spark session sized for a small machine (reused if one is running).

    ``local[2]`` unless ``master`` or ``CUSTBASE_SPARK_MASTER`` says otherwise; 4 shuffle partitions, UTC
    session time zone, ANSI mode (Spark's default), Arrow transfers, no UI. ``CUSTBASE_SPARK_DRIVER_MEMORY``
    (default 4g) applies when the session starts, and so does the PostgreSQL JDBC driver (:func:`jdbc_jar`).
    """
    from pyspark.sql import SparkSession

    # Python workers (mapInPandas scoring) must run this interpreter, which has lightgbm; not `python3` on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or os.environ.get("CUSTBASE_SPARK_MASTER", "local[2]")
    builder = SparkSession.builder
    if (jar := jdbc_jar()) is not None:
        builder = builder.config("spark.jars", str(jar))
    return (
        builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", os.environ.get("CUSTBASE_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


@cache
def to_spark_sql(sql: str) -> str:
    """One DuckDB-dialect statement in Spark SQL."""
    import sqlglot

    (statement,) = sqlglot.transpile(sql, read="duckdb", write="spark")
    return statement


def read_table(spark, source: TableSource):
    """A raw table as a Spark DataFrame (hive partition column dropped)."""
    path = str(source.path)
    if source.format == "csv":
        return spark.read.csv(path, header=True, inferSchema=True)
    frame = spark.read.parquet(path)
    return frame.drop(PARTITION_KEY) if PARTITION_KEY in frame.columns else frame


def run_steps(spark, sources: dict[str, TableSource], months: pa.Table, steps: list[Step], final: str,
              read: Callable | None = None) -> pa.Table:
    """Register the raw tables and ``months``, run ``steps`` as temp views, and collect ``final`` as Arrow.

    ``read(spark, name)`` gives raw table ``name`` as a DataFrame instead of reading ``sources[name]`` (the
    database's tables through Spark's JDBC source, :func:`features.database.jdbc_reader`).

    Runs with interpreted expressions: the plan has ~150 window expressions, and compiling generated code for
    them cost most of the run (test-size bank on 2 busy cores: 44 s with code generation, 15 s without).
    """
    previous_mode = spark.conf.get("spark.sql.codegen.factoryMode", "FALLBACK")
    spark.conf.set("spark.sql.codegen.factoryMode", "NO_CODEGEN")
    try:
        return _run_steps(spark, sources, months, steps, final, read)
    finally:
        spark.conf.set("spark.sql.codegen.factoryMode", previous_mode)


def _run_steps(spark, sources, months, steps, final, read) -> pa.Table:
    for name, source in sources.items():
        (read(spark, name) if read is not None else read_table(spark, source)).createOrReplaceTempView(f"raw_{name}")
    rows = list(zip(months.column("month_idx").to_pylist(), months.column("as_of").to_pylist()))
    spark.createDataFrame(rows, "month_idx BIGINT, as_of DATE").createOrReplaceTempView("months")
    # One statement with the steps as CTEs: Spark analyses the plan once instead of once per view.
    query = "WITH " + ",\n".join(f"{step.name} AS ({step.sql})" for step in steps) + "\n" + final
    return spark.sql(to_spark_sql(query)).toArrow()
