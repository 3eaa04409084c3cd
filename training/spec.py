"""What each model predicts, for whom, and how it is judged.

A :class:`ModelSpec` is pure data: the label column, the eligible population, the kind of model, the
primary metric the tuner and the promotion gate compare, and the ground-truth column of the simulated bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from custbase.config import Config, Labels

CATEGORICAL_COLUMNS: tuple[str, ...] = ("gender", "city_tier", "income_band", "value_tier", "previous_value_tier")
"""Text feature columns that training casts to pandas ``category`` (the customer-month table interface)."""

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "as_of")
LABEL_COLUMNS: tuple[str, ...] = ("churn_3m", "upgrade_3m", "clv_12m")


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
        """This spec with its label column named as ``labels`` define it (the CLV label follows its horizon)."""
        from dataclasses import replace

        from features.definitions import clv_label_name

        return replace(self, label=clv_label_name(labels)) if self.name == "clv" else self

    def horizon_months(self, labels: Labels) -> int:
        """The label horizon in months: the gap left between out-of-time splits."""
        return {
            "churn": labels.churn_horizon_months,
            "upgrade": labels.upgrade_horizon_months,
            "clv": labels.clv_horizon_months,
        }[self.name]

    def eligible(self, frame: pd.DataFrame, config: Config) -> pd.Series:
        """Boolean mask of the rows this model is trained and scored on (label known, population eligible)."""
        labeled = frame[self.label].notna()
        if self.name == "churn" and "is_dormant" in frame.columns:
            return labeled & (frame["is_dormant"].fillna(0) == 0)
        if self.name == "upgrade" and "value_tier" in frame.columns:
            return labeled & (frame["value_tier"].astype("str") != config.value_tiers.top)
        return labeled

    def target(self, frame: pd.DataFrame) -> np.ndarray:
        """The label as a float array (0/1 for binary models, currency for CLV)."""
        return frame[self.label].to_numpy(dtype="float64")


SPECS: dict[str, ModelSpec] = {
    "churn": ModelSpec(
        name="churn",
        label="churn_3m",
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column="churn_probability_3m",
        description="Probability that an active, non-dormant customer churns within the label horizon.",
    ),
    "upgrade": ModelSpec(
        name="upgrade",
        label="upgrade_3m",
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column="upgrade_probability_3m",
        description="Probability that a customer below the top value tier moves up a tier within the label horizon.",
    ),
    "clv": ModelSpec(
        name="clv",
        label="clv_12m",
        kind="clv",
        primary_metric="normalized_gini",
        calibration_metric="decile_mape",
        oracle_column="expected_clv_12m",
        description="Discounted net revenue a customer brings over the CLV horizon.",
    ),
}


def get_spec(model: str) -> ModelSpec:
    """The spec of ``model``; raises with the known names otherwise."""
    try:
        return SPECS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(SPECS)}") from None
