"""The one typed configuration of custbase.

Loaded once at the edge (the CLI or the service start) with :func:`load_config` and passed down.
Every field has a default, so a new user needs no file; a YAML file (``--config`` or ``custbase.yaml``
in the working directory) overrides any subset of fields.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator



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
    """What a customer is worth to the business each month: the value behind ``net_revenue_*`` and the CLV label.

    net revenue = sum over products of month-average balance x ``annual_rate[product]`` / 12
                  + sum over transaction categories of the month's amount x ``transaction_rate[category]``
                  - ``cost_to_serve_monthly`` (every month the customer is a customer).
    The bank default: asset products earn a margin (deposits) or a management fee (wealth, funds, insurance),
    loans their interest spread, fee transactions count in full, card spend earns nothing (add its interchange
    rate, e.g. ``card_spend: 0.01``). A retailer's purchase log: ``transaction_rate: {card_spend: 1.0}``,
    ``annual_rate: {}``, ``cost_to_serve_monthly: 0``. Whether a category earns revenue is independent of
    whether it counts as the customer's own activity (that is the contract's customer-initiated rule).
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
    transaction_rate: dict[str, float] = Field(default_factory=lambda: {"fee": 1.0})
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


def check_database_uri(uri: str, setting: str = "raw.source") -> str:
    """``uri`` if it is a ``postgresql://user@host:port/database`` URI without a password; else a ValueError.

    A password never goes in a configuration file or on a command line (both end up in logs and shell
    history): libpq reads it from ``PGPASSWORD``, ``~/.pgpass`` or the file ``PGPASSFILE`` names.
    """
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{setting} must be a postgresql://user@host:port/database URI, not one of scheme {parts.scheme or '(none)'!r}")
    if parts.password is not None or "password" in {key.lower() for key in parse_qs(parts.query)}:
        raise ValueError(f"{setting} holds a password: remove it from the URI and give it in the environment (PGPASSWORD) "
                         "or a secrets file (~/.pgpass, or the file PGPASSFILE names)")
    if not parts.hostname:
        raise ValueError(f"{setting} names no host: write postgresql://user@host:port/database")
    return uri


class Raw(_Frozen):
    """Where the raw tables come from: the folder ``paths.raw_dir`` (default), or the bank's database.

    ``source``: a ``postgresql://user@host:port/database`` URI with no password in it (see
    :func:`check_database_uri`). ``tables``: custbase's table name -> the bank's table or view (``core.postings``),
    for the tables whose names differ; the columns must carry the contract's names (a view can rename them).
    """

    source: str | None = None
    tables: dict[str, str] = Field(default_factory=dict)

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str | None) -> str | None:
        return None if value is None else check_database_uri(value, setting="the URI")

    @model_validator(mode="after")
    def _check(self) -> "Raw":
        if self.tables and self.source is None:
            raise ValueError("raw.tables maps the tables of a database: set raw.source too")
        return self


class Paths(_Frozen):
    data_dir: Path = Path("data")
    raw_dir: Path = Path("data/bank")
    features_path: Path = Path("data/customer_months.parquet")
    mlruns_dir: Path = Path("mlruns")
    #: Where run artifacts go; default: ``artifacts/`` beside the tracking store's SQLite file (never ./mlruns of the cwd).
    artifact_root: Path | None = None
    scores_dir: Path = Path("data/scores")
    online_snapshot: Path = Path("data/online_features.sqlite")
    campaigns_dir: Path = Path("data/campaigns")
    #: The monthly cycle's record (``custbase cycle``): one row per month and step, beside the scores.
    ledger_path: Path = Path("data/ledger.parquet")


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
    # At most this many eligible rows before the test months are read; above it customers are sampled (all
    # positive customers, a weighted share of the others; training.sample). None: read every customer.
    sample_max_rows: int | None = Field(1_500_000, ge=1_000)
    sample_tail_quantile: float = Field(0.9, gt=0, lt=1)  # CLV: customers above it are kept like positives
    # The logistic baseline of a binary model is fit on a uniform draw of customers holding at most this many
    # training rows (its coefficients settle long before a bank's millions; the rows keep their weights).
    baseline_max_rows: int | None = Field(300_000, ge=1_000)
    # The drift reference (feature and score bins, training.drift) reads at most this many training rows, the
    # same way.
    reference_max_rows: int | None = Field(300_000, ge=1_000)


class Promotion(_Frozen):
    """The champion/challenger gate.

    The challenger replaces the champion only if its primary metric (ROC-AUC for binary models, normalized Gini
    for CLV) beats its own baseline's (``require_beating_baseline``) and the champion's by at least ``margin`` on
    the same newest test months, and its calibration error (ECE for binary, decile MAPE for CLV) is not worse by
    more than ``calibration_tolerance``.
    """

    margin: float = 0.002
    calibration_tolerance: float = 0.01
    clv_calibration_tolerance: float = 0.05
    #: A challenger whose primary metric does not beat its baseline's (same run, same test months) is refused.
    require_beating_baseline: bool = True


