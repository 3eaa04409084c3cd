"""The rows a training reads: customers sampled for the model, read slice by slice from the parquet.

A bank's all-months table does not fit in memory at a million customers (some 25M labeled customer-months), and a
model does not need every quiet month of every customer to learn. :func:`read_training_frame` reads the table in
two passes, one parquet batch (a slice of one month's file) at a time, and never holds the whole table:

1. a slim pass (id, as_of, the label and the population columns) finds the model's eligible rows, its out-of-time
   split (:func:`training.modeling_data.model_split`, the same call the core makes) and each customer's stratum:
   *positive* when one of its eligible rows in the training and validation months is positive (CLV: above the
   ``training.sample_tail_quantile`` of those rows' values, the valuable tail that drives Gini and totals);
2. when those eligible rows exceed ``training.sample_max_rows``, customers are kept by a stable hash of the id
   (:func:`customer_unit`: the same customers on every run, engine and machine): every positive customer (or, when
   they alone fill more than half the budget, an equal share of them) and the share of the others that fills the
   budget. A kept customer keeps all its months. Its rows carry the weight 1 / share of its stratum
   (:data:`WEIGHT_COLUMN`), so that weighted fitting, early stopping and calibration are those of the full
   population. The test months are read whole: test metrics are the population's, unweighted.

Within the budget nothing is sampled: the frame is the table, with no weight column, and training runs as before.
The sample is described in the metadata (``training_sample``), which the run and the model card record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from custbase.config import Config
from features.feature_set import check_feature_set, feature_table_files, read_feature_metadata
from training.modeling_data import WEIGHT_COLUMN, model_split, resolve_spec
from training.splits import OutOfTimeSplit
from training.spec import ModelSpec

#: The columns the population rules read (:meth:`training.spec.ModelSpec.eligible`), when the table has them.
POPULATION_COLUMNS = ("months_quiet", "is_dormant", "value_tier")
#: Rows per batch of a slice read: a few hundred MB of features at most.
BATCH_ROWS = 200_000
#: How far the scanner reads ahead: a batch or two, not its defaults of 16 batches of 4 files (gigabytes at
#: bank size, on top of the frame).
READAHEAD = {"batch_readahead": 1, "fragment_readahead": 1}
#: The metadata key of the sample description.
SAMPLE_KEY = "training_sample"


def customer_unit(customer_id, seed: int) -> np.ndarray:
    """A stable number in [0, 1) per customer id (a keyed hash of its text): the sampling draw of each customer."""
    ids = pd.Series(np.asarray(customer_id)).astype("str")
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=f"custbase{seed % 10**8:08d}").to_numpy()
    return hashed / 2.0**64


@dataclass(frozen=True)
class TrainingSample:
    """How a training's rows were chosen (recorded in the run and on the model card)."""

    seed: int
    budget_rows: int | None
    positive_rule: str
    customers: int  # customers with an eligible row in the training and validation months
    positive_customers: int
    rows_eligible: int  # eligible rows in the training and validation months (what the budget counts)
    share_positive: float = 1.0
    share_negative: float = 1.0
    rows_sampled: int = 0  # eligible rows in the training and validation months that the sample kept
    rows_read: int = 0  # rows of the frame: the kept customers' months and every test-month row

    @property
    def sampled(self) -> bool:
        return self.share_positive < 1 or self.share_negative < 1

    @property
    def uniform_share(self) -> float:
        """Customers whose :func:`customer_unit` is below this form a uniform sample of the population (both
        strata keep every customer below their share)."""
        return min(self.share_positive, self.share_negative)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_params(self) -> dict:
        return {f"sample_{k}": v for k, v in self.to_dict().items() if k != "positive_rule"}

    def render(self) -> str:
        if not self.sampled:
            return f"all {self.rows_eligible:,} eligible rows in the training and validation months (budget {self.budget_rows or 'none'})"
        return (f"sampled {self.rows_sampled:,} of {self.rows_eligible:,} eligible rows in the training and validation months "
                f"(budget {self.budget_rows:,}): {self.share_positive:.1%} of {self.positive_customers:,} positive "
                f"customers ({self.positive_rule}), {self.share_negative:.1%} of the other "
                f"{self.customers - self.positive_customers:,}, weighted 1 / share; seed {self.seed}; "
                f"test months read whole")


def shares_for(budget: int, positive_rows: int, negative_rows: int) -> tuple[float, float]:
    """(positive, negative) shares of customers that fill ``budget`` rows: every positive customer and the
    negatives that fit, and at most half the budget for positives when they would take more."""
    if positive_rows + negative_rows <= budget:
        return 1.0, 1.0
    negative = min(1.0, max(budget - positive_rows, budget / 2) / max(negative_rows, 1))
    positive = min(1.0, (budget - negative * negative_rows) / max(positive_rows, 1))
    return positive, negative


