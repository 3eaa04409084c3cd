"""All-months builds are written customer slice by customer slice: never the whole table in memory, same file."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from raw_factory import make_bank, write_bank

import features.build
from features.build import build_customer_months, summarize
from features.feature_set import feature_table_files, read_feature_table


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_bank(make_bank(n_customers=14, months=12, seed=7), tmp_path_factory.mktemp("slices") / "raw")


def test_sliced_build_writes_each_slice_as_it_comes_and_equals_one_pass(raw, tmp_path, config, monkeypatch):
    one = build_customer_months(raw, tmp_path / "one.parquet", config, validate=False, progress=False)
    written: list[int] = []
    real_write = features.build.FeatureTableWriter.write

    def write(self, table):
        written.append(len(table))
        real_write(self, table)

    monkeypatch.setattr(features.build.FeatureTableWriter, "write", write)
    monkeypatch.setattr(features.build, "SPINE_ROWS_PER_PASS", 50)  # a few customers per slice
    sliced = build_customer_months(raw, tmp_path / "sliced.parquet", config, validate=False, progress=False)
    assert len(written) >= 3 and max(written) < sliced.rows == sum(written) == one.rows
    (a, a_meta), (b, b_meta) = read_feature_table(sliced.out_path), read_feature_table(one.out_path)
    files = feature_table_files(sliced.out_path)  # one file per month, one row group per slice in it
    assert len(files) == a["as_of"].nunique() and pq.ParquetFile(files[-1]).metadata.num_row_groups >= 3
    pd.testing.assert_frame_equal(a, b)
    assert a_meta == b_meta
    assert a["customer_id"].is_monotonic_increasing  # id-range slices keep the file sorted
    whole = summarize(pq.read_table([str(f) for f in feature_table_files(one.out_path)]), seconds=0.0, engine="duckdb", out_path=None, labels=config.labels)
    for field in ("rows", "customers", "as_of_min", "as_of_max", "feature_count", "null_label_share", "population_shares"):
        assert getattr(sliced, field) == getattr(whole, field), field
    for field in ("churn_rate", "upgrade_rate", "clv_mean"):
        expected = getattr(whole, field)
        assert getattr(sliced, field) == (expected if expected is None else pytest.approx(expected, rel=1e-12)), field


def test_a_failed_slice_leaves_neither_a_table_nor_a_temporary(raw, tmp_path, config, monkeypatch):
    calls = {"n": 0}
    real_run = features.build._run_duckdb

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(features.build, "SPINE_ROWS_PER_PASS", 50)
    monkeypatch.setattr(features.build, "_run_duckdb", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        build_customer_months(raw, tmp_path / "cm.parquet", config, validate=False, progress=False)
    assert list(tmp_path.iterdir()) == []
