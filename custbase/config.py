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


class Labels(_Frozen):
    """Label definitions. A row whose horizon runs past the end of the data gets a null label."""

    churn_horizon_months: int = 3
    dormancy_aum_threshold: float = 1_000.0
    dormancy_inactive_months: int = 3
    upgrade_horizon_months: int = 3
    clv_horizon_months: int = 12
    clv_annual_discount_rate: float = 0.10


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


class Config(_Frozen):
    value_tiers: ValueTiers = ValueTiers()
    revenue: Revenue = Revenue()
    labels: Labels = Labels()
    simulation: Simulation = Simulation()
    features: Features = Features()
    paths: Paths = Paths()


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
