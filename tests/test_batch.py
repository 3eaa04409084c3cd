"""Batch scoring: reconciled, resumable after a crash, identical on Spark; the snapshot is refreshed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from serving.batch import RunMismatch, read_scores, score_base
from serving.runtime.models import save_scoring_models
from serving.runtime.policy import Policy
from serving.runtime.scoring import score_customers
from serving.runtime.snapshot import OnlineFeatureSnapshot
from synthetic import scoring_month, train_tiny_models

# Spark's Python workers must run this interpreter (lightgbm, serving); set before any session starts.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def models():
    return train_tiny_models()


@pytest.fixture(scope="module")
def base():
    return scoring_month(300, seed=5)


def test_local_run_reconciles_summarises_and_refreshes_the_snapshot(models, base, tmp_path):
    summary = score_base(base, models, Policy(), tmp_path / "out", progress=False, snapshot_path=tmp_path / "snap.sqlite")
    assert summary.customers == summary.rows_written == 300
    assert sum(summary.by_segment.values()) == 300 and sum(summary.by_action.values()) == 300
    scores = read_scores(tmp_path / "out")
    direct = score_customers(base, models, Policy(), reasons="actionable").sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(scores, direct)
    assert summary.value_at_risk_by_tier["mass"] == pytest.approx(direct.loc[direct.value_tier == "mass", "value_at_risk"].sum())
    assert (tmp_path / "out" / "_SUCCESS").exists() and not list((tmp_path / "out").glob("_tmp-*"))
    assert OnlineFeatureSnapshot(tmp_path / "snap.sqlite").lookup([1, 2, 10_000])["customer_id"].tolist() == [1, 2]
    rerun = score_base(base, models, Policy(), tmp_path / "out", progress=False)
    assert rerun.partitions_written == 0 and rerun.partitions_skipped == summary.partitions
    with pytest.raises(RunMismatch, match="policy_digest"):
        score_base(base, models, Policy(retention_contact_cost=1.0), tmp_path / "out", progress=False)


def test_month_must_be_named_when_the_table_holds_several(models, base, tmp_path):
    two = pd.concat([base, base.assign(as_of=pd.Timestamp("2025-07-31").as_unit("us"))], ignore_index=True)
    with pytest.raises(ValueError, match="pass as_of"):
        score_base(two, models, Policy(), tmp_path / "x", progress=False)
    assert score_base(two, models, Policy(), tmp_path / "x", as_of="2025-07", progress=False).rows_written == 300


CHILD = """
import sys, time
from pathlib import Path
import pandas as pd
import serving.batch as batch
from serving.runtime.models import load_scoring_models
from serving.runtime.policy import Policy
original = batch._write_partition
def slow_write(*args, **kwargs):
    out = original(*args, **kwargs)
    time.sleep(30)  # the parent kills us here, after the first partition
    return out
batch._write_partition = slow_write
batch.score_base(pd.read_parquet(sys.argv[1]), load_scoring_models(Path(sys.argv[2])), Policy(), Path(sys.argv[3]),
                 partition_by="bucket", buckets=4, progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output_without_partial_files(models, base, tmp_path):
    base.to_parquet(tmp_path / "base.parquet")
    save_scoring_models(models, tmp_path / "models.pkl")
    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "base.parquet"), str(tmp_path / "models.pkl"), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("score_bucket=*")) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert list(out.glob("score_bucket=*")), "the child wrote no partition"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert len(list(out.glob("score_bucket=*"))) == 1 and not (out / "_SUCCESS").exists()
    resumed = score_base(base, models, Policy(), out, partition_by="bucket", buckets=4, progress=False)
    assert resumed.partitions_skipped == 1 and resumed.partitions_written == 3
    fresh = score_base(base, models, Policy(), tmp_path / "fresh", partition_by="bucket", buckets=4, progress=False)
    assert fresh.rows_written == resumed.rows_written == 300
    pd.testing.assert_frame_equal(read_scores(out), read_scores(tmp_path / "fresh"))
    leftovers = [p for p in out.rglob("*") if p.name.startswith(("_tmp-", ".")) or ".tmp-" in p.name]
    assert leftovers == []
    assert json.loads((out / "_manifest.json").read_text())["rows_written"] == 300


@pytest.mark.spark
@pytest.mark.slow
def test_spark_engine_gives_the_local_output(models, base, tmp_path, spark):
    local = score_base(base, models, Policy(), tmp_path / "local", progress=False, reasons="all")
    on_spark = score_base(base, models, Policy(), tmp_path / "spark", progress=False, reasons="all", engine="spark", spark=spark)
    assert on_spark.rows_written == local.rows_written == 300
    pd.testing.assert_frame_equal(read_scores(tmp_path / "spark"), read_scores(tmp_path / "local"))


def test_campaign_job_writes_a_list_and_its_summary_from_scores_and_features(models, base, tmp_path, monkeypatch):
    from custbase.config import Config
    from serving.jobs import campaign

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # not the bento of a demo run in the working folder
    score_base(base, models, Policy(), tmp_path / "scores", progress=False)
    features = tmp_path / "features.parquet"
    base.to_parquet(features)
    config = Config().model_copy(update={"paths": Config().paths.model_copy(update={"mlruns_dir": tmp_path / "mlruns"})})
    path, summary = campaign(config, "retention", budget=20, out=tmp_path / "retention.csv",
                             scores_dir=tmp_path / "scores", features_path=features)
    listed = pd.read_csv(path)
    assert len(listed) == summary.rows and summary.contacts <= 20 and listed["customer_id"].is_unique
    assert listed["reasons"].notna().all() and (listed["offer"] == "retention").all()
    assert path.with_suffix(".summary.json").exists()


def test_a_table_without_balance_columns_is_one_message_naming_them(models, base, tmp_path):
    """Features built from raw data without a balances table lack value_tier: the run says so before any work."""
    with pytest.raises(ValueError, match=r"lacks \d+ column\(s\) the models need: value_tier.*balances table"):
        score_base(base.drop(columns=["value_tier"]), models, Policy(), tmp_path / "scores", as_of=base["as_of"].max())
    assert not (tmp_path / "scores").exists()