class RetentionEconomics(_Frozen):
    """Economics of a retention campaign as the expected-maximum-profit measure of churn training reads them.

    Not configured on its own: :attr:`Config.retention` derives it from the one campaign policy
    (:class:`Policy`), so training, serving and campaigns use the same contact cost and acceptance rate.
    """

    contact_cost: float = 5.0
    incentive_cost: float = 0.0
    acceptance_rate: float = 0.25


class Policy(BaseModel):
    """Thresholds, contact costs, acceptance rates and value gains of the segmentation and action policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_value_tier: str = Field("private", description="Tier with no upgrade; must equal config.value_tiers.top.")
    # segmentation
    at_risk_churn_probability: float = Field(0.30, ge=0, le=1, description="Churn probability from which a customer is at risk.")
    key_customer_clv: float = Field(5_000.0, ge=0, description="12-month CLV from which a customer is high value.")
    key_customer_tiers: tuple[str, ...] = Field(("high_net_worth", "private"), description="Tiers always high value.")
    growth_upgrade_probability: float = Field(0.20, ge=0, le=1, description="Upgrade probability for growth potential.")
    # actions
    retention_contact_cost: float = Field(5.0, ge=0, description="Cost of a retention contact (outbound call or message; an RM visit costs ~50).")
    retention_acceptance_rate: float = Field(0.25, ge=0, le=1, description="Share of would-be churners a retention contact keeps.")
    retention_offer_rate: float = Field(
        0.0003, ge=0, description="Retention offer: a deposit-rate bonus; its cost per acceptor as a share of AUM "
        "(+0.12% a year for 3 months ~ 0.03%). Every acceptor is paid, including those who would have stayed.")
    retention_offer_take_up: float = Field(0.3, ge=0, le=1, description="Planning share of contacted customers who accept the retention offer.")
    upgrade_contact_cost: float = Field(30.0, ge=0, description="Cost of an upgrade offer.")
    upgrade_offer_rate: float = Field(
        0.002, ge=0, description="Upgrade offer: a bonus on the new wealth product; its cost per acceptor as a share of AUM.")
    upgrade_offer_take_up: float = Field(0.1, ge=0, le=1, description="Planning share of contacted customers who accept the upgrade offer.")
    holdout_share: float = Field(0.10, ge=0, lt=1, description="Share of every campaign list kept as a randomized holdout (not contacted).")
    upgrade_acceptance_rate: float = Field(0.5, ge=0, le=1, description="Share of the upgrade propensity an offer turns into a tier step.")
    upgrade_value_gain: dict[str, float] = Field(
        default_factory=lambda: {"mass": 1_500.0, "affluent": 6_000.0, "high_net_worth": 30_000.0},
        description="Extra net revenue over the horizon from one tier step up, by current tier.",
    )
    cross_sell_contact_cost: float = Field(10.0, ge=0, description="Cost of a cross-sell contact.")
    cross_sell_acceptance_rate: float = Field(0.05, ge=0, le=1, description="Share of contacted customers who open a product.")
    cross_sell_clv_uplift: float = Field(0.15, ge=0, description="CLV increase (fraction) from one more product.")
    cross_sell_max_products: int = Field(3, ge=0, description="Cross-sell only to customers holding fewer products.")
    nurture_contact_cost: float = Field(0.5, ge=0, description="Cost of a digital nurture message.")
    nurture_acceptance_rate: float = Field(0.01, ge=0, le=1, description="Share of would-be churners a nurture message keeps.")
    min_expected_value: float = Field(0.0, description="An action is recommended only when its EV exceeds this.")

    @model_validator(mode="after")
    def _check(self) -> "Policy":
        if self.top_value_tier in self.upgrade_value_gain:
            raise ValueError(f"upgrade_value_gain must not name the top tier {self.top_value_tier!r}: it has no upgrade")
        return self


class Monitoring(_Frozen):
    """Drift checks on every scoring run and the backtest of matured months (``serving.monitoring``).

    Population stability index (PSI) of each feature and score against the champion's training rows:
    below ``psi_warn`` stable, from ``psi_warn`` a moderate shift (warning), from ``psi_alert`` a major one.
    """

    psi_bins: int = Field(10, ge=2, description="Quantile bins of a numeric feature in the reference profile.")
    psi_warn: float = Field(0.10, gt=0, description="PSI from which a feature or score is reported as shifted.")
    psi_alert: float = Field(0.25, gt=0, description="PSI from which a shift is major.")
    top_features: int = Field(10, ge=1, description="Features per model shown in the report's drift table.")
    backtest_months: int = Field(12, ge=1, description="Newest matured months the backtest scores.")

    @model_validator(mode="after")
    def _check(self) -> "Monitoring":
        if self.psi_alert < self.psi_warn:
            raise ValueError(f"monitoring.psi_alert ({self.psi_alert}) must be at least monitoring.psi_warn ({self.psi_warn})")
        return self


class Cycle(_Frozen):
    """``custbase cycle --month YYYY-MM``: the month's steps in one resumable command (``custbase.cycle``)."""

    retrain_every_months: int = Field(3, ge=1, description="Retrain, gate and build when this many months have passed since the cycle's last retraining.")
    retrain_on_drift: bool = Field(True, description="Also retrain in a month whose drift check raises an alarm.")
    drift_alarm_psi: float | None = Field(None, gt=0, description="A model score's PSI from which the month's drift is an alarm (default: monitoring.psi_alert).")
    campaign_budget: int = Field(200, ge=1, description="Contacts of each of the month's retention and upgrade lists.")
    retrain_uplift: bool = Field(True, description="A retraining also tunes the retention and upgrade uplift models.")


