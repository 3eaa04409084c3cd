"""The modeling data of one model: a customer-month frame's eligible labeled rows, split out of time.

Pure functions of a frame and its metadata (no I/O). Both the training core (:mod:`training.train`) and the
promotion gate (:mod:`training.registry`) build on this module, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from custbase.config import Config, Labels, Training
from serving.runtime.bundle import prepare_features
from training.spec import CATEGORICAL_COLUMNS, KEY_COLUMNS, LABEL_COLUMNS, ModelSpec
from training.splits import (
    OutOfTimeSplit,
    as_of_months,
    censor_clv_labels,
    discounted_exposure,
    out_of_time_split,
    split_frame,
)

#: Censored splits only: the months of each training / validation row's label window (see training.splits).
EXPOSURE_COLUMN = "label_exposure_months"
#: A sampled training's row weights, 1 / the share of the customer's stratum (:mod:`training.sample`).
WEIGHT_COLUMN = "sample_weight"

def labels_of(metadata: dict, config: Config) -> Labels:
    """The label definitions the table was built with (its metadata), else the configuration's."""
    values = metadata.get("labels") or {}
    known = {k: v for k, v in values.items() if k in Labels.model_fields}
    return Labels.model_validate(known) if known else config.labels


def feature_columns_of(frame: pd.DataFrame, metadata: dict) -> list[str]:
    """Feature columns in table order: the feature set's declared columns, else every non-key, non-label column."""
    labels = set(metadata.get("label_columns") or LABEL_COLUMNS)
    declared = (metadata.get("feature_set") or {}).get("columns") or list(frame.columns)
    return [c for c in declared if c in frame.columns and c not in KEY_COLUMNS and c not in labels
            and c not in (WEIGHT_COLUMN, EXPOSURE_COLUMN)]


