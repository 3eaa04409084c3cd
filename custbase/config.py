"""The one typed configuration of custbase.

Loaded once at the edge (the CLI or the service start) with :func:`load_config` and passed down.
Every field has a default, so a new user needs no file; a YAML file (``--config`` or ``custbase.yaml``
in the working directory) overrides any subset of fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.policy import Policy


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueTiers(_Frozen):
    """Value tiers by assets under management (AUM), in the bank's currency.

    A customer's tier is the last tier whose lower bound is at or below their AUM.
    Defaults follow common practice at Chinese retail banks (CNY): mass < 50k, affluent 50k-500k,
    high-net-worth 500k-6M, private >= 6M.
    """

    names: tuple[str, ...] = ("mass", "affluent", "high_net_worth", "private")
    lower_bounds: tuple[float, ...] = (0.0, 50_000.0, 500_000.0, 6_000_000.0)
    currency: str = "CNY"

    @model_validator(mode="after")
    def _check(self) -> "ValueTiers":
        if len(self.names) != len(self.lower_bounds):
            raise ValueError("value_tiers.names and value_tiers.lower_bounds must have the same length")
        if list(self.lower_bounds) != sorted(self.lower_bounds) or self.lower_bounds[0] != 0:
            raise ValueError("value_tiers.lower_bounds must start at 0 and increase")
        return self

    @property
    def top(self) -> str:
        return self.names[-1]


class Revenue(_Frozen):
    """How monthly net revenue of a customer is derived from the raw tables.

    net revenue = sum over products of month-average balance x annual rate / 12
                  + fee transactions - cost to serve.
    Asset products earn the bank a margin (deposits) or a management fee (wealth, funds, insurance);
    loans earn their interest spread.
    """

    annual_rate: dict[str, float] = Field(
        default_factory=lambda: {
            "current_deposit": 0.020,
            "time_deposit": 0.008,
            "wealth_management": 0.006,
            "fund": 0.010,
            "insurance": 0.012,
            "mortgage": 0.012,
            "consumer_loan": 0.045,
            "credit_card": 0.090,
        }
    )
    cost_to_serve_monthly: float = 8.0


class LabelNames(BaseModel):
    """Column names that carry a horizon, derived from :class:`Labels` by :attr:`Labels.names` (the one place).

    ``churn``, ``upgrade``, ``clv``: the label columns of the customer-month table; ``*_oracle``: the simulated
    bank's ground-truth columns for exactly those events. Scores are horizon-free (``churn_probability``,
    ``upgrade_probability``); the models' horizons are in their metadata and model cards.
    """

    model_config = ConfigDict(frozen=True)

    churn: str
    upgrade: str
    clv: str
    churn_oracle: str
    upgrade_oracle: str
    clv_oracle: str

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.churn, self.upgrade, self.clv)


class Labels(_Frozen):
    """Label definitions. A row whose horizon runs past the end of the data gets a null label.

    Churn is an exit dated when it starts: a closure at its month, a dormancy exit at the first month of a run
    of ``dormancy_inactive_months`` (k) quiet months (month-end AUM below ``dormancy_aum_threshold`` and no
    customer-initiated activity). The churn label at as_of is 1 when an exit is dated in
    (as_of, as_of + ``churn_horizon_months``], so it needs H + k - 1 months of data after as_of.
    """

    churn_horizon_months: int = Field(3, ge=1)
    dormancy_aum_threshold: float = 1_000.0
    dormancy_inactive_months: int = Field(3, ge=1)
    upgrade_horizon_months: int = Field(3, ge=1)
    clv_horizon_months: int = Field(12, ge=1)
    clv_annual_discount_rate: float = 0.10

    @property
    def names(self) -> LabelNames:
        """Label and oracle column names for these horizons (``churn_3m`` ... with the defaults)."""
        churn, upgrade, clv = self.churn_horizon_months, self.upgrade_horizon_months, self.clv_horizon_months
        return LabelNames(
            churn=f"churn_{churn}m",
            upgrade=f"upgrade_{upgrade}m",
            clv=f"clv_{clv}m",
            churn_oracle=f"churn_probability_{churn}m",
            upgrade_oracle=f"upgrade_probability_{upgrade}m",
            clv_oracle=f"expected_clv_{clv}m",
        )

    @property
    def churn_future_months(self) -> int:
        """Months of data after as_of the churn label needs: H, plus k - 1 to see a dormancy run complete."""
        return self.churn_horizon_months + self.dormancy_inactive_months - 1


class Simulation(_Frozen):
    """The simulated bank (the embedded default data)."""

    customers: int = 5_000
    months: int = 36
    seed: int = 7
    start_month: str = "2023-01"
    transaction_intensity: float = 1.0
    chunk_customers: int = 50_000


class Features(_Frozen):
    feature_set: str = "customer_month_v1"
    engine: Literal["duckdb", "spark"] = "duckdb"
    duckdb_threads: int = 2
    duckdb_memory_limit: str = "12GB"


class Paths(_Frozen):
    data_dir: Path = Path("data")
    raw_dir: Path = Path("data/bank")
    features_path: Path = Path("data/customer_months.parquet")
    mlruns_dir: Path = Path("mlruns")
    scores_dir: Path = Path("data/scores")
    online_snapshot: Path = Path("data/online_features.sqlite")
    campaigns_dir: Path = Path("data/campaigns")


class Training(_Frozen):
    """How the models are trained: out-of-time split sizes, the tuning budget, threads and seeds.

    The gap between splits is the label horizon (``labels``), so no label window overlaps; only when a table
    is too short for the full train -> validation gap is that gap shortened, and the run says so.
    """

    trials: int = 30
    timeout_seconds: float | None = None
    seed: int = 42
    num_threads: int = 1
    early_stopping_rounds: int = 50
    early_stopping_min_delta: float = 1e-4  # a validation AUC / Gini gain smaller than this is noise
    max_boost_rounds: int = 2_000
    validation_months: int = 3
    test_months: int = 3
    min_train_months: int = 6
    shap_sample_rows: int = 500  # TreeSHAP costs ~10-50 ms per row on a tuned model; figures need a sample only
    log_figures: bool = True  # SHAP, gain/lift, calibration, PR and decile figures (a few seconds per run)


class Promotion(_Frozen):
    """The champion/challenger gate.

    The challenger replaces the champion only if its primary metric (ROC-AUC for binary models, normalized Gini
    for CLV) beats the champion's by at least ``margin`` on the same newest test months, and its calibration
    error (ECE for binary, decile MAPE for CLV) is not worse by more than ``calibration_tolerance``.
    """

    margin: float = 0.002
    calibration_tolerance: float = 0.01
    clv_calibration_tolerance: float = 0.05


class RetentionEconomics(_Frozen):
    """Economics of a retention campaign, used by the expected-maximum-profit measure for churn.

    Each contacted customer costs ``contact_cost``; a would-be churner who accepts the offer (probability
    ``acceptance_rate``) stays, keeps their CLV and costs ``incentive_cost``.
    """

    contact_cost: float = 5.0
    incentive_cost: float = 50.0
    acceptance_rate: float = 0.3


class Config(_Frozen):
    value_tiers: ValueTiers = ValueTiers()
    revenue: Revenue = Revenue()
    labels: Labels = Labels()
    simulation: Simulation = Simulation()
    features: Features = Features()
    paths: Paths = Paths()
    training: Training = Training()
    promotion: Promotion = Promotion()
    retention: RetentionEconomics = RetentionEconomics()
    policy: Policy = Policy()

    @model_validator(mode="after")
    def _policy_matches_tiers(self) -> "Config":
        if self.policy.top_value_tier != self.value_tiers.top:
            raise ValueError(
                f"policy.top_value_tier is {self.policy.top_value_tier!r} but the top value tier is {self.value_tiers.top!r}"
            )
        return self


DEFAULT_CONFIG_FILE = Path("custbase.yaml")


def load_config(path: Path | None = None) -> Config:
    """Load the configuration: defaults, overridden by a YAML file if one is given or found.

    Parameters
    ----------
    path
        A YAML file. Without it, ``custbase.yaml`` in the working directory is used when it exists.
    """
    if path is None:
        path = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None
    if path is None:
        return Config()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"configuration file {path} must hold a mapping of sections, got {type(data).__name__}")
    return Config.model_validate(data)
