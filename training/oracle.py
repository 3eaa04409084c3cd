"""Oracles: the simulator's expected outcomes for the test rows, read at the edge and joined in the middle.

:func:`read_oracle` reads what a raw folder holds (the ground truth's analytic column and, when ``custbase oracle``
wrote it, the continuation oracle) into an :class:`OracleTables`; the training core only joins it to its test rows
(:func:`oracle_for_rows`), so evaluation opens no file.

Oracles that are true limits: expected outcomes given each test row's true state, by continuing the simulated bank.

The ground truth the simulator writes holds analytic approximations (projected hazards, a drifting revenue); a
model can beat an approximation. :func:`write_continuation_oracle` replays the simulated bank to the end of each
test month of the chosen models and continues it many times from there
(:func:`features.simulate.continuation_oracle`); the mean outcome is the best any model can do for that row, and its
standard error says how well the replications pin it down. Training uses it for the CLV oracle when it covers the
test rows; for churn and upgrade :func:`oracle_check` compares it with the analytic ground truth.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custbase.config import Config
from features.feature_set import read_feature_table
from features.raw import find_table, read_manifest
from features.simulate import CONTINUATION_ORACLE_FILE, continuation_oracle
from training.evaluation import metrics_of
from training.modeling_data import prepare_modeling_data
from training.spec import ModelSpec, get_spec
from training.splits import as_of_months


# --------------------------------------------------------------------------------------------- reading (the edge)


@dataclass(frozen=True)
class OracleTables:
    """What a raw folder holds of one model's oracle, keyed by (customer_id, month); None where absent.

    ``ground_truth``: ``customer_id, month, <oracle column>`` of the simulator's ground truth;
    ``continuation``: ``customer_id, month, <column>, <column>_se, <column>_half, replications`` (``custbase oracle``).
    """

    column: str
    ground_truth: pd.DataFrame | None = None
    continuation: pd.DataFrame | None = None
    source: str = ""


def read_ground_truth(raw_dir: str | Path | None, column: str) -> pd.DataFrame | None:
    """``customer_id, month, column`` of the ground truth in ``raw_dir``, or None without a usable one."""
    if not raw_dir or not Path(raw_dir).is_dir():
        return None
    from features.contract import GROUND_TRUTH_TABLE

    source = find_table(Path(raw_dir), GROUND_TRUTH_TABLE)
    if source is None:
        return None
    try:
        truth = source.read_pandas(columns=["customer_id", "month", column])
    except (KeyError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        print(f"note: ground truth in {source.path} has no usable {column} ({err}); no oracle figures")
        return None
    return truth[["customer_id", "month", column]]


def read_continuation(raw_dir: str | Path | None, column: str) -> pd.DataFrame | None:
    """The continuation oracle's rows of ``column`` in ``raw_dir`` (``custbase oracle``), or None."""
    path = Path(raw_dir) / CONTINUATION_ORACLE_FILE if raw_dir else None
    if path is None or not path.exists():
        return None
    if column not in pq.read_schema(path).names:
        return None
    return pq.read_table(path, columns=["customer_id", "month", column, f"{column}_se", f"{column}_half", "replications"]).to_pandas()


def read_oracle(raw_dir: str | Path | None, spec: ModelSpec) -> OracleTables:
    """Everything ``raw_dir`` holds of ``spec``'s oracle (CLV: the continuation oracle too), for :func:`oracle_for_rows`."""
    column = spec.oracle_column
    continuation = read_continuation(raw_dir, column) if spec.kind == "clv" else None
    return OracleTables(column, read_ground_truth(raw_dir, column), continuation, str(raw_dir or ""))


# --------------------------------------------------------------------------------------------- joining (pure)


def _keys(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["customer_id"]].assign(month=as_of_months(rows["as_of"]))


