"""The online feature snapshot: the latest feature row of every active customer, keyed by customer_id.

An embedded SQLite file, written whole by the batch job (to a temporary file, then ``os.replace``) so a
running service never sees a half-written snapshot: each lookup opens the file afresh (read-only, ~50 us),
so requests after a refresh read the new month.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

TABLE = "customer_features"
META_TABLE = "snapshot_meta"


class SnapshotMissing(FileNotFoundError):
    """No online feature snapshot at the expected path."""


def write_snapshot(features: pd.DataFrame, path: Path, columns: Iterable[str] | None = None) -> Path:
    """Replace the snapshot at ``path`` by ``features`` (one row per customer_id) atomically.

    Parameters
    ----------
    features
        Feature rows with ``customer_id`` and ``as_of``; categorical and text columns are stored as text.
    path
        The SQLite file.
    columns
        Columns to keep (the scoring inputs); all when None.
    """
    path = Path(path)
    frame = features if columns is None else features.loc[:, [c for c in dict.fromkeys(columns) if c in features.columns]]
    if frame["customer_id"].duplicated().any():
        dup = frame.loc[frame["customer_id"].duplicated(), "customer_id"].head(5).tolist()
        raise ValueError(f"the snapshot needs one row per customer_id; {len(dup)}+ duplicated, e.g. {dup}")
    out = {}
    for name in frame.columns:
        values = frame[name]
        if name == "as_of":
            out[name] = pd.to_datetime(values).dt.strftime("%Y-%m-%d").astype("object")
        elif isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values.dtype):
            out[name] = values.astype("object").where(values.notna(), None)
        elif pd.api.types.is_bool_dtype(values.dtype):
            out[name] = values.astype("int64")
        else:
            out[name] = values
    table = pd.DataFrame(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as con:
        table.to_sql(TABLE, con, index=False, chunksize=5_000)
        con.execute(f'CREATE UNIQUE INDEX "{TABLE}_customer_id" ON "{TABLE}" (customer_id)')
        meta = {
            "rows": len(table),
            "as_of_max": table["as_of"].max() if len(table) else None,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "columns": list(table.columns),
        }
        con.execute(f"CREATE TABLE {META_TABLE} (meta TEXT)")
        con.execute(f"INSERT INTO {META_TABLE} VALUES (?)", (json.dumps(meta),))
    con.close()
    os.replace(tmp, path)
    return path


class OnlineFeatureSnapshot:
    """Read access to the snapshot file; safe to share between threads (a connection per lookup)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise SnapshotMissing(
                f"no online feature snapshot at {self.path}: run `custbase score` (it refreshes the snapshot) "
                "or set CUSTBASE_SNAPSHOT to the file"
            )
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def metadata(self) -> dict:
        con = self._connect()
        try:
            return json.loads(con.execute(f"SELECT meta FROM {META_TABLE}").fetchone()[0])
        finally:
            con.close()

    def lookup(self, customer_ids: Iterable[int]) -> pd.DataFrame:
        """Feature rows of the known ``customer_ids`` (unknown ones are simply absent), ``as_of`` as datetime."""
        ids = [int(i) for i in dict.fromkeys(customer_ids)]
        con = self._connect()
        try:
            cursor = con.execute(f'SELECT * FROM "{TABLE}" WHERE customer_id IN ({",".join("?" * len(ids))})', ids) if ids else None
            names = [d[0] for d in cursor.description] if cursor else self.metadata()["columns"]
            rows = cursor.fetchall() if cursor else []
        finally:
            con.close()
        frame = pd.DataFrame.from_records(rows, columns=names)
        for name in frame.columns:
            if frame[name].dtype == object and name != "as_of":
                values = frame[name]
                if all(isinstance(v, (int, float)) or v is None for v in values):
                    frame[name] = pd.to_numeric(values.astype("float64"), errors="coerce")
        if "as_of" in frame.columns:
            frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
        if "customer_id" in frame.columns:
            frame["customer_id"] = frame["customer_id"].astype("int64")
        return frame
