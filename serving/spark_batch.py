"""Batch scoring on Spark: :func:`serving.runtime.scoring.score_customers` inside ``mapInPandas``.

The models travel to the executors once, as a broadcast pickle (LightGBM boosters pickle as their model
text), and are rebuilt once per partition; every Arrow batch then goes through the same scoring function as
the local engine and the service. ``bentoml.batch.run_in_spark`` is not used: it does not work with
new-style services.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd

from serving.runtime.models import ScoringModels
from serving.runtime.policy import Policy
from serving.runtime.schema import REASON_COLUMNS, spark_schema
from serving.runtime.scoring import score_customers


def local_spark_session(master: str | None = None):
    """The project's local Spark session (``features.spark.spark_session``), executors on this interpreter."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from features.spark import spark_session

    return spark_session(master)


def score_schema(partition_column: str):
    """Spark schema of the scored rows plus the partition column."""
    return spark_schema(extra_text_columns=(partition_column,))


def _scorer(models_broadcast, policy_json: str, reasons: str, reason_k: int, partition_column: str):
    def score_partition(batches):
        models = pickle.loads(models_broadcast.value)  # once per partition
        policy = Policy.model_validate_json(policy_json)
        for batch in batches:
            scores = score_customers(batch, models, policy, reasons=reasons, reason_k=reason_k)
            scores["as_of"] = pd.to_datetime(scores["as_of"]).dt.date
            for column in REASON_COLUMNS:
                scores[column] = [list(r) for r in scores[column]]
            if partition_column not in scores.columns:
                scores[partition_column] = batch[partition_column].to_numpy()
            yield scores

    return score_partition


def score_partitions_spark(
    frame: pd.DataFrame,
    pending: list[str],
    models: ScoringModels,
    policy: Policy,
    out_dir: Path,
    partition_column: str,
    *,
    reasons: str = "actionable",
    reason_k: int = 3,
    spark=None,
) -> None:
    """Score the ``pending`` partitions of ``frame`` on Spark and move each finished partition into ``out_dir``.

    Spark writes all pending partitions into one temporary folder; each ``<column>=<key>`` folder is then renamed
    into place, so a crash before the renames leaves only the temporary folder (removed on the next run).
    """
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    own_session = spark is None  # stop only a session started here, never a shared one
    spark = spark or local_spark_session()
    tmp = Path(out_dir) / f"_tmp-{uuid.uuid4().hex[:12]}"
    try:
        rows = frame.loc[frame[partition_column].isin(pending)].copy()
        for name in rows.columns:
            if isinstance(rows[name].dtype, pd.CategoricalDtype):
                rows[name] = rows[name].astype("object").where(rows[name].notna(), None)
        rows["as_of"] = pd.to_datetime(rows["as_of"]).dt.date
        partitions = max(1, spark.sparkContext.defaultParallelism)
        source = spark.createDataFrame(rows).repartition(partitions)
        broadcast = spark.sparkContext.broadcast(pickle.dumps(models))
        scored = source.mapInPandas(
            _scorer(broadcast, policy.model_dump_json(), reasons, reason_k, partition_column),
            schema=score_schema(partition_column),
        )
        scored.write.partitionBy(partition_column).mode("overwrite").parquet(str(tmp))
        broadcast.unpersist()
        for key in pending:
            written = tmp / f"{partition_column}={key}"
            if written.exists():
                os.replace(written, Path(out_dir) / f"{partition_column}={key}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own_session:
            spark.stop()
