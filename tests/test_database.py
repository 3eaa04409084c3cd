"""Raw tables read from a real PostgreSQL server (``raw.source``) give the features the same bank's files give.

A throw-away server (tests/postgres_server.py) holds a small simulated bank loaded by
``custbase simulate --to-database``; the password reaches libpq through PGPASSWORD only. Skipped, with one line
naming what is missing, where no server can be started.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from postgres_server import ServerUnavailable, start_server
from typer.testing import CliRunner

from custbase.cli import app
from custbase.config import Config, check_database_uri
from features.build import build_customer_months
from features.database import DatabaseError, DatabaseSource, build_from_database, connect, jdbc_reader, validate_database
from features.feature_set import read_feature_table

CUSTOMERS, MONTHS, LAST_MONTH = 200, 30, "2025-06"  # 30 months from 2023-01: a latest-month build reads 25 of them
WINDOW_START = "2023-06"  # LAST_MONTH less the 24 months of look-back (features.definitions.HISTORY_MONTHS)


@pytest.fixture(scope="module")
def server():
    try:
        running = start_server()
    except ServerUnavailable as err:
        pytest.skip(str(err))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", running.password)
        yield running
    running.stop()


@pytest.fixture(scope="module")
def bank(server, tmp_path_factory) -> Path:
    """The simulated bank as files (``--out``) and in the server's database, by one ``simulate --to-database``."""
    raw = tmp_path_factory.mktemp("db") / "bank"
    result = CliRunner().invoke(app, ["simulate", "--customers", str(CUSTOMERS), "--months", str(MONTHS),
                                      "--out", str(raw), "--to-database", server.uri])
    assert result.exit_code == 0, result.output
    assert "loaded" in result.stdout and server.password not in result.output
    return raw


def _write_config(path: Path, **raw) -> Path:
    path.write_text(yaml.safe_dump({"raw": raw}))
    return path


@pytest.mark.parametrize(("start", "end"), [(None, None), (LAST_MONTH, LAST_MONTH)], ids=["all-months", "latest-month"])
def test_features_from_the_database_equal_features_from_files(server, bank, tmp_path, start, end):
    config = Config()
    from_files = build_customer_months(bank, tmp_path / "files", config, start=start, end=end, progress=False)
    summary, read = build_from_database(DatabaseSource(server.uri), tmp_path / "db", config, start=start, end=end, progress=False)
    (files, files_meta), (db, db_meta) = read_feature_table(from_files.out_path), read_feature_table(summary.out_path)
    assert len(db) == from_files.rows > 0
    pd.testing.assert_frame_equal(db, files)
    assert db_meta["raw_dir"] == server.uri and db_meta["data_start"] == files_meta["data_start"]
    assert db_meta["data_end"] == files_meta["data_end"]
    transactions = pd.read_parquet(bank / "transactions")
    if start is None:
        assert read.months is None and read.rows["transactions"] == len(transactions)
    else:
        # only the months the build reads came over the wire: the 25 months up to LAST_MONTH, not all 30
        low, high = read.months
        assert (low.isoformat(), high.isoformat()) == (WINDOW_START + "-01", LAST_MONTH + "-01")
        stamps = pd.to_datetime(transactions["timestamp"])
        in_window = (stamps >= pd.Timestamp(low)) & (stamps < pd.Timestamp(high) + pd.offsets.MonthBegin(1))
        assert read.rows["transactions"] == int(in_window.sum()) < len(transactions)
        assert read.rows["customers"] == CUSTOMERS