def categories_of(frame: pd.DataFrame, feature_columns: list[str], metadata: dict) -> dict[str, list[str]]:
    """Categories of each categorical feature: declared ones plus any text column, values sorted."""
    declared = set(metadata.get("categorical_columns") or CATEGORICAL_COLUMNS)
    categorical = [
        c
        for c in feature_columns
        if c in declared or not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    return {c: sorted(map(str, frame[c].dropna().unique())) for c in categorical}


@dataclass(frozen=True)
class ModelingData:
    """The eligible labeled rows of one model, split out of time, with the feature layout."""

    spec: ModelSpec
    split: OutOfTimeSplit
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    feature_columns: list[str]
    categories: dict[str, list[str]]
    labels: Labels
    metadata: dict

    def X(self, part: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(part, self.feature_columns, self.categories)

    def y(self, part: pd.DataFrame) -> np.ndarray:
        return self.spec.target(part)

    def weight(self, part: pd.DataFrame) -> np.ndarray | None:
        """The rows' sample weights (:mod:`training.sample`), or None when every customer was read."""
        return part[WEIGHT_COLUMN].to_numpy(dtype="float64") if WEIGHT_COLUMN in part.columns else None

    def offset(self, part: pd.DataFrame) -> np.ndarray | None:
        """log of the discounted exposure of censored label windows (a Tweedie offset), or None for full windows."""
        if EXPOSURE_COLUMN not in part.columns:
            return None
        return np.log(discounted_exposure(part[EXPOSURE_COLUMN].to_numpy(), self.labels.clv_annual_discount_rate))

    def horizon_offset(self) -> float:
        """log of the full horizon's discounted exposure: what turns a censored model's monthly rate into CLV."""
        return float(np.log(discounted_exposure(self.split.horizon_months, self.labels.clv_annual_discount_rate)))

    @property
    def population(self) -> pd.DataFrame:
        return pd.concat([self.train, self.validation, self.test])


def resolve_spec(spec: ModelSpec, metadata: dict, config: Config, columns) -> tuple[ModelSpec, Labels]:
    """``spec`` with the label and oracle names of the horizons the table was built with (its metadata), and
    those label definitions. The CLV label is the one the table declares (tables written before labels were named
    after their horizon say clv_12m)."""
    labels = labels_of(metadata, config)
    spec = spec.for_labels(labels)
    declared = [c for c in metadata.get("label_columns") or [] if c.startswith("clv_") and c in columns]
    if spec.kind == "clv" and declared and declared[0] != spec.label:
        spec = replace(spec, label=declared[0])
    return spec, labels


def model_split(labeled_months, spec: ModelSpec, labels: Labels, settings: Training, *, censorable: bool) -> OutOfTimeSplit:
    """The out-of-time split of a model's eligible labeled months: the first of
    :func:`training.splits.out_of_time_split`'s ladder that fits (censored windows for CLV only, when the table
    has monthly net revenue: ``censorable``)."""
    return out_of_time_split(
        labeled_months,
        horizon_months=spec.label_window_months(labels),
        validation_months=settings.validation_months,
        test_months=settings.test_months,
        min_train_months=settings.min_train_months,
        allow_censored=spec.kind == "clv" and censorable,
    )


def prepare_modeling_data(frame: pd.DataFrame, metadata: dict, spec: ModelSpec, config: Config) -> ModelingData:
    """Filter ``frame`` to ``spec``'s eligible labeled rows and split them out of time (``frame`` is not changed).

    The label and oracle names follow the horizons the table was built with (its metadata), whatever ``spec`` says.
    The split is the first of :func:`training.splits.out_of_time_split`'s ladder that fits; with censored windows
    (CLV only) the training and validation labels are recomputed up to their cutoffs, with their exposure.
    """
    spec, labels = resolve_spec(spec, metadata, config, frame.columns)
    if spec.label not in frame.columns:
        present = [c for c in frame.columns if c in (metadata.get("label_columns") or LABEL_COLUMNS) or c.startswith("clv_")]
        raise ValueError(f"the customer-month table ({len(frame)} rows) has no label column {spec.label} "
                         f"(it has {', '.join(present) or 'no label'}); rebuild features with this configuration's labels")
    mask = spec.eligible(frame, config)
    eligible = frame if mask.all() else frame.loc[mask]  # a frame read for the model holds only eligible rows
    if eligible.empty:
        raise ValueError(f"no eligible labeled rows for the {spec.name} model among {len(frame)} rows (label {spec.label})")
    split = model_split(as_of_months(eligible["as_of"]).unique(), spec, labels, config.training,
                        censorable="net_revenue_1m" in frame.columns)
    train, validation, test = split_frame(eligible, split)
    if split.censored:
        censored = []
        for part, cutoff in ((train, split.test_months[0]), (validation, split.test_months[0])):
            values, exposure = censor_clv_labels(frame, part, cutoff=cutoff, horizon_months=split.horizon_months,
                                                 annual_rate=labels.clv_annual_discount_rate)
            censored.append(part.copy().assign(**{spec.label: values, EXPOSURE_COLUMN: exposure}))  # consolidated
        train, validation = censored
    if spec.kind == "clv":
        y = train[spec.label].to_numpy(dtype="float64")
        if len(y) and (np.nanmax(y) <= 0 or np.nanmin(y) == np.nanmax(y)):
            raise ValueError(
                f"label {spec.label} is {np.nanmax(y):g} in all {len(y):,} training rows ({_months(split.train_months)}): "
                "nothing to learn; check what counts as value (config revenue: transaction_rate, annual_rate, "
                "cost_to_serve_monthly) against the categories and products in the data"
            )
    features = feature_columns_of(frame, metadata)
    if config.fairness.exclude_protected_attributes:  # the card still reports metrics by these groups
        features = [c for c in features if c not in config.fairness.protected_attributes]
    categories = categories_of(eligible, features, metadata)
    if spec.kind == "binary":
        for name, part in (("train", train), ("validation", validation), ("test", test)):
            positives = int(np.nansum(part[spec.label]))
            if positives == 0 or positives == len(part):
                raise ValueError(
                    f"the {name} split of the {spec.name} model ({len(part)} rows) has {positives} positives of "
                    f"{spec.label}: both classes are needed; use a larger or longer table"
                )
    return ModelingData(spec, split, train, validation, test, features, categories, labels, metadata)


def _months(months) -> str:
    return f"as_of {months[0]}..{months[-1]}" if months else "no months"
