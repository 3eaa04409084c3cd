"""``custbase features --append``: the raw data's new month added to an all-months table equals a full rebuild,
rewrites only the months whose labels matured, and a failed or killed run leaves the table as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from raw_factory import RawBank, make_bank, write_bank
from typer.testing import CliRunner

import features.build
from custbase.cli import app
from features.build import AppendError, append_month, build_customer_months
from features.feature_set import MANIFEST_FILE, read_feature_table, read_table_manifest, write_feature_table

ROOT = Path(__file__).resolve().parents[1]


def _until(bank: RawBank, last_day) -> RawBank:
    """The same bank as its extract looked at ``last_day``: nothing dated after it."""
    dated = {"balances": "month", "transactions": "timestamp", "interactions": "timestamp", "campaign_contacts": "timestamp",
             "closures": "closed_date", "customers": "onboarding_date"}
    after = pd.Timestamp(last_day) + timedelta(days=1)
    return RawBank({name: frame[frame[dated[name]] < after].reset_index(drop=True) for name, frame in bank.tables.items()},
                   last_day)


@pytest.fixture(scope="module")
def raws(tmp_path_factory):
    folder = tmp_path_factory.mktemp("append")
    bank = make_bank(n_customers=40, months=20, seed=11)
    month_before = (pd.Timestamp(bank.data_end) - pd.offsets.MonthEnd(1)).date()
    return write_bank(_until(bank, month_before), folder / "until"), write_bank(bank, folder / "now")


@pytest.fixture()
def table(raws, tmp_path, config):
    """An all-months table built on the extract of the month before the last."""
    return build_customer_months(raws[0], tmp_path / "cm.parquet", config, validate=False, progress=False).out_path


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_appending_the_new_month_equals_a_full_rebuild_and_rewrites_only_matured_months(raws, table, tmp_path, config):
    before = read_table_manifest(table)["parts"]
    summary = append_month(raws[1], table, config, validate=False, progress=False)
    rebuilt = build_customer_months(raws[1], tmp_path / "full.parquet", config, validate=False, progress=False).out_path
    (a, a_meta), (b, b_meta) = read_feature_table(table), read_feature_table(rebuilt)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)  # row for row, column for column
    assert {**a_meta, "raw_dir": None} == {**b_meta, "raw_dir": None}
    last = pd.Timestamp(b["as_of"].max())
    labels = config.labels
    horizons = {labels.churn_future_months, labels.upgrade_horizon_months, labels.clv_horizon_months}
    assert summary.added == (f"{last:%Y-%m}",)
    assert set(summary.relabeled) == {f"{last - pd.offsets.MonthEnd(h):%Y-%m}" for h in horizons}
    assert summary.rows_added == int((b["as_of"] == last).sum())
    after = read_table_manifest(table)["parts"]
    untouched = [m for m in before if m not in summary.relabeled]
    assert untouched and all(after[m] == before[m] for m in untouched)  # the same files, not rewritten
    assert all(after[m] != before[m] for m in summary.relabeled)
    assert sorted(p.name for p in table.iterdir()) == sorted([MANIFEST_FILE, *after.values()])  # superseded files gone
    again = append_month(raws[1], table, config, validate=False, progress=False)
    assert again.added == () and "nothing to append" in again.render()


def test_a_failed_append_leaves_the_table_as_it_was(raws, table, config, monkeypatch):
    before = _listing(table)
    calls = {"n": 0}
    real_run = features.build._run_duckdb

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first customer slice's month files are written
            raise RuntimeError("disk full")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(features.build, "SPINE_ROWS_PER_PASS", 200)
    monkeypatch.setattr(features.build, "_run_duckdb", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        append_month(raws[1], table, config, validate=False, progress=False)
    assert _listing(table) == before  # byte for byte, and no leftover file


def test_a_killed_append_leaves_the_table_as_it_was_and_the_next_run_cleans_up(raws, table, config):
    before = _listing(table)
    expected, _ = read_feature_table(table)
    # killed at the worst moment: every new month file written, the manifest not yet replaced
    script = f"""
import os, signal
import features.feature_set as fs
from custbase.config import Config
from features.build import append_month
real = fs.os.replace
def replace(src, dst):
    if str(dst).endswith({MANIFEST_FILE!r}):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
fs.os.replace = replace
append_month({str(raws[1])!r}, {str(table)!r}, Config(), validate=False, progress=False)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    left = _listing(table)
    assert left[MANIFEST_FILE] == before[MANIFEST_FILE] and set(before) < set(left)  # new files, unnamed: not the table
    pd.testing.assert_frame_equal(read_feature_table(table)[0], expected)
    summary = append_month(raws[1], table, config, validate=False, progress=False)
    assert summary.added
    parts = read_table_manifest(table)["parts"]
    assert sorted(p.name for p in table.iterdir()) == sorted([MANIFEST_FILE, *parts.values()])  # the kill's files removed


def test_append_refuses_a_missing_table_a_single_file_and_another_version(raws, table, tmp_path, config):
    with pytest.raises(AppendError, match="does not exist: build it first"):
        append_month(raws[1], tmp_path / "none.parquet", config, validate=False, progress=False)
    frame, metadata = read_feature_table(table)
    single = write_feature_table(frame, tmp_path / "single.parquet", metadata)
    with pytest.raises(AppendError, match="single parquet file"):
        append_month(raws[1], single, config, validate=False, progress=False)
    manifest = read_table_manifest(table)
    manifest["metadata"]["feature_set"] = {**manifest["metadata"]["feature_set"], "name": "customer_month_v2", "version": 2}
    (table / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(AppendError, match="customer_month_v2"):
        append_month(raws[1], table, config, validate=False, progress=False)


def test_the_cli_appends_and_says_so_in_one_line_when_there_is_nothing_to_do(raws, table, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["features", "--append", "--raw", str(raws[1]), "--out", str(table)])
    assert result.exit_code == 0, result.output
    assert "appended" in result.output and "labels matured" in result.output
    result = runner.invoke(app, ["features", "--append", "--raw", str(raws[1]), "--out", str(table)])
    assert result.exit_code == 0 and "nothing to append" in result.output
    result = runner.invoke(app, ["features", "--append", "--raw", str(raws[1]), "--out", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2 and "does not exist: build it first" in result.output
    assert "Traceback" not in result.output
