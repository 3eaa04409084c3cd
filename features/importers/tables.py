"""What both importers share: the summary they return and the writing of contract tables (see :mod:`features.importers`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.raw import write_manifest
from features.validate import ValidationReport


@dataclass(frozen=True)
class ImportSummary:
    """What an importer wrote, and the validation report of the result."""

    out_dir: Path
    source: str
    tables: dict[str, int]
    report: ValidationReport
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.report.ok

    def render(self) -> str:
        lines = [f"imported {self.source} into {self.out_dir}"]
        lines += [f"  {name:<18} {rows:>12,} rows written" for name, rows in self.tables.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n" + self.report.render()


_ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"), "str": pa.string()}


def to_contract_frame(table: contract.Table, frame: pd.DataFrame) -> pa.Table:
    """The contract columns of ``frame`` in contract order, typed as the contract says.

    A column whose values do not all convert is written unchanged as text, so that validation reports the
    offending values by name instead of the importer silently turning them into nulls.
    """
    arrays, names = [], []
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        try:
            array = pa.array(_typed(column, values), type=_ARROW_TYPES[column.dtype], from_pandas=True)
        except (ValueError, TypeError, pa.ArrowException):
            array = pa.array(values.astype("str").where(values.notna()), type=pa.string(), from_pandas=True)
        arrays.append(array)
        names.append(column.name)
    return pa.table(arrays, names=names)


def _typed(column: contract.Column, values: pd.Series):
    if column.dtype in ("int64", "float64"):
        numbers = pd.to_numeric(values, errors="raise").astype("float64")
        if column.dtype == "int64":
            if not np.array_equal(numbers.dropna(), np.round(numbers.dropna())):
                raise ValueError(f"{column.name}: not whole numbers")
            return numbers.astype("Int64")
        return numbers
    if column.dtype in ("date", "timestamp"):
        stamps = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="raise", format="ISO8601")
        stamps = stamps.astype("datetime64[us]")
        return [None if pd.isna(v) else v.date() for v in stamps] if column.dtype == "date" else stamps
    if column.dtype == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean")
        text = values.astype("str").str.lower()
        known = {"true": True, "t": True, "1": True, "yes": True, "y": True, "false": False, "f": False, "0": False, "no": False, "n": False}
        if not text[values.notna()].isin(list(known)).all():
            raise ValueError(f"{column.name}: not booleans")
        return text.map(known).where(values.notna()).astype("boolean")
    return values.astype("str").where(values.notna())


def write_raw_tables(out_dir: Path, frames: dict[str, pd.DataFrame], **manifest) -> dict[str, int]:
    """Write each frame as ``out_dir/NAME.parquet`` (contract columns only) plus ``manifest.json``.

    Replaces contract tables already in ``out_dir`` so that a re-import never mixes two sources.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in contract.TABLES:
        for stale in (out_dir / f"{name}.parquet", out_dir / f"{name}.csv"):
            stale.unlink(missing_ok=True)
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)
    (out_dir / contract.MANIFEST_FILE).unlink(missing_ok=True)
    written = {}
    for name, frame in frames.items():
        pq.write_table(to_contract_frame(contract.TABLES[name], frame), out_dir / f"{name}.parquet")
        written[name] = len(frame)
    write_manifest(out_dir, **{k: v for k, v in manifest.items() if v is not None})
    return written