def _dataset(path: Path) -> ds.Dataset:
    return ds.dataset([str(f) for f in feature_table_files(path)], format="parquet")


def _eligible_mask(batch: pa.RecordBatch, spec: ModelSpec, config: Config) -> np.ndarray:
    """:meth:`ModelSpec.eligible` of a batch's rows, read from its label and population columns only."""
    columns = [spec.label, *(c for c in POPULATION_COLUMNS if c in batch.schema.names)]
    return spec.eligible(batch.select(columns).to_pandas(), config).to_numpy()


def _eligible(dataset: ds.Dataset, spec: ModelSpec, config: Config, columns: list[str]) -> pd.DataFrame:
    """``columns`` of every eligible row, read batch by batch with the slim columns the eligibility needs."""
    read = list(dict.fromkeys([*columns, spec.label, *(c for c in POPULATION_COLUMNS if c in dataset.schema.names)]))
    parts = [batch.filter(pa.array(_eligible_mask(batch, spec, config))).select(columns).to_pandas()
             for batch in dataset.to_batches(columns=read, batch_size=BATCH_ROWS, **READAHEAD)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def plan_sample(path: Path, spec: ModelSpec, config: Config, metadata: dict) -> tuple[TrainingSample, pd.Series, OutOfTimeSplit]:
    """The sample of ``spec``'s training on the table at ``path``: its description, the kept customers' weights
    (indexed by id) and the model's out-of-time split."""
    settings = config.training
    dataset = _dataset(path)
    spec, labels = resolve_spec(spec, metadata, config, dataset.schema.names)
    rows = _eligible(dataset, spec, config, ["customer_id", "as_of", spec.label])
    rows = pd.DataFrame({"customer_id": rows["customer_id"], "month": pd.to_datetime(rows["as_of"]).dt.to_period("M"),
                         "label": rows[spec.label].to_numpy(dtype="float64")})
    if rows.empty:
        raise ValueError(f"no eligible labeled rows for the {spec.name} model in the customer-month table {path} "
                         f"(label {spec.label})")
    split = model_split(rows["month"].unique(), spec, labels, settings,
                        censorable="net_revenue_1m" in dataset.schema.names)
    before = rows.loc[rows["month"].isin([*split.train_months, *split.validation_months])]
    if spec.kind == "binary":
        rule, threshold = f"a {spec.label} = 1 month", 0.0
    else:
        threshold = float(np.nanquantile(before["label"], settings.sample_tail_quantile)) if len(before) else 0.0
        rule = f"a {spec.label} above its {settings.sample_tail_quantile:.0%} quantile, {threshold:,.0f}"
    per_customer = before.groupby("customer_id", sort=False)["label"].agg(["max", "size"])
    positive = per_customer["max"] > threshold
    budget = settings.sample_max_rows
    share_pos, share_neg = (1.0, 1.0) if budget is None else shares_for(
        budget, int(per_customer.loc[positive, "size"].sum()), int(per_customer.loc[~positive, "size"].sum()))
    share = np.where(positive, share_pos, share_neg)
    kept = customer_unit(per_customer.index, settings.seed) < share
    weights = pd.Series(1.0 / share[kept], index=per_customer.index[kept], name=WEIGHT_COLUMN)
    sample = TrainingSample(
        seed=settings.seed, budget_rows=budget, positive_rule=rule, customers=len(per_customer),
        positive_customers=int(positive.sum()), rows_eligible=len(before), share_positive=share_pos,
        share_negative=share_neg, rows_sampled=int(per_customer.loc[kept, "size"].sum()),
    )
    return sample, weights, split


def read_training_frame(path: Path, spec: ModelSpec, config: Config) -> tuple[pd.DataFrame, dict]:
    """The customer-month frame ``spec``'s training needs from the table at ``path``, and the table's metadata
    with the sample's description under ``training_sample`` (see the module's docstring).

    Only what the model uses is read: its own label (not the other models'), and only its eligible rows, batch by
    batch, so that the frame holds no row the model drops. A CLV split with censored windows (a short table)
    keeps every row: its censored labels sum the later months of each customer, eligible or not.

    Raises :class:`features.feature_set.FeatureSetMismatch` before reading rows when the table's feature set is
    another version than the configuration's.
    """
    metadata = read_feature_metadata(path)
    check_feature_set(metadata, config.features.feature_set, source=str(path))
    sample, weights, split = plan_sample(path, spec, config, metadata)
    test_months = list(split.test_months)
    dataset = _dataset(path)
    resolved, _ = resolve_spec(spec, metadata, config, dataset.schema.names)
    others = [c for c in metadata.get("label_columns") or [] if c != resolved.label]
    columns = [c for c in dataset.schema.names if c not in others]
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    row_filter = None
    if sample.sampled:
        first = pa.scalar(test_months[0].start_time.date(), pa.date32())
        last = pa.scalar(test_months[-1].end_time.date(), pa.date32())
        as_of = pc.field("as_of").cast(pa.date32())
        kept = pa.array(weights.index.to_numpy()).cast(dataset.schema.field("customer_id").type)
        row_filter = pc.field("customer_id").isin(kept) | ((as_of >= first) & (as_of <= last))
    batches = dataset.to_batches(columns=columns, filter=row_filter, batch_size=BATCH_ROWS, **READAHEAD)
    if not split.censored:
        batches = (b.filter(pa.array(_eligible_mask(b, resolved, config))) for b in batches)
    if sample.sampled:  # a column of the batches: a frame of one block per column takes no insert quietly
        schema = schema.append(pa.field(WEIGHT_COLUMN, pa.float64()))
        batches = (b.append_column(WEIGHT_COLUMN, pa.array(
            b.column("customer_id").to_pandas().map(weights).fillna(1.0).to_numpy(dtype="float64"))) for b in batches)
    frame = _sorted_frame(list(batches), schema)
    sample = TrainingSample(**{**sample.to_dict(), "rows_read": len(frame)})
    return frame, {**metadata, SAMPLE_KEY: sample.to_dict()}


def _sorted_frame(batches: list[pa.RecordBatch], schema: pa.Schema) -> pd.DataFrame:
    """The rows of ``batches`` by customer and as_of, as pandas (``as_of`` datetime64, as
    :func:`features.feature_set.read_feature_table` gives it), holding about one copy of them at a time: the
    columns are reordered one by one, each column's batches released once reordered, and converted to pandas as
    Arrow releases them (a whole-table sort would hold two copies, and the allocator would keep both)."""
    table = pa.Table.from_batches(batches, schema=schema)
    order = pc.sort_indices(table, sort_keys=[("customer_id", "ascending"), ("as_of", "ascending")])
    chunks = {name: table.column(name).chunks for name in schema.names}
    del table, batches[:]
    columns = [pa.chunked_array(chunks.pop(name), type=schema.field(name).type).take(order) for name in schema.names]
    frame = pa.Table.from_arrays(columns, schema=schema).to_pandas(self_destruct=True, split_blocks=True)
    del columns
    pa.default_memory_pool().release_unused()  # the freed batches go back to the system, not to the pool
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame


def eligible_keys(path: Path, spec: ModelSpec, config: Config) -> pd.DataFrame:
    """customer_id and as_of (datetime64) of ``spec``'s eligible rows in the table at ``path``, by customer and
    as_of (the order of :func:`features.feature_set.read_feature_table`), read batch by batch, slim columns only."""
    keys = _eligible(_dataset(path), spec, config, ["customer_id", "as_of"])
    keys["as_of"] = pd.to_datetime(keys["as_of"]).astype("datetime64[us]")
    return keys.sort_values(["customer_id", "as_of"], kind="stable", ignore_index=True)


def read_customer_months(path: Path, keys: pd.DataFrame) -> pd.DataFrame:
    """Every column of the rows of the table at ``path`` whose (customer_id, as_of) is among ``keys``, by customer
    and as_of, read batch by batch: a bank's table is never held, only these rows."""
    dataset = _dataset(path)
    wanted = pd.MultiIndex.from_frame(keys[["customer_id", "as_of"]].drop_duplicates())
    customers = pa.array(wanted.levels[0].to_numpy()).cast(dataset.schema.field("customer_id").type)
    batches = []
    for batch in dataset.to_batches(filter=pc.field("customer_id").isin(customers), batch_size=BATCH_ROWS, **READAHEAD):
        key = batch.select(["customer_id", "as_of"]).to_pandas()
        key["as_of"] = pd.to_datetime(key["as_of"]).astype("datetime64[us]")
        batches.append(batch.filter(pa.array(pd.MultiIndex.from_frame(key).isin(wanted))))
    return _sorted_frame(batches, dataset.schema)


def sample_of(metadata: dict) -> TrainingSample | None:
    """The sample a frame's metadata describes (None for a frame read whole by another reader)."""
    described = metadata.get(SAMPLE_KEY)
    return TrainingSample(**described) if described else None


def customers_within(part: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """``part`` within ``max_rows`` rows, else the customers of a uniform hash draw (:func:`customer_unit` with
    ``seed``) that hold about that many: whole customers, weights kept (the draw does not depend on them)."""
    if max_rows is None or len(part) <= max_rows:
        return part
    return part.loc[customer_unit(part["customer_id"], seed) < max_rows / len(part)]


def representative_rows(part: pd.DataFrame, metadata: dict) -> pd.DataFrame:
    """The rows of ``part`` whose customers form a uniform sample of the population, for unweighted summaries
    such as the drift reference: ``part`` itself unless its training was sampled, else the customers drawn
    below both strata's shares."""
    sample = sample_of(metadata)
    if sample is None or not sample.sampled or WEIGHT_COLUMN not in part.columns:
        return part
    return part.loc[customer_unit(part["customer_id"], sample.seed) < sample.uniform_share]