@pytest.mark.spark
def test_spark_reads_the_database_through_jdbc_and_builds_the_files_features(spark, server, bank, tmp_path):
    from features.spark import DEBIAN_JDBC_JAR, JDBC_JAR_ENV, jdbc_jar

    if jdbc_jar() is None:
        pytest.skip(f"no PostgreSQL JDBC driver: apt-get install libpostgresql-jdbc-java ({DEBIAN_JDBC_JAR}) or set {JDBC_JAR_ENV}")
    if "postgresql" not in spark.conf.get("spark.jars", ""):
        pytest.skip("the shared Spark session was started without the PostgreSQL JDBC driver")
    config = Config()
    files = build_customer_months(bank, tmp_path / "files.parquet", config, start=LAST_MONTH, end=LAST_MONTH,
                                  engine="spark", progress=False)
    summary, read = build_from_database(DatabaseSource(server.uri), tmp_path / "db.parquet", config, start=LAST_MONTH,
                                        end=LAST_MONTH, engine="spark", validate=False, progress=False)
    assert "WHERE \"timestamp\" >= '2023-06-01'" in read.queries["transactions"]
    transactions = jdbc_reader(server.uri, read.queries)(spark, "transactions")  # what the build registered
    assert "JDBCRelation" in transactions._jdf.queryExecution().toString()
    assert transactions.count() == read.rows["transactions"]
    (db, meta), (expected, _) = read_feature_table(summary.out_path), read_feature_table(files.out_path)
    assert meta["engine"] == "spark" and meta["raw_dir"] == server.uri
    pd.testing.assert_frame_equal(db, expected, check_exact=False, rtol=1e-9, atol=1e-6)


def test_a_bad_row_in_a_database_table_is_reported_by_table_column_and_count(server, bank, tmp_path, monkeypatch):
    with connect(server.uri) as con, con.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS core CASCADE")
        cur.execute("CREATE SCHEMA core")
        cur.execute("CREATE TABLE core.postings AS SELECT * FROM transactions")
        cur.execute("UPDATE core.postings SET amount = -amount WHERE transaction_id IN (SELECT transaction_id FROM core.postings ORDER BY transaction_id LIMIT 3)")
        cur.execute("UPDATE core.postings SET channel = 'telex' WHERE transaction_id = (SELECT max(transaction_id) FROM core.postings)")
        con.commit()
    source = DatabaseSource(server.uri, tables={"transactions": "core.postings"})
    report, _ = validate_database(source, Config())
    found = {(v.table, v.column, v.rule): v.bad_rows for v in report.violations}
    assert found == {("transactions", "amount", "min_value"): 3, ("transactions", "channel", "category"): 1}
    assert report.render().splitlines()[0].startswith(f"raw data: {server.uri}")

    monkeypatch.chdir(tmp_path)
    config = _write_config(tmp_path / "custbase.yaml", source=server.uri, tables={"transactions": "core.postings"})
    result = CliRunner().invoke(app, ["features", "--config", str(config), "--from", LAST_MONTH, "--to", LAST_MONTH])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert any(line.split()[:3] == ["transactions", "channel", "category"] and "1 row" in line for line in result.stdout.splitlines())
    assert not (tmp_path / "data" / "customer_months.parquet").exists()


def test_the_cli_builds_from_the_database_of_the_configuration(server, bank, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_config(tmp_path / "custbase.yaml", source=server.uri)
    result = CliRunner().invoke(app, ["features", "--from", LAST_MONTH, "--to", LAST_MONTH, "--out", "db.parquet"])
    assert result.exit_code == 0, result.output
    assert f"from {server.uri} (months {WINDOW_START} .. {LAST_MONTH}" in result.stdout
    files = build_customer_months(bank, tmp_path / "files", Config(), start=LAST_MONTH, end=LAST_MONTH, progress=False)
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "db.parquet")[0], read_feature_table(files.out_path)[0])