class Fairness(_Frozen):
    """Group metrics in the binary model cards, and whether protected attributes may be features."""

    protected_attributes: tuple[str, ...] = ("age", "gender")
    exclude_protected_attributes: bool = False  # True: models never see them (the card still reports by group)
    age_band_bounds: tuple[int, ...] = (30, 45, 60)  # lower bounds of the bands after the first: <30, 30-44, ...
    roc_auc_gap: float = Field(0.05, ge=0, description="Flag a group whose ROC-AUC is this far below the overall one.")
    calibration_gap: float = Field(0.02, ge=0, description="Flag a group whose mean prediction misses its rate by this (and 2 s.e.).")
    min_group_rows: int = Field(50, ge=1, description="Groups with fewer rows are listed but not flagged.")


class Config(_Frozen):
    value_tiers: ValueTiers = ValueTiers()
    revenue: Revenue = Revenue()
    labels: Labels = Labels()
    simulation: Simulation = Simulation()
    features: Features = Features()
    paths: Paths = Paths()
    raw: Raw = Raw()
    training: Training = Training()
    promotion: Promotion = Promotion()
    policy: Policy = Policy()
    monitoring: Monitoring = Monitoring()
    fairness: Fairness = Fairness()
    cycle: Cycle = Cycle()

    @property
    def retention(self) -> RetentionEconomics:
        """Retention economics for churn training's profit measure, derived from :attr:`policy` (one source)."""
        return RetentionEconomics(
            contact_cost=self.policy.retention_contact_cost,
            incentive_cost=0.0,  # the rate bonus scales with balances; campaigns and backtests price it per customer
            acceptance_rate=self.policy.retention_acceptance_rate,
        )

    @model_validator(mode="after")
    def _policy_matches_tiers(self) -> "Config":
        if self.policy.top_value_tier != self.value_tiers.top:
            raise ValueError(
                f"policy.top_value_tier is {self.policy.top_value_tier!r} but the top value tier is {self.value_tiers.top!r}"
            )
        tiers = tuple(self.value_tiers.names)
        for setting, named in (("policy.key_customer_tiers", self.policy.key_customer_tiers),
                               ("policy.upgrade_value_gain", tuple(self.policy.upgrade_value_gain))):
            unknown = [t for t in named if t not in tiers]
            if unknown:
                raise ValueError(f"{setting} names {', '.join(map(repr, unknown))}, which is not a value tier "
                                 f"(value_tiers.names: {', '.join(tiers)})")
        return self


DEFAULT_CONFIG_FILE = Path("custbase.yaml")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file, the setting and the fix."""


def _section_fields(loc: tuple) -> list[str]:
    """The setting names allowed where ``loc`` (a pydantic error location) points: its parent model's fields."""
    model: type[BaseModel] = Config
    for key in loc[:-1]:
        field = model.model_fields.get(str(key)) if isinstance(key, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def describe_errors(err: ValidationError, source: str) -> str:
    """One line per problem of ``err``: ``source: labels.churn_horizon is not a setting; did you mean ...?``"""
    problems = []
    for error in err.errors():
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _section_fields(loc), n=1, cutoff=0.5)
            parent = ".".join(str(part) for part in loc[:-1])
            hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else (
                f"the settings here are {', '.join(_section_fields(loc))}")
            problems.append(f"{where} is not a setting; {hint}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            got = f" (got {error['input']!r})" if error["type"] != "value_error" and not isinstance(error["input"], dict) else ""
            problems.append(f"{where}: {message}{got}")
    return f"{source}: " + "; ".join(problems)


def load_config(path: Path | None = None) -> Config:
    """Load the configuration: defaults, overridden by a YAML file if one is given or found.

    Parameters
    ----------
    path
        A YAML file. Without it, ``custbase.yaml`` in the working directory is used when it exists.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or names a setting that does not exist or a value that is not allowed
        (with "did you mean" for a misspelt setting).
    """
    if path is None:
        path = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"configuration file {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, f"configuration file {path}")) from None
