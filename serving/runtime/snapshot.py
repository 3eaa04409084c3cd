"""The online feature snapshot: the latest feature row of every active customer, keyed by customer_id.

An embedded SQLite file, written whole by the batch job (to a temporary file beside it, then ``os.replace``) so a
running service never sees a half-written snapshot. Readers keep one read-only connection per thread and a
prepared, indexed query (~20 us per id); before each lookup they compare the file's identity (inode, size,
mtime: one ``stat``) with the one they opened, and reopen after a refresh, so requests after a refresh read the
new month and never a mix. A temporary file left by a killed writer is removed by the next write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from features.feature_set import remove_stale_temporaries

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
    remove_stale_temporaries(path)
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


_SELECT_ONE = f'SELECT * FROM "{TABLE}" WHERE customer_id = ?'
#: Ids per ``IN (...)`` query of a larger lookup (SQLite's parameter limit is far above).
_CHUNK = 500


class OnlineFeatureSnapshot:
    """Read access to the snapshot file; safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()

    def _missing(self) -> SnapshotMissing:
        return SnapshotMissing(
            f"no online feature snapshot at {self.path}: run `custbase score` (it refreshes the snapshot) "
            "or set CUSTBASE_SNAPSHOT to the file"
        )

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise self._missing()
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def _connection(self) -> tuple[sqlite3.Connection, list[str]]:
        """This thread's connection to the current file (reopened when the file was replaced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise self._missing() from None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        local = self._local
        if getattr(local, "identity", None) != identity:
            old = getattr(local, "connection", None)
            if old is not None:
                old.close()
            con = self._connect()
            names = [d[0] for d in con.execute(f'SELECT * FROM "{TABLE}" LIMIT 0').description]
            local.connection, local.columns, local.identity = con, names, identity
        return local.connection, local.columns

    def lookup_records(self, customer_ids: Iterable[int]) -> dict[int, dict]:
        """``{customer_id: feature record}`` of the known ``customer_ids`` (unknown ones are absent).

        Values as stored: numbers, text for categoricals, ``as_of`` as ``YYYY-MM-DD`` text.
        """
        ids = [int(i) for i in dict.fromkeys(customer_ids)]
        con, names = self._connection()
        if len(ids) == 1:
            rows = con.execute(_SELECT_ONE, ids).fetchall()
        else:
            rows = []
            for start in range(0, len(ids), _CHUNK):
                part = ids[start : start + _CHUNK]
                rows += con.execute(f'SELECT * FROM "{TABLE}" WHERE customer_id IN ({",".join("?" * len(part))})', part).fetchall()
        at = names.index("customer_id")
        return {int(row[at]): dict(zip(names, row)) for row in rows}

    def metadata(self) -> dict:
        con = self._connect()
        try:
            return json.loads(con.execute(f"SELECT meta FROM {META_TABLE}").fetchone()[0])
        finally:
            con.close()

    def lookup(self, customer_ids: Iterable[int]) -> pd.DataFrame:
        """Feature rows of the known ``customer_ids`` (unknown ones are simply absent), ``as_of`` as datetime."""
        found = self.lookup_records(customer_ids)
        names = self._connection()[1]
        frame = pd.DataFrame.from_records([tuple(r.values()) for r in found.values()], columns=names)
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
