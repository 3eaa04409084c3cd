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
    #: What the model is for (who uses its output, for which decision), distinct from the task it solves.
    intended_use: str = ""
    #: Uses the model was not built or validated for.
    out_of_scope: tuple[str, ...] = ()
    #: Known limits of the model and of how it was validated, true for every run.
    limitations: tuple[str, ...] = ()
    greater_is_better: bool = True

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name (also the experiment name)."""
        return f"custbase-{self.name}"

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
        intended_use=(
            "Rank active customers by churn risk each month so that a retention campaign contacts those whose expected "
            "value of contact (churn probability x CLV x acceptance - cost) is highest; the calibrated probability "
            "feeds the value-at-risk figure and the segment of each customer."
        ),
        out_of_scope=(
            "Decisions about an individual customer's credit, pricing or eligibility for a product.",
            "Customers already dormant at as_of (they are outside the training population).",
            "Estimating the effect of a retention offer: the model predicts churn, not who would stay because of a contact.",
        ),
        limitations=(
            "Churn is defined by closure or by dormancy (labels config); a customer who moves most of their money "
            "elsewhere but keeps an active account is not a churner.",
            "Part of the dormancy exits are easy to predict because the customer was already quiet at as_of; the "
            "run reports ROC-AUC on customers still active at as_of separately.",
            "Validated out of time on the newest labeled months only; behaviour shifts (new products, a downturn) "
            "need a retraining and a fresh test.",
        ),
    ),
    "upgrade": ModelSpec(
        name="upgrade",
        label="upgrade_3m",
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column="upgrade_probability_3m",
        description="Probability that a customer below the top value tier moves up a tier within the label horizon.",
        intended_use=(
            "Choose whom to offer an upgrade (a higher-tier relationship, wealth products) each month, by the expected "
            "value of the offer (probability x acceptance x value gain of the tier step - contact cost)."
        ),
        out_of_scope=(
            "Customers in the top value tier (no upgrade exists for them).",
            "Predicting how much a customer will invest, or the effect of an offer on the upgrade (it predicts the "
            "upgrade, not the uplift).",
            "Suitability or advice decisions, which need a separate regulatory assessment.",
        ),
        limitations=(
            "Tiers follow assets under management, so customers just below a tier boundary dominate the top scores; "
            "a logistic regression ranks them almost as well and the run compares the two.",
            "Upgrades are rare (about 2% per quarter on the simulated bank): precision in the top deciles is the "
            "figure to plan a campaign on, not ROC-AUC.",
            "Validated out of time on the newest labeled months only.",
        ),
    ),
    "clv": ModelSpec(
        name="clv",
        label="clv_12m",
        kind="clv",
        primary_metric="normalized_gini",
        calibration_metric="decile_mape",
        oracle_column="expected_clv_12m",
        description="Discounted net revenue a customer brings over the CLV horizon.",
        intended_use=(
            "Value each customer for the value x risk segmentation, for value-at-risk (churn probability x CLV) and "
            "for sizing the budget of retention and upgrade campaigns; a ranking and a planning figure."
        ),
        out_of_scope=(
            "Accounting, provisioning or any figure reported as revenue: it is a model estimate with a decile error "
            "shown in this card.",
            "Lifetime value beyond the CLV horizon (labels.clv_horizon_months).",
            "Pricing or credit decisions about an individual customer.",
        ),
        limitations=(
            "Net revenue is derived from balances and fees with configured rates (revenue config), not from the "
            "bank's ledger; wrong rates shift every CLV in the same direction.",
            "The label needs a full horizon of future data, so the newest test months are at least a horizon "
            "older than the scoring month.",
            "A few very valuable customers carry most of the value: errors in the top decile dominate RMSE.",
        ),
    ),
}


def get_spec(model: str) -> ModelSpec:
    """The spec of ``model``; raises with the known names otherwise."""
    try:
        return SPECS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(SPECS)}") from None
