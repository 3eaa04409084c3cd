"""The versioned customer-month feature set and the one place its parquet table is read and written.

``CUSTOMER_MONTH_V1`` lists every feature column the builder writes when all raw tables are present; a
table built from fewer tables holds the subset :func:`feature_columns` names. Models log the feature set
they were trained on, and the table's parquet metadata (key ``custbase``) records it too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from custbase.config import Config
from features.contract import TABLES
from features.definitions import LABEL_COLUMNS, features_for

#: Parquet schema-metadata key holding the table's JSON description.
METADATA_KEY = b"custbase"


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of feature columns; ``categorical_columns`` are text columns models treat as categories."""

    name: str
    version: int
    columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "columns": list(self.columns)}


_ALL = features_for(Config(), frozenset(TABLES))

CUSTOMER_MONTH_V1 = FeatureSet(
    name="customer_month_v1",
    version=1,
    columns=tuple(f.name for f in _ALL),
    categorical_columns=tuple(f.name for f in _ALL if f.dtype == "str"),
)
#: One short business description per feature column (reason codes, model cards).
FEATURE_DESCRIPTIONS: dict[str, str] = {f.name: f.description for f in _ALL}
#: Output dtype per feature column: int64, float64 or str.
FEATURE_DTYPES: dict[str, str] = {f.name: f.dtype for f in _ALL}
FEATURE_FAMILIES: dict[str, str] = {f.name: f.family for f in _ALL}
FEATURE_SETS: dict[str, FeatureSet] = {CUSTOMER_MONTH_V1.name: CUSTOMER_MONTH_V1}


def feature_columns(present_tables) -> list[str]:
    """The feature columns a build from the raw tables ``present_tables`` writes, in table order."""
    return [f.name for f in features_for(Config(), frozenset(present_tables))]


def arrow_schema(columns: list[str], label_columns: list[str] | tuple[str, ...] = LABEL_COLUMNS) -> pa.Schema:
    """Arrow schema of a customer-month table with these feature and label columns."""
    types = {"int64": pa.int64(), "float64": pa.float64(), "str": pa.string()}
    fields = [pa.field("customer_id", pa.int64(), nullable=False), pa.field("as_of", pa.date32(), nullable=False)]
    fields += [pa.field(c, types[FEATURE_DTYPES[c]]) for c in columns]
    fields += [pa.field(c, pa.float64()) for c in label_columns]
    return pa.schema(fields)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files beside ``path`` left by a killed writer: ``.<name>.<pid>.tmp`` or ``.<name>.tmp-<pid>``
    whose process is gone (a live writer's file is kept). Returns the files removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*"):
        middle = tmp.name[len(path.name) + 2 :]
        pid = middle.removesuffix(".tmp") if middle.endswith(".tmp") else middle.removeprefix("tmp-")
        if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def write_feature_table(frame: pd.DataFrame | pa.Table, path: Path, metadata: dict) -> Path:
    """Write a customer-month table with its ``custbase`` metadata, atomically (temporary file, then rename)."""
    path = Path(path)
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    if "as_of" in table.column_names and pa.types.is_timestamp(table.schema.field("as_of").type):
        at = table.column_names.index("as_of")
        table = table.set_column(at, pa.field("as_of", pa.date32(), nullable=False), table.column("as_of").cast(pa.date32()))
    existing = table.schema.metadata or {}
    existing = {k: v for k, v in existing.items() if k != b"pandas"}
    table = table.replace_schema_metadata({**existing, METADATA_KEY: json.dumps(metadata, default=str).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_feature_metadata(path: Path) -> dict:
    """The ``custbase`` metadata of a customer-month table (without reading its rows)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"customer-month table {path} does not exist; build it with `uv run custbase features --out {path}`")
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path} has no '{METADATA_KEY.decode()}' parquet metadata: it was not written by `custbase features`")
    return json.loads(raw)


def read_feature_table(path: Path, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a customer-month table: the frame (``as_of`` as datetime64) and its ``custbase`` metadata."""
    metadata = read_feature_metadata(path)
    frame = pq.read_table(path, columns=columns).to_pandas()
    if "as_of" in frame.columns:
        frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame, metadata
