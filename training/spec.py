"""What each model predicts, for whom, and how it is judged.

A :class:`ModelSpec` is pure data: the label column, the eligible population, the kind of model, the
primary metric the tuner and the promotion gate compare, and the ground-truth column of the simulated bank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from custbase.config import Config, Labels
from features.definitions import in_churn_population

CATEGORICAL_COLUMNS: tuple[str, ...] = ("gender", "city_tier", "income_band", "value_tier", "previous_value_tier")
"""Text feature columns that training casts to pandas ``category`` (the customer-month table interface)."""

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "as_of")
LABEL_COLUMNS: tuple[str, ...] = Labels().names.labels
"""Label columns with the default horizons; a table's own are in its metadata (``label_columns``)."""
#: Model -> (label field, oracle field) of :class:`custbase.config.LabelNames`.
_NAME_FIELDS = {"churn": ("churn", "churn_oracle"), "upgrade": ("upgrade", "upgrade_oracle"), "clv": ("clv", "clv_oracle")}


@dataclass(frozen=True)
class ModelSpec:
    """One model: churn, upgrade or clv."""

    name: str
    label: str
    kind: Literal["binary", "clv"]
    primary_metric: str
    calibration_metric: str
    oracle_column: str
    description: str
    greater_is_better: bool = True

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name (also the experiment name)."""
        return f"custbase-{self.name}"

    def for_labels(self, labels: Labels) -> "ModelSpec":
        """This spec with the label and oracle column names of ``labels``' horizons (``labels.names``)."""
        label, oracle = _NAME_FIELDS[self.name]
        return replace(self, label=getattr(labels.names, label), oracle_column=getattr(labels.names, oracle))

    def horizon_months(self, labels: Labels) -> int:
        """The label horizon in months."""
        return {
            "churn": labels.churn_horizon_months,
            "upgrade": labels.upgrade_horizon_months,
            "clv": labels.clv_horizon_months,
        }[self.name]

    def label_window_months(self, labels: Labels) -> int:
        """Months after as_of the label reads: the gap left between out-of-time splits.

        The horizon, except for churn: H + k - 1, since a dormancy exit dated in the horizon's last month is
        only known once its k-month run completes.
        """
        return labels.churn_future_months if self.name == "churn" else self.horizon_months(labels)

    def eligible(self, frame: pd.DataFrame, config: Config) -> pd.Series:
        """Boolean mask of the rows this model is trained and scored on (label known, population eligible).

        Churn: :func:`features.definitions.in_churn_population` (the rule scoring and campaign lists use too).
        """
        labeled = frame[self.label].notna()
        if self.name == "churn":
            return labeled & in_churn_population(frame)
        if self.name == "upgrade" and "value_tier" in frame.columns:
            return labeled & (frame["value_tier"].astype("str") != config.value_tiers.top)
        return labeled

    def target(self, frame: pd.DataFrame) -> np.ndarray:
        """The label as a float array (0/1 for binary models, currency for CLV)."""
        return frame[self.label].to_numpy(dtype="float64")


_DEFAULT_NAMES = Labels().names

SPECS: dict[str, ModelSpec] = {
    "churn": ModelSpec(
        name="churn",
        label=_DEFAULT_NAMES.churn,
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column=_DEFAULT_NAMES.churn_oracle,
        description="Probability that a customer still using the bank at as_of (not quiet: neither lapsing nor dormant) starts an exit (closure, or the first month of a dormancy run) within the label horizon.",
    ),
    "upgrade": ModelSpec(
        name="upgrade",
        label=_DEFAULT_NAMES.upgrade,
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column=_DEFAULT_NAMES.upgrade_oracle,
        description="Probability that a customer below the top value tier moves up a tier within the label horizon.",
    ),
    "clv": ModelSpec(
        name="clv",
        label=_DEFAULT_NAMES.clv,
        kind="clv",
        primary_metric="normalized_gini",
        calibration_metric="decile_mape",
        oracle_column=_DEFAULT_NAMES.clv_oracle,
        description="Discounted net revenue a customer brings over the CLV horizon.",
    ),
}


def get_spec(model: str, labels: Labels | None = None) -> ModelSpec:
    """The spec of ``model`` (label names for ``labels``' horizons, default ones without); raises on unknown models."""
    try:
        spec = SPECS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(SPECS)}") from None
    return spec if labels is None else spec.for_labels(labels)
