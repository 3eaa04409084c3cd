"""The versioned customer-month feature sets and the one place their parquet table is read and written.

``CUSTOMER_MONTH_V1`` is pinned: its columns and dtypes are written out below, and a test checks that the
definitions (``features/definitions.py``) still produce exactly them. A definition change that alters the
columns therefore needs a new version (``customer_month_v2``), not an edit of v1. A table built from fewer
raw tables holds the subset :func:`feature_columns` names. The table's parquet metadata (key ``custbase``)
records the feature set it was built with, models log the one they were trained on, and
:func:`read_feature_table` refuses a table of another version (:func:`check_feature_set`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from custbase.config import Config
from features.contract import TABLES
from features.definitions import LABEL_COLUMNS, Feature, features_for

#: Parquet schema-metadata key holding the table's JSON description.
METADATA_KEY = b"custbase"


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of feature columns with their dtypes (``int64``, ``float64``, ``str``).

    ``str`` columns are the categorical ones (models treat them as categories).
    """

    name: str
    version: int
    schema: tuple[tuple[str, str], ...]
    #: :meth:`digest` of ``schema`` when the set was pinned; a test checks they still agree.
    pinned_digest: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.schema)

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(name for name, dtype in self.schema if dtype == "str")

    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of ``name:dtype`` lines: changes with any column or dtype."""
        return hashlib.sha256("\n".join(f"{n}:{d}" for n, d in self.schema).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "columns": list(self.columns), "digest": self.digest()}


#: Every column the definitions produce (default configuration, every raw table present), by name: the one
#: vocabulary behind descriptions, dtypes, families and reason phrases.
FEATURES: dict[str, Feature] = {f.name: f for f in features_for(Config(), frozenset(TABLES))}

#: Pinned: a change here or in what the definitions produce is a new version, ``customer_month_v2``.
CUSTOMER_MONTH_V1 = FeatureSet(
    name="customer_month_v1",
    version=1,
    schema=(
        # profile
        ("age", "float64"),
        ("tenure_months", "int64"),
        ("gender", "str"),
        ("city_tier", "str"),
        ("income_band", "str"),
        # balances
        ("aum_month_end", "float64"),
        ("aum_avg_3m", "float64"),
        ("aum_avg_6m", "float64"),
        ("aum_avg_12m", "float64"),
        ("aum_change_ratio_1m", "float64"),
        ("aum_change_ratio_3m", "float64"),
        ("aum_change_ratio_6m", "float64"),
        ("aum_trend_slope_6m", "float64"),
        ("aum_drawdown_12m", "float64"),
        ("liabilities_month_end", "float64"),
        ("balance_current_deposit", "float64"),
        ("balance_time_deposit", "float64"),
        ("balance_wealth_management", "float64"),
        ("balance_fund", "float64"),
        ("balance_insurance", "float64"),
        ("balance_mortgage", "float64"),
        ("balance_consumer_loan", "float64"),
        ("balance_credit_card", "float64"),
        # value_tier
        ("value_tier", "str"),
        ("value_tier_rank", "int64"),
        ("months_in_value_tier", "int64"),
        ("previous_value_tier", "str"),
        ("value_tier_rank_max_12m", "int64"),
        ("next_tier_progress", "float64"),
        # products
        ("product_count", "int64"),
        ("holds_current_deposit", "int64"),
        ("holds_time_deposit", "int64"),
        ("holds_wealth_management", "int64"),
        ("holds_fund", "int64"),
        ("holds_insurance", "int64"),
        ("holds_mortgage", "int64"),
        ("holds_consumer_loan", "int64"),
        ("holds_credit_card", "int64"),
        ("products_opened_3m", "int64"),
        ("products_closed_3m", "int64"),
        # transactions
        ("txn_count_1m", "int64"),
        ("txn_count_mobile_1m", "int64"),
        ("txn_count_online_1m", "int64"),
        ("txn_count_branch_1m", "int64"),
        ("txn_count_atm_1m", "int64"),
        ("txn_count_pos_1m", "int64"),
        ("txn_amount_salary_1m", "float64"),
        ("txn_amount_transfer_1m", "float64"),
        ("txn_amount_card_spend_1m", "float64"),
        ("txn_amount_bill_payment_1m", "float64"),
        ("txn_amount_cash_1m", "float64"),
        ("txn_amount_investment_1m", "float64"),
        ("txn_amount_loan_repayment_1m", "float64"),
        ("txn_amount_interest_1m", "float64"),
        ("txn_amount_fee_1m", "float64"),
        ("txn_amount_other_1m", "float64"),
        ("txn_amount_in_1m", "float64"),
        ("txn_amount_out_1m", "float64"),
        ("txn_count_3m", "int64"),
        ("txn_count_mobile_3m", "int64"),
        ("txn_count_online_3m", "int64"),
        ("txn_count_branch_3m", "int64"),
        ("txn_count_atm_3m", "int64"),
        ("txn_count_pos_3m", "int64"),
        ("txn_amount_salary_3m", "float64"),
        ("txn_amount_transfer_3m", "float64"),
        ("txn_amount_card_spend_3m", "float64"),
        ("txn_amount_bill_payment_3m", "float64"),
        ("txn_amount_cash_3m", "float64"),
        ("txn_amount_investment_3m", "float64"),
        ("txn_amount_loan_repayment_3m", "float64"),
        ("txn_amount_interest_3m", "float64"),
        ("txn_amount_fee_3m", "float64"),
        ("txn_amount_other_3m", "float64"),
        ("txn_amount_in_3m", "float64"),
        ("txn_amount_out_3m", "float64"),
        ("txn_count_6m", "int64"),
        ("txn_count_mobile_6m", "int64"),
        ("txn_count_online_6m", "int64"),
        ("txn_count_branch_6m", "int64"),
        ("txn_count_atm_6m", "int64"),
        ("txn_count_pos_6m", "int64"),
        ("txn_amount_salary_6m", "float64"),
        ("txn_amount_transfer_6m", "float64"),
        ("txn_amount_card_spend_6m", "float64"),
        ("txn_amount_bill_payment_6m", "float64"),
        ("txn_amount_cash_6m", "float64"),
        ("txn_amount_investment_6m", "float64"),
        ("txn_amount_loan_repayment_6m", "float64"),
        ("txn_amount_interest_6m", "float64"),
        ("txn_amount_fee_6m", "float64"),
        ("txn_amount_other_6m", "float64"),
        ("txn_amount_in_6m", "float64"),
        ("txn_amount_out_6m", "float64"),
        ("txn_count_12m", "int64"),
        ("txn_count_mobile_12m", "int64"),
        ("txn_count_online_12m", "int64"),
        ("txn_count_branch_12m", "int64"),
        ("txn_count_atm_12m", "int64"),
        ("txn_count_pos_12m", "int64"),
        ("txn_amount_salary_12m", "float64"),
        ("txn_amount_transfer_12m", "float64"),
        ("txn_amount_card_spend_12m", "float64"),
        ("txn_amount_bill_payment_12m", "float64"),
        ("txn_amount_cash_12m", "float64"),
        ("txn_amount_investment_12m", "float64"),
        ("txn_amount_loan_repayment_12m", "float64"),
        ("txn_amount_interest_12m", "float64"),
        ("txn_amount_fee_12m", "float64"),
        ("txn_amount_other_12m", "float64"),
        ("txn_amount_in_12m", "float64"),
        ("txn_amount_out_12m", "float64"),
        ("digital_share_3m", "float64"),
        ("digital_share_12m", "float64"),
        ("txn_net_flow_3m", "float64"),
        ("salary_months_6m", "int64"),
        ("months_since_last_salary", "float64"),
        # engagement
        ("months_since_last_activity", "float64"),
        ("active_months_12m", "int64"),
        ("customer_txn_count_3m", "int64"),
        ("logins_1m", "int64"),
        ("logins_3m", "int64"),
        ("logins_12m", "int64"),
        # service
        ("complaints_3m", "int64"),
        ("complaints_12m", "int64"),
        ("branch_visits_3m", "int64"),
        ("branch_visits_12m", "int64"),
        ("call_center_calls_3m", "int64"),
        ("call_center_calls_12m", "int64"),
        # campaigns
        ("campaign_contacts_6m", "int64"),
        ("campaign_contacts_12m", "int64"),
        ("campaign_responses_6m", "int64"),
        ("campaign_responses_12m", "int64"),
        ("campaign_contacts_retention_12m", "int64"),
        ("campaign_contacts_upgrade_12m", "int64"),
        ("campaign_contacts_cross_sell_12m", "int64"),
        # revenue
        ("net_revenue_1m", "float64"),
        ("net_revenue_3m", "float64"),
        ("net_revenue_12m", "float64"),
        # dormancy
        ("is_dormant", "int64"),
        ("months_quiet", "int64"),
    ),
    pinned_digest="35198a8e314c01ac",
)

#: One short business description per feature column (reason codes, model cards, ``custbase features --list``).
FEATURE_DESCRIPTIONS: dict[str, str] = {name: f.description for name, f in FEATURES.items()}
#: Output dtype per feature column: int64, float64 or str.
FEATURE_DTYPES: dict[str, str] = {name: f.dtype for name, f in FEATURES.items()}
FEATURE_FAMILIES: dict[str, str] = {name: f.family for name, f in FEATURES.items()}
FEATURE_SETS: dict[str, FeatureSet] = {CUSTOMER_MONTH_V1.name: CUSTOMER_MONTH_V1}


class FeatureSetMismatch(ValueError):
    """A customer-month table was built with another feature-set version than the reader expects."""


_VERSIONED = re.compile(r"^(?P<family>.+)_v(?P<version>\d+)$")


def _named(feature_set) -> str | None:
    if isinstance(feature_set, FeatureSet):
        return feature_set.name
    if isinstance(feature_set, dict):
        return feature_set.get("name")
    return feature_set if isinstance(feature_set, str) else None


def check_feature_set(metadata: dict, expected: str | dict | FeatureSet | None = None, *, source: str = "the table",
                      expected_by: str = "the model") -> None:
    """Raise :class:`FeatureSetMismatch` when a table's ``custbase`` metadata names another feature-set version.

    Refused: a table of a version this code does not pin (``customer_month_v2`` read by code that knows only
    v1); a table that names a pinned version but holds columns that version lacks (built by code whose v1 was
    not the pinned one); and, when ``expected`` (a name, a feature-set dict as models log it, or a
    :class:`FeatureSet`) is given, a table of any other version of a pinned family. Tables that name no feature set, or one
    outside the pinned families (``prepared:...``, test tables), are accepted.
    """
    found = metadata.get("feature_set")
    name = _named(found)
    if not name:
        return
    wanted = _named(expected)
    family = _VERSIONED.match(name)
    pinned_families = {m["family"] for m in map(_VERSIONED.match, FEATURE_SETS) if m}
    rebuild = "rebuild the table with `custbase features`"
    if name not in FEATURE_SETS and family and family["family"] in pinned_families:
        raise FeatureSetMismatch(
            f"{source} holds feature set {name}, which this code does not define (it pins {', '.join(FEATURE_SETS)}): "
            f"use the code that built it, or {rebuild}")
    if name in FEATURE_SETS and isinstance(found, dict):
        pinned = set(FEATURE_SETS[name].columns)
        extra = [c for c in found.get("columns") or () if c not in pinned]
        if extra:
            raise FeatureSetMismatch(
                f"{source} says it holds {name} but has columns this code's pinned {name} lacks "
                f"({', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}): it was built by other code; {rebuild}")
    if wanted and wanted != name and family and family["family"] in pinned_families:
        raise FeatureSetMismatch(
            f"{source} holds feature set {name} but {expected_by} expects {wanted}: retrain on {name} "
            f"(`custbase train`), or rebuild the table as {wanted} with the code that builds it (`custbase features`)")


def render_features(family: str | None = None) -> str:
    """Every feature column (or one family's) as aligned text: name, family, dtype, meaning (``custbase features --list``).

    Raises KeyError naming the known families when ``family`` is not one of them.
    """
    families = list(dict.fromkeys(FEATURE_FAMILIES.values()))
    if family is not None and family not in families:
        raise KeyError(f"no feature family {family!r}; families: {', '.join(families)}")
    rows = [("column", "family", "dtype", "meaning")]
    rows += [(f.name, f.family, f.dtype, f.description) for f in FEATURES.values() if family in (None, f.family)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append(f"{len(rows) - 1} columns; labels: {', '.join(LABEL_COLUMNS)} (default horizons)")
    return "\n".join(lines)


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


#: The files SQLite keeps beside a database while writing it (``-journal`` in rollback mode, ``-wal``/``-shm``).
SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files (or folders) beside ``path`` left by a killed writer: ``.<name>.<pid>.tmp``,
    ``.<name>.<pid>.old`` or ``.<name>.tmp-<pid>`` (and a SQLite temporary's ``-journal``) whose process is gone
    (a live writer's file is kept).
    Returns the files removed. A ``.old`` copy is kept (and put back) when ``path`` itself is missing: the
    writer was killed between the two renames that swap a table file for a table folder."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*"):
        middle = tmp.name[len(path.name) + 2 :]
        for sidecar in SQLITE_SIDECARS:  # a SQLite temporary's journal, killed with it
            middle = middle.removesuffix(sidecar)
        pid = middle.removesuffix(".tmp").removesuffix(".old") if middle.endswith((".tmp", ".old")) else middle.removeprefix("tmp-")
        if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
            continue
        if tmp.name.endswith(".old") and not path.exists():
            os.replace(tmp, path)
            continue
        shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink(missing_ok=True)
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
        if path.is_dir():  # a table folder becomes this file (see remove_stale_temporaries for a kill in between)
            backup = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ month folders
#
# ``custbase features`` (DuckDB) writes the table as a folder of one parquet file per as_of month and a manifest,
# ``_custbase.json``, naming the files that make up the table and holding its metadata. Replacing the manifest
# (one ``os.replace``) is the only commit: a writer first writes new month files under fresh names, then the
# manifest, then deletes the files it no longer names. Readers read only what the manifest names, so a killed
# writer leaves the table as it was (its unnamed files are removed by the next writer). A table may also be a
# single parquet file (Spark builds, tables from before the folders): every reader here takes both.

#: The manifest of a table folder (readers of parquet folders skip names starting with ``_`` or ``.``).
MANIFEST_FILE = "_custbase.json"
_PART = re.compile(r"^part-(?P<month>\d{4}-\d{2})-(?P<pid>\d+)-[0-9a-f]+\.parquet$")


def read_table_manifest(folder: Path) -> dict:
    """The manifest of a table folder: ``{"parts": {"YYYY-MM": file name}, "metadata": {...}}``."""
    file = Path(folder) / MANIFEST_FILE
    if not file.exists():
        raise FileNotFoundError(f"customer-month table folder {folder} has no {MANIFEST_FILE}: it was not written by "
                                f"`custbase features`; rebuild it with `uv run custbase features --out {folder}`")
    return json.loads(file.read_text())


def feature_table_files(path: Path) -> list[Path]:
    """The parquet files of a customer-month table, in month order (a single-file table: that file).

    Slice readers (pyarrow datasets) read these, never a glob of the folder: a killed writer may have left
    files the table does not name."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    parts = read_table_manifest(path)["parts"]
    return [path / parts[month] for month in sorted(parts)]


class FeatureTableWriter:
    """Month files of a customer-month table folder, published together by :meth:`commit` (one manifest replace).

    ``keep`` names the table's months to keep as they are (an append); every other month of the table is
    dropped at commit. Parts are written as they come (:meth:`write` takes rows of any months, e.g. one
    customer slice); without ``commit`` every file written is removed. A single-file table at ``path`` is
    replaced by the folder at commit.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, keep: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.schema = schema.remove_metadata()
        self.keep = keep
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.files: dict[str, str] = {}
        self.folder = self.path

    def __enter__(self) -> "FeatureTableWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        if not self.path.is_dir():  # a new table, or a single-file one: a folder beside it, renamed at commit
            if self.keep:
                raise ValueError(f"{self.path} is not a table folder: it has no months to keep")
            self.folder = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.folder.mkdir(exist_ok=True)
        _remove_unnamed_parts(self.folder)
        return self

    def write(self, table: pa.Table) -> None:
        if not len(table):
            return
        table = table.replace_schema_metadata(None)
        as_of = table.column("as_of")
        for day in pc.unique(as_of).to_pylist():
            month = f"{day:%Y-%m}"
            if month not in self.writers:
                name = f"part-{month}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
                self.files[month] = name
                # No stored arrow schema: the parquet types alone read back the same (int64, float64, string, date32).
                self.writers[month] = pq.ParquetWriter(self.folder / name, self.schema, compression="zstd", store_schema=False)
            self.writers[month].write_table(table.filter(pc.equal(as_of, pa.scalar(day, pa.date32()))))

    def commit(self, metadata: dict) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
        old = read_table_manifest(self.folder)["parts"] if (self.folder / MANIFEST_FILE).exists() else {}
        missing = [m for m in self.keep if m not in old]
        if missing:
            raise ValueError(f"{self.path} no longer holds months {missing}: another writer changed it; run again")
        parts = {**{m: old[m] for m in self.keep}, **self.files}
        tmp = self.folder / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"parts": dict(sorted(parts.items())), "metadata": metadata}, indent=1, default=str) + "\n")
        os.replace(tmp, self.folder / MANIFEST_FILE)  # the commit
        self.files = {}
        if self.folder != self.path:  # a new table, or a single-file table that becomes this folder
            backup = self.path.with_name(f".{self.path.name}.{os.getpid()}.old")
            if self.path.exists():
                os.replace(self.path, backup)
            os.replace(self.folder, self.path)
            backup.unlink(missing_ok=True)
            self.folder = self.path
        _remove_unnamed_parts(self.folder)

    def __exit__(self, *exc) -> None:
        for writer in self.writers.values():
            writer.close()
        for name in self.files.values():
            (self.folder / name).unlink(missing_ok=True)
        if self.folder != self.path:
            shutil.rmtree(self.folder, ignore_errors=True)


def _remove_unnamed_parts(folder: Path) -> None:
    """Delete part files the manifest does not name (superseded, or left by a killed writer), except a live
    writer's, and a killed writer's manifest draft."""
    named = set(read_table_manifest(folder)["parts"].values()) if (folder / MANIFEST_FILE).exists() else set()
    for file in folder.iterdir():
        found = _PART.match(file.name)
        pid = int(found["pid"]) if found else None
        if file.name.startswith(f".{MANIFEST_FILE}.") and file.name.endswith(".tmp"):
            pid = int(file.name.split(".")[-2]) if file.name.split(".")[-2].isdigit() else None
        elif not found or file.name in named:
            continue
        if pid is not None and (pid == os.getpid() or not _pid_alive(pid)):
            file.unlink(missing_ok=True)


def read_feature_metadata(path: Path) -> dict:
    """The ``custbase`` metadata of a customer-month table (without reading its rows)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"customer-month table {path} does not exist; build it with `uv run custbase features --out {path}`")
    if Path(path).is_dir():
        return read_table_manifest(path)["metadata"]
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path} has no '{METADATA_KEY.decode()}' parquet metadata: it was not written by `custbase features`")
    return json.loads(raw)


def read_feature_table(path: Path, columns: list[str] | None = None, *,
                       feature_set: str | dict | FeatureSet | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a customer-month table: the frame (``as_of`` as datetime64) and its ``custbase`` metadata.

    Raises :class:`FeatureSetMismatch` (before reading rows) when the table's feature set is another version
    than ``feature_set`` (the one the model or configuration expects) or than this code pins
    (:func:`check_feature_set`).
    """
    metadata = read_feature_metadata(path)
    check_feature_set(metadata, feature_set, source=str(path))
    if Path(path).is_dir():
        import pyarrow.dataset as ds

        keys = [k for k in ("customer_id", "as_of") if columns is not None and k not in columns]
        table = ds.dataset([str(f) for f in feature_table_files(path)], format="parquet").to_table(
            columns=None if columns is None else [*columns, *keys])
        # one file per month: sorted by customer and as_of as a single-file table is
        table = table.sort_by([("customer_id", "ascending"), ("as_of", "ascending")])
        frame = (table if columns is None else table.select(columns)).to_pandas()
    else:
        frame = pq.read_table(path, columns=columns).to_pandas()
    if "as_of" in frame.columns:
        frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame, metadata
