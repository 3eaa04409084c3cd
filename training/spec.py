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
from features.definitions import LABEL_COLUMNS, in_churn_population
from features.feature_set import CUSTOMER_MONTH_V1

#: Text feature columns that training casts to pandas ``category`` when a table does not list its own.
CATEGORICAL_COLUMNS: tuple[str, ...] = CUSTOMER_MONTH_V1.categorical_columns

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "as_of")
# LABEL_COLUMNS (declared in features.definitions): label columns with the default horizons; a table's own are in
# its metadata (``label_columns``).
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
        intended_use=(
            "Rank the customers still using the bank (not lapsing, not dormant) by churn risk each month; the "
            "calibrated probability feeds the value-at-risk figure, the value x risk segment of each customer and "
            "the retention campaign's avoided-loss value."
        ),
        out_of_scope=(
            "Decisions about an individual customer's credit, pricing or eligibility for a product.",
            "Customers already quiet at as_of (lapsing or dormant): they are outside the training population and are "
            "scored as their own segments.",
            "Estimating the effect of a retention offer: the model predicts churn, not who would stay because of a contact.",
        ),
        limitations=(
            "Churn is defined by closure or by dormancy (labels config); a customer who moves most of their money "
            "elsewhere but keeps an active account is not a churner.",
            "A dormancy exit is dated at the first of its quiet months, so its label needs horizon + k - 1 months "
            "of future data: the newest labeled months lie that far before the scoring month.",
            "Validated out of time on the newest labeled months only; behaviour shifts (new products, a downturn) "
            "need a retraining and a fresh test.",
        ),
    ),
    "upgrade": ModelSpec(
        name="upgrade",
        label=_DEFAULT_NAMES.upgrade,
        kind="binary",
        primary_metric="roc_auc",
        calibration_metric="ece",
        oracle_column=_DEFAULT_NAMES.upgrade_oracle,
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
        label=_DEFAULT_NAMES.clv,
        kind="clv",
        primary_metric="normalized_gini",
        calibration_metric="decile_mape",
        oracle_column=_DEFAULT_NAMES.clv_oracle,
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


def get_spec(model: str, labels: Labels | None = None) -> ModelSpec:
    """The spec of ``model`` (label names for ``labels``' horizons, default ones without); raises on unknown models."""
    try:
        spec = SPECS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(SPECS)}") from None
    return spec if labels is None else spec.for_labels(labels)