def test_a_wrong_password_or_missing_table_is_one_line(server, bank, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_config(tmp_path / "custbase.yaml", source=server.uri, tables={"transactions": "core.missing"})
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "has no table core.missing" in result.stderr

    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    _write_config(tmp_path / "custbase.yaml", source=server.uri)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: cannot connect to {server.uri}") and len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------- no server needed


@pytest.mark.parametrize("uri", ["postgresql://bank:s3cret@db.example:5432/core", "postgresql://bank@db.example/core?password=s3cret"])
def test_a_password_in_the_uri_is_refused_before_any_work(tmp_path, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["simulate", "--customers", "10", "--to-database", uri])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --to-database holds a password") and "PGPASSWORD" in line and "s3cret" not in line
    assert list(tmp_path.iterdir()) == []

    _write_config(tmp_path / "custbase.yaml", source=uri)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert "raw.source: the URI holds a password" in line and "~/.pgpass" in line and "s3cret" not in line


def test_the_source_must_be_a_postgresql_uri_and_the_table_names_contract_tables():
    assert check_database_uri("postgresql://bank@db.example:5432/core") == "postgresql://bank@db.example:5432/core"
    with pytest.raises(ValueError, match="must be a postgresql://"):
        check_database_uri("mysql://bank@db.example/core")
    with pytest.raises(ValueError, match="raw.tables maps the tables of a database"):
        Config.model_validate({"raw": {"tables": {"transactions": "core.postings"}}})
    with pytest.raises(DatabaseError, match="raw.tables maps postings, which is not a contract table"):
        DatabaseSource("postgresql://bank@db.example/core", tables={"postings": "core.postings"})


def test_spark_without_the_jdbc_driver_is_told_which_package_to_install(monkeypatch, tmp_path):
    import features.spark

    monkeypatch.setenv(features.spark.JDBC_JAR_ENV, str(tmp_path / "missing.jar"))
    read = jdbc_reader("postgresql://bank@db.example/core", {"customers": "SELECT 1"})
    with pytest.raises(DatabaseError, match="needs the PostgreSQL JDBC driver: apt-get install libpostgresql-jdbc-java"):
        read(None, "customers")


def test_the_jdbc_url_carries_no_password_and_the_properties_take_it_from_the_environment(monkeypatch):
    from features.database import jdbc_url

    monkeypatch.setenv("PGPASSWORD", "s3cret")
    url, properties = jdbc_url("postgresql://bank@db.example:6432/core?sslmode=require")
    assert url == "jdbc:postgresql://db.example:6432/core?sslmode=require"
    assert properties == {"driver": "org.postgresql.Driver", "user": "bank", "password": "s3cret"}


def test_appending_the_new_month_from_the_database_equals_a_full_build(server, bank, tmp_path, monkeypatch):
    """The database as it was a month ago (schema ``until``), an all-months table built from it; then the
    month lands (the full tables) and ``features --append`` adds it, reading only the months it rebuilds."""
    dated = {"balances": "month", "transactions": "timestamp", "interactions": "timestamp", "campaign_contacts": "timestamp",
             "closures": "closed_date", "customers": "onboarding_date"}
    with connect(server.uri) as con, con.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS until CASCADE")
        cur.execute("CREATE SCHEMA until")
        for name, column in dated.items():
            cur.execute(f'CREATE TABLE until.{name} AS SELECT * FROM {name} WHERE "{column}" < DATE \'{LAST_MONTH}-01\'')
        con.commit()
    monkeypatch.chdir(tmp_path)
    _write_config(tmp_path / "custbase.yaml", source=server.uri, tables={name: f"until.{name}" for name in dated})
    built = CliRunner().invoke(app, ["features", "--out", "cm.parquet"])
    assert built.exit_code == 0, built.output
    _write_config(tmp_path / "custbase.yaml", source=server.uri)
    appended = CliRunner().invoke(app, ["features", "--append", "--out", "cm.parquet"])
    assert appended.exit_code == 0, appended.output
    assert f"appended {LAST_MONTH} to cm.parquet" in appended.stdout
    # the window of the months it rebuilds (the 12-month CLV horizon) and their look-back: here the whole 30 months
    assert f"(months 2023-01 .. {LAST_MONTH} of the month tables)" in appended.stdout
    full = build_customer_months(bank, tmp_path / "full", Config(), progress=False)
    (a, a_meta), (b, _) = read_feature_table(tmp_path / "cm.parquet"), read_feature_table(full.out_path)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert a_meta["raw_dir"] == server.uri
    again = CliRunner().invoke(app, ["features", "--append", "--out", "cm.parquet"])
    assert again.exit_code == 0 and "nothing to append" in again.stdout
