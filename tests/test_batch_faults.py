"""The batch job killed (SIGKILL) at random points, feature and snapshot writes included: a rerun gives identical
scores and snapshot and leaves no temporary file behind."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from features.feature_set import remove_stale_temporaries
from serving.batch import read_scores
from serving.runtime.models import save_scoring_models
from synthetic import scoring_month, train_tiny_models

JOB = """
import sys
from pathlib import Path
import pandas as pd
from features.feature_set import write_feature_table
from serving.batch import score_base
from serving.runtime.models import load_scoring_models
from serving.runtime.policy import Policy

work = Path(sys.argv[1])
frame = pd.read_parquet(work / "input.parquet")
write_feature_table(frame, work / "out" / "features.parquet", {"feature_set": "test"})
score_base(work / "out" / "features.parquet", load_scoring_models(work / "models.pkl"), Policy(), work / "out" / "scores",
           partition_by="bucket", buckets=6, chunk_rows=500, reasons="action", progress=False,
           snapshot_path=work / "out" / "online_features.sqlite")
"""


def _run(work: Path, kill_after: float | None = None) -> int:
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(work)], cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert kill_after is not None or proc.returncode == 0, err.decode()[-2000:]
    return proc.returncode


def _snapshot(path: Path) -> pd.DataFrame:
    with sqlite3.connect(path) as con:
        return pd.read_sql("SELECT * FROM customer_features ORDER BY customer_id", con)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith("_tmp-")]


@pytest.mark.slow
def test_killed_batch_job_reruns_to_identical_output_without_leftovers(tmp_path):
    frame = scoring_month(3_000, seed=5)
    models = train_tiny_models(num_trees=10)
    reference, work = tmp_path / "reference", tmp_path / "work"
    for folder in (reference, work):
        folder.mkdir()
        frame.to_parquet(folder / "input.parquet")
        save_scoring_models(models, folder / "models.pkl")
    started = time.monotonic()
    _run(reference)
    took = time.monotonic() - started
    expected = read_scores(reference / "out" / "scores")
    expected_snapshot = _snapshot(reference / "out" / "online_features.sqlite")

    # A writer killed earlier left temporaries beside the feature table and the snapshot (a dead pid).
    (work / "out").mkdir()
    dead = 2**22 + 12_345
    for name in (f".features.parquet.{dead}.tmp", f".online_features.sqlite.tmp-{dead}"):
        (work / "out" / name).write_bytes(b"partial")
    rng = random.Random(13)
    kills = 0
    for _ in range(4):
        if _run(work, kill_after=rng.uniform(0.5, took)) != 0:
            kills += 1
        _run(work)
        assert read_scores(work / "out" / "scores").equals(expected)
        pd.testing.assert_frame_equal(_snapshot(work / "out" / "online_features.sqlite"), expected_snapshot)
        assert _leftovers(work / "out") == []
    assert kills >= 1  # at least one run really died part-way


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "features.parquet"
    dead = tmp_path / f".features.parquet.{2**22 + 7}.tmp"
    live = tmp_path / f".features.parquet.tmp-{os.getppid()}"
    other = tmp_path / ".features.parquet.notes"
    for path in (dead, live, other):
        path.write_text("x")
    assert remove_stale_temporaries(target) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


def test_the_journal_of_a_killed_snapshot_writer_is_removed_with_it(tmp_path):
    """SQLite keeps ``<db>-journal`` beside a database it is writing; a kill leaves both."""
    target = tmp_path / "online_features.sqlite"
    dead = 2**22 + 9
    leftovers = [tmp_path / f".online_features.sqlite.tmp-{dead}", tmp_path / f".online_features.sqlite.tmp-{dead}-journal"]
    for path in leftovers:
        path.write_text("x")
    assert sorted(remove_stale_temporaries(target)) == sorted(leftovers)
    assert not any(path.exists() for path in leftovers)


def test_unwritable_out_is_one_line_before_any_work(tmp_path):
    """An --out that cannot be created (here under a file, which binds even for root) fails at once, naming it."""
    from custbase.config import Config
    from serving.jobs import ServingSetupError, score_plan

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ServingSetupError, match=r"cannot write to .*a-file.* \(--out\)"):
        score_plan(Config(), as_of="2025-06", out=blocker / "scores", raw=tmp_path / "nowhere")