def ground_truth_for_rows(rows: pd.DataFrame, truth: pd.DataFrame | None, column: str) -> np.ndarray | None:
    """The ground truth's ``column`` aligned with ``rows`` (by customer and as_of month), or None if it has none."""
    if truth is None:
        return None
    truth = truth[["customer_id", "month", column]].assign(month=lambda t: as_of_months(t["month"]))
    joined = _keys(rows).merge(truth.drop_duplicates(["customer_id", "month"]), on=["customer_id", "month"], how="left")
    values = joined[column].to_numpy(dtype="float64")
    return None if np.isnan(values).all() else values


def continuation_for_rows(rows: pd.DataFrame, table: pd.DataFrame | None, column: str) -> dict[str, np.ndarray] | None:
    """The continuation oracle of ``rows``: ``value``, ``se`` (its standard error), ``half`` (the mean of half the
    replications) and ``replications``, aligned with ``rows``; None unless it covers every row."""
    if table is None:
        return None
    frame = table.assign(month=as_of_months(table["month"])).drop_duplicates(["customer_id", "month"], keep="last")
    joined = _keys(rows).merge(frame, on=["customer_id", "month"], how="left")
    if joined[column].isna().any():
        return None
    return {"value": joined[column].to_numpy(dtype="float64"), "se": joined[f"{column}_se"].to_numpy(dtype="float64"),
            "half": joined[f"{column}_half"].to_numpy(dtype="float64"), "replications": joined["replications"].to_numpy()}


def oracle_for_rows(rows: pd.DataFrame, tables: OracleTables | None) -> tuple[np.ndarray | None, dict[str, np.ndarray] | None]:
    """The oracle of ``rows`` and, when it is the continuation oracle, its detail (:func:`continuation_for_rows`).

    The continuation oracle when it covers every row, else the ground truth's analytic value (or None).
    """
    if tables is None:
        return None, None
    continuation = continuation_for_rows(rows, tables.continuation, tables.column)
    if continuation is not None:
        return continuation["value"], continuation
    return ground_truth_for_rows(rows, tables.ground_truth, tables.column), None


def oracle_predictions(test: pd.DataFrame, spec: ModelSpec, raw_dir: str | Path | None) -> np.ndarray | None:
    """The simulated bank's true probability / expected CLV for the ``test`` rows, or None without ground truth.

    Joins ``ground_truth.<spec.oracle_column>`` on (customer_id, month = as_of month).
    """
    return ground_truth_for_rows(test, read_ground_truth(raw_dir, spec.oracle_column), spec.oracle_column)


def oracle_continuation(test: pd.DataFrame, spec: ModelSpec, raw_dir: str | Path | None) -> dict[str, np.ndarray] | None:
    """The continuation oracle of the ``test`` rows (``custbase oracle``), or None unless it covers every row.

    Reads ``<raw_dir>/oracle_continuation.parquet``: the expected outcome given each customer's true state at as_of,
    by Monte Carlo continuation of the simulated bank (:func:`continuation_for_rows`).
    """
    return continuation_for_rows(test, read_continuation(raw_dir, spec.oracle_column), spec.oracle_column)


@dataclass(frozen=True)
class OracleCheck:
    """One model's test rows: the label's mean and the primary metric of the analytic and continuation oracles."""

    model: str
    rows: int
    label_mean: float
    ground_truth_mean: float | None
    continuation_mean: float
    ground_truth_metric: float | None
    continuation_metric: float
    continuation_metric_half: float
    mean_standard_error: float
    primary_metric: str

    def render(self) -> str:
        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:,.4f}"

        return (f"  {self.model:<8}{self.rows:>9,}{self.label_mean:>12,.4f}{fmt(self.ground_truth_mean):>14}"
                f"{self.continuation_mean:>14,.4f}{self.mean_standard_error:>12,.4f}   {self.primary_metric}: ground truth "
                f"{fmt(self.ground_truth_metric)}, continuation {self.continuation_metric:.4f} "
                f"(half the replications {self.continuation_metric_half:.4f})")


