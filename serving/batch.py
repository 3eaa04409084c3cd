"""Batch scoring of the whole customer base for one month: partitioned, atomic, resumable, reconciled.

Layout of ``out_dir`` (hive-style, readable by pandas, pyarrow, DuckDB and Spark):

    _run.json                         what this run scores (as_of, model versions, policy, partitioning)
    value_tier=mass/part-00000.parquet
    value_tier=affluent/...           one folder per partition, renamed into place only when complete
    _manifest.json, _SUCCESS          written last, after the counts reconcile

Each partition is scored and written under ``_tmp-<id>/`` and moved into place with ``os.replace``, so a
crash leaves no partial partition; a rerun with the same inputs skips the finished partitions (and removes
the leftovers of the crashed run). The partition column lives in the folder name, not in the files, as
Spark writes it; :func:`read_scores` puts it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from features.feature_set import read_feature_table
from serving.runtime.models import ScoringModels
from serving.runtime.policy import Policy
from serving.runtime.schema import REASON_COLUMNS, SCORE_COLUMNS, arrow_schema
from serving.runtime.scoring import IDENTITY_COLUMNS, ReasonMode, _reason_mode, input_columns, score_customers
from serving.runtime.snapshot import write_snapshot

PartitionBy = Literal["value_tier", "bucket"]
Engine = Literal["local", "spark"]
RUN_FILE = "_run.json"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
BUCKET_COLUMN = "score_bucket"
PART_FILE = "part-00000.parquet"

#: Arrow schema of a score file (before the partition column is dropped).
SCORE_SCHEMA = arrow_schema()


class ReconciliationError(RuntimeError):
    """Rows written differ from active customers in."""


class RunMismatch(RuntimeError):
    """``out_dir`` holds a different run (other month, models, policy or partitioning)."""


@dataclass(frozen=True)
class BatchSummary:
    """What one batch run scored and wrote."""

    as_of: str
    out_dir: str
    engine: str
    reasons: str
    customers: int
    rows_written: int
    partitions: int
    partitions_written: int
    partitions_skipped: int
    seconds: float
    by_segment: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)
    value_at_risk_by_tier: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    snapshot_path: str | None = None

    @property
    def rows_per_second(self) -> float:
        scored = self.rows_written if self.partitions_skipped == 0 else float("nan")
        return scored / self.seconds if self.seconds > 0 else float("nan")

    def render(self) -> str:
        lines = [
            f"scored {self.customers:,} active customers at {self.as_of} ({self.engine}, reasons={self.reasons}) "
            f"in {self.seconds:.1f} s -> {self.out_dir}",
            f"  rows written {self.rows_written:,} = customers in {self.customers:,} (reconciled); partitions "
            f"{self.partitions} ({self.partitions_written} written, {self.partitions_skipped} already complete)",
            "  models: " + ", ".join(f"{k} v{v}" for k, v in self.model_versions.items()),
            "  customers per segment:",
            *(f"    {k:<22} {v:>10,}" for k, v in self.by_segment.items()),
            "  customers per recommended action:",
            *(f"    {k:<22} {v:>10,}" for k, v in self.by_action.items()),
            "  value at risk by value tier:",
            *(f"    {k:<22} {v:>14,.0f}" for k, v in self.value_at_risk_by_tier.items()),
        ]
        if self.snapshot_path:
            lines.append(f"  online feature snapshot refreshed: {self.snapshot_path}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- helpers


def _month_end(as_of) -> pd.Timestamp:
    stamp = pd.Timestamp(str(as_of)) if not isinstance(as_of, pd.Timestamp) else as_of
    return (stamp + pd.offsets.MonthEnd(0)).normalize()


def select_month(features: pd.DataFrame, as_of=None) -> pd.DataFrame:
    """The rows of one month end: ``as_of`` (any date in the month), or the only month present."""
    months = pd.to_datetime(features["as_of"]).dt.normalize()
    if as_of is None:
        present = months.unique()
        if len(present) != 1:
            raise ValueError(
                f"the feature frame holds {len(present)} as_of months ({', '.join(str(m.date()) for m in sorted(present)[:5])} ...): "
                "pass as_of (YYYY-MM) to say which month to score"
            )
        return features
    target = _month_end(as_of)
    rows = features.loc[(months == target).to_numpy()]
    if rows.empty:
        raise ValueError(f"the feature frame has no rows at as_of {target.date()}: build features for that month first")
    return rows


def partition_keys(frame: pd.DataFrame, partition_by: PartitionBy, buckets: int) -> pd.Series:
    """The partition of each row: its value tier, or a stable hash bucket of customer_id ("00".."NN")."""
    if partition_by == "value_tier":
        tiers = frame["value_tier"].astype("object")
        if tiers.isna().any():
            raise ValueError(f"{int(tiers.isna().sum())} rows have no value_tier; partition by bucket or fix the features")
        return tiers.astype("str").rename("value_tier")
    if partition_by == "bucket":
        ids = frame["customer_id"].to_numpy(dtype="uint64")
        # Knuth's multiplicative hash: stable across runs and machines, unlike Python's hash().
        bucket = ((ids * np.uint64(2654435761)) % np.uint64(2**32)) % np.uint64(buckets)
        width = len(str(buckets - 1))
        return pd.Series([str(b).zfill(width) for b in bucket.tolist()], index=frame.index, dtype="str", name=BUCKET_COLUMN)
    raise ValueError(f"partition_by must be 'value_tier' or 'bucket', got {partition_by!r}")


def _partition_dir(out_dir: Path, column: str, key: str) -> Path:
    return out_dir / f"{column}={key}"


def _rows_in(folder: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


def to_arrow(scores: pd.DataFrame, drop: str | None = None) -> pa.Table:
    """A score frame as an Arrow table with :data:`SCORE_SCHEMA` (minus the ``drop`` partition column)."""
    frame = scores.loc[:, list(SCORE_COLUMNS)].assign(as_of=pd.to_datetime(scores["as_of"]).dt.date)
    for column in REASON_COLUMNS:
        frame[column] = [list(r) for r in frame[column]]
    table = pa.Table.from_pandas(frame, schema=SCORE_SCHEMA, preserve_index=False)
    return table.drop_columns([drop]) if drop and drop in table.column_names else table


def _write_partition(scores: pd.DataFrame, out_dir: Path, column: str, key: str) -> Path:
    """Write one partition to a temporary folder and rename it into place (atomic on one filesystem)."""
    tmp = out_dir / f"_tmp-{uuid.uuid4().hex[:12]}" / f"{column}={key}"
    tmp.mkdir(parents=True)
    pq.write_table(to_arrow(scores, drop=column), tmp / PART_FILE)
    final = _partition_dir(out_dir, column, key)
    os.replace(tmp, final)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return final


def read_scores(out_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a batch output back as one frame in :data:`SCORE_COLUMNS` order, sorted by customer_id."""
    out_dir = Path(out_dir)
    run = json.loads((out_dir / RUN_FILE).read_text())
    column = run["partition_column"]
    dataset = ds.dataset(out_dir, format="parquet", partitioning=ds.partitioning(pa.schema([(column, pa.string())]), flavor="hive"))
    wanted = [c for c in (columns or SCORE_COLUMNS)]
    table = dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names])
    frame = table.to_pandas()
    if "as_of" in frame.columns:
        frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    for name in REASON_COLUMNS:
        if name in frame.columns:
            frame[name] = [list(r) if r is not None else [] for r in frame[name]]
    frame = frame.loc[:, [c for c in wanted if c in frame.columns]]
    if "customer_id" in frame.columns:
        frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    return frame