def simulation_settings(raw_dir: Path, config: Config):
    """The settings a simulated bank was written with (its manifest); raises for other data."""
    manifest = read_manifest(raw_dir)
    if manifest.get("source") != "simulated" or manifest.get("status") != "complete":
        raise ValueError(f"{raw_dir} holds no complete simulated bank (manifest source/status): an oracle needs the simulator")
    keys = ("seed", "customers", "months", "start_month", "transaction_intensity", "chunk_customers")
    missing = [k for k in keys if k not in manifest]
    if missing:
        raise ValueError(f"the manifest of {raw_dir} lacks {missing}: re-simulate the bank to compute an oracle")
    return config.simulation.model_copy(update={k: manifest[k] for k in keys})


def test_months(frame: pd.DataFrame, metadata: dict, model: str, config: Config) -> list[pd.Period]:
    """The test as_of months of ``model`` on this table, as training splits it."""
    return list(prepare_modeling_data(frame, metadata, get_spec(model), config).split.test_months)


def write_continuation_oracle(raw_dir: Path, features_path: Path, models: list[str], config: Config, *,
                              replications: int = 32, progress: bool = True) -> tuple[Path, list[OracleCheck], float]:
    """Continue the simulated bank in ``raw_dir`` from each test month of ``models`` and write the oracle.

    Rows of months already in ``<raw_dir>/oracle_continuation.parquet`` are replaced, others kept. ``config`` must
    be the configuration the bank was simulated with (value tiers, revenue, label thresholds) and the table built
    with. Returns the file, one :class:`OracleCheck` per model, and the seconds taken.
    """
    began = time.perf_counter()
    raw_dir = Path(raw_dir)
    settings = simulation_settings(raw_dir, config)
    frame, metadata = read_feature_table(features_path)
    start = pd.Period(settings.start_month, freq="M")
    months = {model: test_months(frame, metadata, model, config) for model in models}
    forks = sorted({(m - start).n for ms in months.values() for m in ms})
    table = continuation_oracle(settings, config, forks, replications=replications, progress=progress)
    path = raw_dir / CONTINUATION_ORACLE_FILE
    if path.exists():
        kept = pq.read_table(path)
        computed = pa.compute.is_in(kept.column("month"), value_set=pa.compute.unique(table.column("month")))
        kept = kept.filter(pa.compute.invert(computed))
        if kept.schema.equals(table.schema) and len(kept):
            table = pa.concat_tables([kept, table])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    checks = [oracle_check(frame, metadata, model, config, raw_dir) for model in models]
    return path, checks, time.perf_counter() - began


def oracle_check(frame: pd.DataFrame, metadata: dict, model: str, config: Config, raw_dir: Path) -> OracleCheck:
    """The continuation oracle against the label and the analytic ground truth on ``model``'s test rows."""
    data = prepare_modeling_data(frame, metadata, get_spec(model), config)
    spec, y = data.spec, data.y(data.test)
    continuation = oracle_continuation(data.test, spec, raw_dir)
    if continuation is None:
        raise ValueError(f"the continuation oracle in {raw_dir} does not cover the {model} test rows "
                         f"({as_of_months(data.test['as_of']).min()}..{as_of_months(data.test['as_of']).max()})")
    analytic = oracle_predictions(data.test, spec, raw_dir)
    known = analytic is not None and not np.isnan(analytic).any()
    primary = spec.primary_metric
    return OracleCheck(
        model=model,
        rows=len(y),
        label_mean=float(y.mean()),
        ground_truth_mean=float(analytic.mean()) if known else None,
        continuation_mean=float(continuation["value"].mean()),
        ground_truth_metric=metrics_of(spec, y, analytic)[primary] if known else None,
        continuation_metric=metrics_of(spec, y, continuation["value"])[primary],
        continuation_metric_half=metrics_of(spec, y, continuation["half"])[primary],
        mean_standard_error=float(continuation["se"].mean()),
        primary_metric=primary,
    )