def _run_spec(frame: pd.DataFrame, as_of: pd.Timestamp, models: ScoringModels, policy: Policy, partition_column: str,
              buckets: int, reasons: str, counts: dict[str, int]) -> dict:
    ids = frame["customer_id"].to_numpy(dtype="int64")
    return {
        "as_of": str(as_of.date()),
        "customers": int(len(frame)),
        "customer_id_digest": hashlib.sha256(np.sort(ids).tobytes()).hexdigest()[:16],
        "model_versions": models.versions(),
        "model_uris": models.uris(),
        "policy_digest": hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16],
        "partition_column": partition_column,
        "buckets": buckets if partition_column == BUCKET_COLUMN else None,
        "reasons": reasons,
        "partition_rows": counts,
    }


def _start_run(out_dir: Path, spec: dict) -> None:
    """Record the run, or check that ``out_dir`` holds the same run (then it resumes); clear crash leftovers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        differs = sorted(k for k in spec if previous.get(k) != spec[k])
        if differs:
            raise RunMismatch(
                f"{out_dir} holds another scoring run (differs in {', '.join(differs)}); score into a new --out "
                "folder or delete this one"
            )
    else:
        tmp = out_dir / f".{RUN_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(spec, indent=2))
        os.replace(tmp, run_file)
    for leftover in out_dir.glob("_tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for name in (MANIFEST_FILE, SUCCESS_FILE):
        (out_dir / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- the job


def score_base(
    features: pd.DataFrame | Path,
    models: ScoringModels,
    policy: Policy,
    out_dir: Path,
    *,
    as_of=None,
    partition_by: PartitionBy = "value_tier",
    buckets: int = 16,
    reasons: bool | ReasonMode = "actionable",
    reason_k: int = 3,
    progress: bool = True,
    engine: Engine = "local",
    chunk_rows: int = 20_000,
    snapshot_path: Path | None = None,
    spark=None,
    uplift=None,
    num_threads: int = 0,
) -> BatchSummary:
    """Score every active customer at ``as_of`` and write partitioned parquet to ``out_dir``.

    Parameters
    ----------
    features
        The customer-month table (frame or parquet path): one row per active customer at ``as_of``.
    models, policy
        As for :func:`serving.runtime.scoring.score_customers`, which does the scoring on both engines.
    out_dir
        Output folder (see the module docstring). Rerunning into the same folder resumes.
    as_of
        Month to score (``"YYYY-MM"`` or a date); the only month in ``features`` when None.
    partition_by
        ``value_tier`` (one partition per tier) or ``bucket`` (``buckets`` hash buckets of customer_id).
    reasons
        ``"actionable"`` (default: all three models' reasons for customers with an action), ``"action"`` (only the
        model behind the action: a third of the cost), ``"all"`` or ``"none"``.
    engine
        ``local`` (pandas, in chunks of ``chunk_rows``) or ``spark`` (``mapInPandas``; ``spark`` is an optional
        existing session).
    snapshot_path
        The online feature snapshot to refresh once the run succeeds; not refreshed when None.
    uplift
        Offer -> uplift function of a feature frame (:func:`serving.runtime.scoring.score_customers`), local engine only;
        without it the offer columns use the policy's rule of thumb.
    num_threads
        LightGBM threads of the local engine (0: all cores).

    Raises
    ------
    ReconciliationError
        When the rows written differ from the active customers in (the message gives the difference).
    RunMismatch
        When ``out_dir`` holds a different run.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    mode = _reason_mode(reasons)
    frame = features if isinstance(features, pd.DataFrame) else read_feature_table(Path(features))[0]
    frame = select_month(frame, as_of)
    month = _month_end(pd.to_datetime(frame["as_of"]).iloc[0]) if len(frame) else _month_end(as_of)
    if frame["customer_id"].duplicated().any():
        dup = frame.loc[frame["customer_id"].duplicated(), "customer_id"]
        raise ValueError(f"{len(dup)} customer_id(s) appear twice at as_of {month.date()} (e.g. {dup.head(5).tolist()}): "
                         "the customer-month table must hold one row per active customer")
    missing = [c for c in dict.fromkeys([*IDENTITY_COLUMNS, *models.feature_names()]) if c not in frame.columns]
    if missing:
        hint = (" (value tiers and balance features come from the balances table: build the features from raw data "
                "with a balances table, or train the models on features built without it)" if "value_tier" in missing else "")
        raise ValueError(f"the customer-month table at {month.date()} lacks {len(missing)} column(s) the models need: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}{hint}")
    frame = frame.loc[:, [c for c in input_columns(models) if c in frame.columns]].reset_index(drop=True)
    keys = partition_keys(frame, partition_by, buckets)
    column = str(keys.name)
    counts = {str(k): int(v) for k, v in keys.value_counts().sort_index().items()}
    _start_run(out_dir, _run_spec(frame, month, models, policy, column, buckets, mode, counts))

    pending = []
    for key, expected in counts.items():
        folder = _partition_dir(out_dir, column, key)
        if folder.exists() and _rows_in(folder) == expected:
            continue
        shutil.rmtree(folder, ignore_errors=True)  # incomplete from an older layout: redo it
        pending.append(key)
    # A partition folder whose key is no longer in the input is stale: it would break reconciliation.
    for folder in out_dir.glob(f"{column}=*"):
        if folder.name.split("=", 1)[1] not in counts:
            shutil.rmtree(folder)

    if pending:
        if engine == "local":
            _score_local(frame, keys, pending, models, policy, out_dir, column, mode, reason_k, chunk_rows, progress, num_threads,
                         uplift)
        elif engine == "spark":
            from serving.spark_batch import score_partitions_spark

            score_partitions_spark(frame.assign(**{column: keys.to_numpy()}), pending, models, policy, out_dir, column,
                                   reasons=mode, reason_k=reason_k, spark=spark)
        else:
            raise ValueError(f"engine must be 'local' or 'spark', got {engine!r}")

    summary = _reconcile_and_summarise(out_dir, column, counts, month, models, mode, engine, len(pending), started)
    if snapshot_path is not None:
        write_snapshot(frame, Path(snapshot_path))
        summary = BatchSummary(**{**asdict(summary), "snapshot_path": str(snapshot_path)})
    manifest = out_dir / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
    manifest.write_text(json.dumps(asdict(summary), indent=2, default=str))
    os.replace(manifest, out_dir / MANIFEST_FILE)
    (out_dir / SUCCESS_FILE).touch()
    return summary


def _score_local(frame, keys, pending, models, policy, out_dir, column, mode, reason_k, chunk_rows, progress, num_threads,
                 uplift=None) -> None:
    total = int(keys.isin(pending).sum())
    with tqdm(total=total, unit="customer", desc="scoring", disable=not progress) as bar:
        for key in pending:
            rows = frame.loc[(keys == key).to_numpy()]
            parts = []
            for start in range(0, len(rows), chunk_rows):
                chunk = rows.iloc[start : start + chunk_rows]
                parts.append(score_customers(chunk, models, policy, reasons=mode, reason_k=reason_k, num_threads=num_threads,
                                             uplift=uplift))
                bar.update(len(chunk))
            _write_partition(pd.concat(parts, ignore_index=True), out_dir, column, key)
            bar.set_postfix_str(f"{column}={key} written")


def _reconcile_and_summarise(out_dir, column, counts, month, models, mode, engine, written, started) -> BatchSummary:
    found = {folder.name.split("=", 1)[1]: _rows_in(folder) for folder in sorted(out_dir.glob(f"{column}=*"))}
    problems = [f"{column}={k}: {counts[k]:,} customers in, {found.get(k, 0):,} rows out" for k in counts if found.get(k, 0) != counts[k]]
    rows_out = sum(found.values())
    customers = sum(counts.values())
    if problems or rows_out != customers:
        raise ReconciliationError(
            f"batch output in {out_dir} does not reconcile: {customers:,} active customers in, {rows_out:,} rows out "
            f"(difference {rows_out - customers:+,}); " + "; ".join(problems[:10]) + ". Rerun the job to redo the partitions."
        )
    scores = read_scores(out_dir, columns=["value_tier", "segment", "recommended_action", "value_at_risk"])
    return BatchSummary(
        as_of=str(month.date()),
        out_dir=str(out_dir),
        engine=engine,
        reasons=mode,
        customers=customers,
        rows_written=rows_out,
        partitions=len(counts),
        partitions_written=written,
        partitions_skipped=len(counts) - written,
        seconds=round(time.perf_counter() - started, 3),
        by_segment={str(k): int(v) for k, v in scores["segment"].value_counts().items()},
        by_action={str(k): int(v) for k, v in scores["recommended_action"].value_counts().items()},
        value_at_risk_by_tier={str(k): float(v) for k, v in scores.groupby("value_tier", sort=True)["value_at_risk"].sum().items()},
        model_versions=models.versions(),
    )
