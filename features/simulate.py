"""The simulated retail bank: the embedded default data of custbase.

``simulate_bank`` writes every table of the raw-data contract (``features.contract``) plus a
``ground_truth`` table that no feature builder reads, so that a new user can run the whole platform
without data of their own, and tests and benchmarks can compare a model with the best achievable.

How the bank works (one month at a time, vectorised over a chunk of customers)
-------------------------------------------------------------------------------
- **Customers** onboard over time: about 55 % are the existing book (onboarded before the first
  month), the rest join during the window, slightly more towards its end. Static traits: age, gender,
  city tier, income, a payroll flag (salary credited here), an activity level (about a third are
  low-activity accounts), a digital propensity, an income-growth rate.
- **Wealth**: each customer has a target wealth at the bank (lognormal in income, age, tenure) that
  grows with income; assets under management (AUM) revert towards it in log space, with noise,
  December bonuses, Chinese-New-Year spending and jumps when a wealth product (wealth management,
  fund, insurance) is adopted (money consolidated from other banks). AUM is split over the held asset
  products; mortgages and consumer loans amortise; credit-card balances follow card spending.
- **Engagement** is a latent AR(1) process around a customer baseline. It falls with complaints, the
  loss of payroll, competitor rate shocks (a few global months hitting time-deposit-heavy customers)
  and occasional disaffection episodes that lower the baseline, so decline is gradual. Low engagement
  lowers transactions and logins and drains AUM.
- **Churn**: each month an active customer starts leaving with a monthly hazard
  ``sigmoid(logit)`` whose drivers are low engagement, no payroll, recent loss of payroll, complaints
  in the last 3 months, falling AUM over 3 months, few products, a recent rate shock times the
  time-deposit share, short tenure, low activity and low AUM. A leaver either *closes* (a
  ``closures`` row that month, remaining money transferred out) or *goes dormant*: in the leaving
  month the customer transfers out everything but a residual below
  ``config.labels.dormancy_aum_threshold`` and pays off loans; from the next month on there is no
  customer-initiated activity at all while the account stays open (only interest and fees post).
  ``exit_month`` is dated as the churn label dates it, when the exit starts: the closure month, or for
  dormancy the first quiet month (no customer-initiated activity, AUM below the threshold), the month
  after the drain; the label builder sees it once ``config.labels.dormancy_inactive_months`` quiet
  months have passed.
- **Upgrades** come from income growth, the ramp-up of new customers and wealth-product adoption.
- **Campaigns** (as the field sees them): every month a retention, an upgrade and a cross-sell campaign
  aimed by the bank's rule (recent complaints, little activity, value), randomised into treated (80 %)
  and a control group (``treated = False``), plus an **exploration sample**: ``EXPLORATION_SHARE`` of
  all active customers drawn at random for each of the retention and upgrade offers (campaign ids
  ending in ``-exploration``), half of them treated. Responses are heterogeneous and only weakly,
  mostly negatively, tied to risk, as in two field experiments where the highest-risk customers were
  not the best targets and a contact raised churn for some (Ascarza, "Retention Futility: Targeting
  High-Risk Customers Might Be Ineffective", JMR 2018); targeting by expected profit rather than risk
  (Lemmens and Gupta, "Managing Churn to Maximize Profits", Marketing Science 2020) therefore pays.
  A retention offer multiplies the leaving hazard of the contact month and the two after by
  ``1 - retention_effect``: *persuadables* (rate-sensitive time-deposit holders, payroll customers)
  up to 0.85 lower, *lost causes* (payroll lost in the last 6 months) about 0, *sleeping dogs*
  (recent complainers, sleeping low-activity accounts) up to twice the hazard. ``RETENTION_EFFECT``
  holds the coefficients; a per-customer latent part (sd ``RETENTION_EFFECT_LATENT_SD``) is unseen.
  Upgrade offers raise (or, for older offline customers, lower) the month's wealth-product adoption.
  **Every acceptor costs the offer** (``config.policy``: a deposit-rate bonus of
  ``retention_offer_rate`` x AUM, a wealth-product bonus of ``upgrade_offer_rate`` x AUM), including
  those who would have stayed or adopted anyway: acceptance is ``responded``.
- **Revenue** follows the label builder's formula: sum of month-average balance x
  ``config.revenue.annual_rate`` / 12 + fee transactions - ``cost_to_serve_monthly``.

Ground truth (one row per customer and month-end while the account is open, dormant included; the
horizon columns are named by ``config.labels.names``, ``churn_probability_3m`` ... with the defaults):
``churn_hazard`` (probability of starting to leave next month; for a customer who drained this month,
1: the dormancy exit is dated next month), ``churn_probability_<H>m`` (probability that ``exit_month``
falls in the next H = ``churn_horizon_months`` months: exactly the churn label's event, from the true
state with engagement projected forward; 1 for a customer who drained this month, 0 once the exit is
past), ``upgrade_probability_<H>m`` (value tier at month + H above today's; 0 for the top tier),
``value_tier``, ``expected_net_revenue`` (next month), ``expected_clv_<H>m``, ``campaign_effect`` (drop
in the churn probability if given a retention offer next month), ``upgrade_campaign_effect`` (rise in
the upgrade probability if given an upgrade offer next month), ``engagement``, ``exit_month``,
``exit_type``, and ``retention_offer_cost`` and ``upgrade_offer_cost`` (expected offer cost of such a contact:
true probability of ``responded`` (retention: accepting, or opening a time deposit unprompted, which the bank
cannot tell apart and pays) x the offer's price for this customer; ``campaign_effect`` is negative for
sleeping dogs). The true incremental value of a contact is ``effect x value - contact cost - offer cost``
(value: the expected CLV for retention, the policy's ``upgrade_value_gain`` of the tier for upgrade).

Determinism: the output depends on the seed, the settings **and the chunk size**: chunk ``k`` draws
from ``np.random.default_rng([seed, k])``, global events (rate-shock months) from their own stream,
the exploration samples from ``[seed, k, 1]``.

Month by month
--------------
``settings.months`` is the bank's planned horizon. ``simulate_bank(..., until="YYYY-MM")`` writes the history
only through that month, and ``continue_bank`` later writes the next month(s), as new data lands at a bank. Both
re-simulate the same bank from its start (same seed, settings and configuration, kept in the manifest) and write
only what is dated in the months asked for: the month partitions of the partitioned tables, and the single-file
tables (customers, campaign contacts, closures) rewritten with every row dated through the new month. So a bank
simulated to M and continued to M + 1, M + 2 holds exactly the rows of one full run through M + 2. The cost is a
re-simulation of the whole history per continuation (the writing is what is saved); the horizon cannot be
extended, since it shapes the onboarding and the market's rate shocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.special import expit, ndtr

from custbase.config import Config, Labels, Simulation
from features.contract import (
    ASSET_PRODUCTS,
    CHANNELS,
    CITY_TIERS,
    DIRECTIONS,
    GENDERS,
    GROUND_TRUTH_TABLE,
    INCOME_BANDS,
    INTERACTION_KINDS,
    MANIFEST_FILE,
    OFFERS,
    PARTITION_KEY,
    PRODUCTS,
    TABLES,
    TRANSACTION_CATEGORIES,
    check_revenue_names,
)
from features.raw import read_manifest, write_manifest

__all__ = ["SimulationError", "SimulationSummary", "simulate_bank", "continue_bank", "EXIT_TYPES"]

EXIT_TYPES: tuple[str, ...] = ("none", "closure", "dormancy")
_PARTITIONED = ("balances", "transactions", "interactions", GROUND_TRUTH_TABLE)

# --- codes -------------------------------------------------------------------------------------------
_CAT = {name: i for i, name in enumerate(TRANSACTION_CATEGORIES)}
_CH = {name: i for i, name in enumerate(CHANNELS)}
_DIR = {name: i for i, name in enumerate(DIRECTIONS)}
_KIND = {name: i for i, name in enumerate(INTERACTION_KINDS)}
_PROD = {name: i for i, name in enumerate(PRODUCTS)}
CD, TD, WM, FUND, INS = range(5)  # positions in ASSET_PRODUCTS
assert ASSET_PRODUCTS == ("current_deposit", "time_deposit", "wealth_management", "fund", "insurance")
_WEALTH = np.array([WM, FUND, INS])
_PARTITION = "{key}={period}"

# --- the bank's behavioural parameters (documented in the module docstring) ----------------------------
EXISTING_BOOK_SHARE = 0.55
TREATED_SHARE = 0.8
#: Share of active customers drawn at random each month into each of the retention and upgrade exploration
#: samples, and the treated share within them. 5 % of a 50k bank is ~1,100 randomized contacts per offer and
#: month, ~45,000 over the labeled months: at 3 % the retention uplift model's test Qini was 0.87 x the true
#: effect's on the same 4,000 rows, too close to the noise (field experiments: Ascarza 2018 randomized
#: ~5,000-20,000 customers per experiment; uplift models need both arms at every level of the features).
EXPLORATION_SHARE = 0.05
EXPLORATION_TREATED_SHARE = 0.5
#: Relative drop in the leaving hazard from a retention offer (negative: the contact pushes the customer out).
RETENTION_EFFECT = {
    "intercept": 0.1,
    "time_deposit_share": 1.2,  # rate-sensitive savers value a rate bonus: the persuadables
    "payroll": 0.3,  # main-bank customers listen to their relationship manager
    "complained_3m": -0.7,  # a sales call after a complaint backfires (sleeping dogs)
    "low_activity": -0.3,  # a call reminds a sleeping account that it exists (sleeping dogs)
}
RETENTION_EFFECT_RANGE = (-1.0, 0.85)
RETENTION_EFFECT_LATENT_SD = 0.15
ENGAGEMENT_PERSISTENCE = 0.82
ENGAGEMENT_NOISE = 0.28
WEALTH_REVERSION = 0.06
WEALTH_REVERSION_NEW = 0.15
ADOPTION_BASE = 0.008  # monthly probability of adopting a wealth product, before drivers
#: Monthly probability of opening a time deposit unprompted. A contacted customer who does counts as accepting
#: the retention offer (``responded``) and is paid it, so the true expected offer cost includes it.
TIME_DEPOSIT_OPENING = 0.008
ADOPTION_JUMP = (0.2, 1.0)  # log AUM gained when a wealth product is adopted (uniform range)
WINDFALL_RATE = 0.01  # monthly probability of a windfall (inheritance, property sale), partly kept
WINDFALL_JUMP = (0.4, 1.6)
DRAIN_PER_ENGAGEMENT = 0.14
HAZARD_CAP = 0.6
CLOSURE_SHARE = 0.5  # baseline probability that a leaver closes rather than goes dormant

#: Coefficients of the monthly churn-hazard logit.
HAZARD = {
    "intercept": -4.45,
    "engagement": -0.8,
    "payroll": -1.3,
    "payroll_lost_6m": 0.7,
    "complaints_3m": 0.55,
    "aum_fall_3m": 1.0,
    "product_count": -0.25,
    "rate_shock_x_time_deposit_share": 2.0,
    "tenure_under_12m": 0.6,
    "low_activity": 0.35,
    "log_aum": -0.08,
}

#: Customer-initiated transaction mix: category -> (share, median amount, log-sd).
_SPEND_MIX = {
    "card_spend": (0.42, 120.0, 1.0),
    "transfer": (0.22, 1500.0, 1.2),
    "bill_payment": (0.13, 220.0, 0.8),
    "cash": (0.09, 600.0, 0.7),
    "investment": (0.05, 0.0, 0.6),  # amount is a share of AUM
    "other": (0.09, 300.0, 1.2),
}
#: Share of inbound rows per category (the rest are outbound).
_INBOUND = {"card_spend": 0.0, "transfer": 0.45, "bill_payment": 0.0, "cash": 0.15, "investment": 0.45, "other": 0.5}

#: Chinese New Year (first day of the Spring Festival); other years fall back to February.
_CNY = {2015: 2, 2016: 2, 2017: 1, 2018: 2, 2019: 2, 2020: 1, 2021: 2, 2022: 2, 2023: 1, 2024: 2, 2025: 1,
        2026: 2, 2027: 2, 2028: 1, 2029: 2, 2030: 2, 2031: 1, 2032: 2, 2033: 1, 2034: 2, 2035: 2}


class SimulationError(ValueError):
    """The simulation cannot run with these settings or into this folder."""


@dataclass(frozen=True)
class SimulationSummary:
    """What ``simulate_bank`` wrote, and the structure of the simulated bank."""

    out_dir: Path
    customers: int
    months: int
    start_month: str
    data_end: date
    rows: dict[str, int]
    oracle_churn_auc: float
    churn_rate_by_quarter: tuple[tuple[str, float], ...]
    upgrade_rate_3m: float
    tier_shares: dict[str, float]
    top_decile_aum_share: float
    transactions_per_active_month: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    churn_horizon_months: int = 3
    #: first and last month written by this call (a month-by-month bank writes part of its horizon)
    written_months: tuple[str, str] | None = None

    @property
    def _horizon_end(self) -> date:
        end = np.datetime64(self.start_month, "M") + self.months
        return (end.astype("datetime64[D]") - np.timedelta64(1, "D")).astype(date)

    @property
    def mean_quarterly_churn_rate(self) -> float:
        rates = [r for _, r in self.churn_rate_by_quarter]
        return float(np.mean(rates)) if rates else float("nan")

    def render(self) -> str:
        rows = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        first, last = self.written_months or ("", "")
        if self.written_months and (first != self.start_month or self.data_end != self._horizon_end):
            span = first if first == last else f"{first}..{last}"
            return (f"simulated bank in {self.out_dir}: wrote {span} of its {self.customers:,} customers x {self.months} "
                    f"months from {self.start_month}; data end {self.data_end.isoformat()}, {self.seconds:.1f} s\n"
                    f"rows written: {rows}")
        tiers = ", ".join(f"{name} {share:.1%}" for name, share in self.tier_shares.items())
        quarters = " ".join(f"{q}:{r:.1%}" for q, r in self.churn_rate_by_quarter)
        return "\n".join(
            [
                f"simulated bank in {self.out_dir}: {self.customers:,} customers x {self.months} months "
                f"from {self.start_month}, data end {self.data_end.isoformat()}, {self.seconds:.1f} s",
                f"rows: {rows}",
                f"value tiers at data end: {tiers}; top decile holds {self.top_decile_aum_share:.1%} of AUM",
                f"churn per quarter on customers still using the bank (mean {self.mean_quarterly_churn_rate:.2%}): {quarters}",
                f"oracle churn AUC (true probability of an exit dated in the next {self.churn_horizon_months} months): "
                f"{self.oracle_churn_auc:.3f}; "
                f"3-month upgrade rate below the top tier: {self.upgrade_rate_3m:.2%}",
                f"transactions per active customer-month: {self.transactions_per_active_month:.1f}",
            ]
        )


# ==========================================================================================================
# Public entry point
# ==========================================================================================================


def simulate_bank(settings: Simulation, out_dir: Path, *, config: Config, progress: bool = True,
                  until: str | None = None) -> SimulationSummary:
    """Simulate a retail bank and write the contract tables, ground truth and manifest to ``out_dir``.

    Parameters
    ----------
    settings
        Size, seed, first month, transaction intensity and chunk size.
    out_dir
        Target folder. An existing simulated bank there is replaced; a non-empty folder without a
        simulated-bank ``manifest.json`` is refused, so user data is never overwritten.
    config
        The value tiers, revenue rates and label thresholds the simulation must respect.
    progress
        Show a progress bar over chunks and months.
    until
        Last month to write (``YYYY-MM``, within the horizon); default: the whole horizon. ``continue_bank``
        writes the months after it later.

    Returns
    -------
    SimulationSummary
        Row counts, data end, oracle churn AUC, churn per quarter, tier shares and timing (the summary figures
        describe the whole simulated horizon; the rows and the data end what was written).
    """
    _check_settings(settings)
    check_revenue_names(config.revenue)
    calendar_ = _Calendar.build(settings.start_month, settings.months)
    last = _month_index(calendar_, until, settings) if until else settings.months - 1
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    write_manifest(out_dir, source="simulated", status="writing", seed=settings.seed)
    return _simulate_window(settings, out_dir, config, calendar_, 0, last, progress)


def continue_bank(out_dir: Path, *, config: Config, until: str | None = None, progress: bool = True) -> SimulationSummary:
    """Write the next month (or the months through ``until``) of a bank simulated month by month into ``out_dir``.

    The bank's settings and how far it is written come from its manifest; ``config`` must hold the value tiers,
    revenue rates, label thresholds and policy it was simulated with. A continuation interrupted half-way is
    redone by the next call (the manifest moves on only once every table is written).

    Raises
    ------
    SimulationError
        No simulated bank in ``out_dir``, another configuration, ``until`` not after the written months, or the
        bank already written through its last planned month.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir) if (out_dir / MANIFEST_FILE).exists() else {}
    keys = ("seed", "customers", "months", "start_month", "transaction_intensity", "chunk_customers", "simulated_through")
    if manifest.get("source") != "simulated" or any(k not in manifest for k in keys):
        raise SimulationError(
            f"{out_dir} holds no bank simulated month by month ({MANIFEST_FILE} with source 'simulated' and "
            "simulated_through): create one with `custbase simulate --out DIR --until YYYY-MM`")
    settings = config.simulation.model_copy(update={k: manifest[k] for k in keys if k != "simulated_through"})
    check_revenue_names(config.revenue)
    if manifest.get("config_digest") != simulation_config_digest(config):
        raise SimulationError(
            f"the configuration's value_tiers / revenue / labels / policy differ from those {out_dir} was simulated "
            "with: continue with the same --config, or simulate a new bank")
    calendar_ = _Calendar.build(settings.start_month, settings.months)
    done = calendar_.periods.index(manifest["simulated_through"])
    if done == settings.months - 1:
        raise SimulationError(
            f"{out_dir} is simulated through {calendar_.periods[-1]}, the last month of its {settings.months}-month "
            "horizon: simulate a new bank with more --months to go further")
    last = _month_index(calendar_, until, settings) if until else done + 1
    if last <= done:
        raise SimulationError(f"{out_dir} is already simulated through {calendar_.periods[done]}: --until must be a later month")
    write_manifest(out_dir, status="writing")
    return _simulate_window(settings, out_dir, config, calendar_, done + 1, last, progress)


def simulation_config_digest(config: Config) -> str:
    """A digest of the configuration sections the simulated bank depends on (a continuation must use the same)."""
    sections = {name: getattr(config, name).model_dump(mode="json") for name in ("value_tiers", "revenue", "labels", "policy")}
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _month_index(cal: _Calendar, month: str, settings: Simulation) -> int:
    if month not in cal.periods:
        raise SimulationError(
            f"month {month!r} is outside the simulated horizon {cal.periods[0]}..{cal.periods[-1]} "
            f"(--start {settings.start_month}, --months {settings.months}); give a month written YYYY-MM within it")
    return cal.periods.index(month)


def _simulate_window(settings: Simulation, out_dir: Path, config: Config, calendar_: _Calendar, first_month: int, last_month: int,
                     progress: bool) -> SimulationSummary:
    """Simulate the whole horizon and write months ``first_month`` .. ``last_month`` (indexes), then mark the manifest complete."""
    started = time.perf_counter()
    n_chunks = -(-settings.customers // settings.chunk_customers)
    ctx = _Context(settings=settings, config=config, calendar=calendar_, shocks=_rate_shocks(settings.seed, calendar_))
    whole = first_month == 0 and last_month == settings.months - 1
    sink = _Sink(out_dir) if whole else _WindowSink(out_dir, calendar_, first_month, last_month)
    stats = _Stats(months=settings.months, sample_rate=min(1.0, 3_000_000 / (settings.customers * settings.months)))
    from tqdm.auto import tqdm

    with tqdm(total=n_chunks * settings.months, desc="simulating bank", unit="month", disable=not progress) as bar:
        for chunk in range(n_chunks):
            first = chunk * settings.chunk_customers
            n = min(settings.chunk_customers, settings.customers - first)
            bar.set_postfix_str(f"chunk {chunk + 1}/{n_chunks}")
            _simulate_chunk(ctx, chunk, first, n, sink, stats, bar)
    sink.close()

    data_end = calendar_.month_end_dates[last_month]
    write_manifest(
        out_dir,
        data_end=data_end,
        source="simulated",
        status="complete",
        seed=settings.seed,
        customers=settings.customers,
        months=settings.months,
        start_month=settings.start_month,
        currency=config.value_tiers.currency,
        transaction_intensity=settings.transaction_intensity,
        chunk_customers=settings.chunk_customers,
        simulated_through=calendar_.periods[last_month],
        config_digest=simulation_config_digest(config),
    )
    summary = stats.summary(out_dir, settings, config, calendar_, sink.rows, time.perf_counter() - started)
    return replace(summary, data_end=data_end, written_months=(calendar_.periods[first_month], calendar_.periods[last_month]))


def _check_settings(settings: Simulation) -> None:
    problems = []
    if settings.customers < 1:
        problems.append(f"customers must be >= 1, got {settings.customers}")
    if settings.months < 1:
        problems.append(f"months must be >= 1, got {settings.months}")
    if settings.chunk_customers < 1:
        problems.append(f"chunk_customers must be >= 1, got {settings.chunk_customers}")
    if settings.transaction_intensity < 0:
        problems.append(f"transaction_intensity must be >= 0, got {settings.transaction_intensity}")
    try:
        year, month = (int(x) for x in settings.start_month.split("-"))
        date(year, month, 1)
    except ValueError:
        problems.append(f"start_month must look like YYYY-MM, got {settings.start_month!r}")
    if problems:
        raise SimulationError("invalid simulation settings: " + "; ".join(problems))


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulationError(f"{out_dir} exists and is not a folder; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        try:
            manifest = read_manifest(out_dir)
        except ValueError:
            manifest = {}
        if manifest.get("source") != "simulated":
            raise SimulationError(
                f"{out_dir} is not empty and holds no simulated bank (no {MANIFEST_FILE} with source 'simulated'); "
                "refusing to overwrite it: choose an empty or new folder for --out"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


# ==========================================================================================================
# Calendar, global events, output
# ==========================================================================================================


@dataclass(frozen=True)
class _Calendar:
    periods: tuple[str, ...]
    month_end_dates: tuple[date, ...]
    month_start_us: np.ndarray  # int64 microseconds since epoch
    month_end_days: np.ndarray  # int32 days since epoch (date32)
    days: np.ndarray
    month_of_year: np.ndarray
    cny: np.ndarray  # Chinese New Year falls in this month
    pre_cny: np.ndarray
    start_day: np.datetime64

    @classmethod
    def build(cls, start_month: str, months: int) -> _Calendar:
        first = np.datetime64(start_month, "M")
        starts = first + np.arange(months + 1)
        start_days = starts.astype("datetime64[D]")
        ends = start_days[1:] - np.timedelta64(1, "D")
        years = starts[:-1].astype("datetime64[Y]").astype(int) + 1970
        moy = starts[:-1].astype(int) % 12 + 1
        cny_month = np.array([_CNY.get(int(y), 2) for y in years])
        cny = moy == cny_month
        pre_cny = np.roll(cny, -1) & ~cny
        if months:
            next_year = int(years[-1]) + (1 if moy[-1] == 12 else 0)
            next_month = 1 if moy[-1] == 12 else moy[-1] + 1
            pre_cny[-1] = _CNY.get(next_year, 2) == next_month
        return cls(
            periods=tuple(str(s) for s in starts[:-1]),
            month_end_dates=tuple(d.astype(date) for d in ends),
            month_start_us=start_days[:-1].astype("datetime64[us]").astype(np.int64),
            month_end_days=ends.astype(np.int64).astype(np.int32),
            days=(start_days[1:] - start_days[:-1]).astype(int),
            month_of_year=moy,
            cny=cny,
            pre_cny=pre_cny,
            start_day=start_days[0],
        )


def _rate_shocks(seed: int, cal: _Calendar) -> np.ndarray:
    """Months in which a competitor's deposit-rate campaign hits the whole market (intensity 0..1)."""
    rng = np.random.default_rng([seed, 7_000_003])
    months = len(cal.periods)
    shocks = np.zeros(months)
    count = max(1, round(months / 12))
    if months >= 3:
        chosen = rng.choice(np.arange(1, months), size=min(count, months - 1), replace=False)
        shocks[chosen] = rng.uniform(0.6, 1.0, size=len(chosen))
    return shocks


@dataclass
class _Context:
    settings: Simulation
    config: Config
    calendar: _Calendar
    shocks: np.ndarray


def _arrow_type(dtype: str) -> pa.DataType:
    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }[dtype]


def contract_schema(table: str, columns: tuple[str, ...] | None = None) -> pa.Schema:
    """The arrow schema of a contract table (all columns, or ``columns`` in that order)."""
    spec = TABLES[table]
    names = columns or spec.column_names
    return pa.schema([pa.field(n, _arrow_type(spec.column(n).dtype), nullable=spec.column(n).nullable) for n in names])


_WRITTEN_COLUMNS = {
    "customers": ("customer_id", "birth_date", "gender", "city_tier", "income_band", "onboarding_date"),
    "balances": TABLES["balances"].column_names,
    "transactions": TABLES["transactions"].column_names,
    "interactions": TABLES["interactions"].column_names,
    "campaign_contacts": TABLES["campaign_contacts"].column_names,
    "closures": TABLES["closures"].column_names,
}
#: The contract tables the simulated bank writes (every one but ``coverage``: a simulation covers every customer fully).
SIMULATED_TABLES: tuple[str, ...] = tuple(_WRITTEN_COLUMNS)

#: Numeric ground-truth columns, in order, as keys of the monthly truth; the horizon ones are renamed on writing.
_TRUTH_COLUMNS = ("churn_hazard", "churn_probability", "upgrade_probability", "expected_net_revenue", "expected_clv",
                  "campaign_effect", "upgrade_campaign_effect", "retention_offer_cost", "upgrade_offer_cost", "engagement")


def ground_truth_schema(labels: Labels) -> pa.Schema:
    """The ground-truth table's schema; the oracle columns are named for ``labels``' horizons (``labels.names``)."""
    names = labels.names
    renamed = {"churn_probability": names.churn_oracle, "upgrade_probability": names.upgrade_oracle,
               "expected_clv": names.clv_oracle}
    return pa.schema(
        [
            pa.field("customer_id", pa.int64(), nullable=False),
            pa.field("month", pa.date32(), nullable=False),
            *(pa.field(renamed.get(c, c), pa.float64()) for c in _TRUTH_COLUMNS),
            pa.field("value_tier", pa.string()),
            pa.field("exit_month", pa.date32()),
            pa.field("exit_type", pa.string()),
        ]
    )


#: The ground-truth schema with the default horizons.
GROUND_TRUTH_SCHEMA = ground_truth_schema(Labels())


def _text(codes: np.ndarray, categories: tuple[str, ...]) -> pa.Array:
    return pc.take(pa.array(categories, pa.string()), pa.array(codes.astype(np.int32)))


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), pa.int64()).view(pa.timestamp("us"))


def _dates(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype(np.int32), pa.int32(), mask=mask).view(pa.date32())


def _text_columns(table: pa.Table) -> list[str]:
    # dictionary-encode only the low-cardinality text columns: trying it on ids, amounts and
    # timestamps more than doubles the write time for nothing
    return [f.name for f in table.schema if pa.types.is_string(f.type)]


class _Sink:
    """Writes single-file tables as row groups and partitioned tables as one file per chunk and month."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.rows: dict[str, int] = {name: 0 for name in (*_WRITTEN_COLUMNS, GROUND_TRUTH_TABLE)}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def _file(self, table_name: str) -> Path:
        return self.out_dir / f"{table_name}.parquet"

    def append(self, table_name: str, table: pa.Table) -> None:
        if table_name not in self._writers:
            self._writers[table_name] = pq.ParquetWriter(
                self._file(table_name), table.schema, use_dictionary=_text_columns(table)
            )
        self._writers[table_name].write_table(table)
        self.rows[table_name] += table.num_rows

    def partition(self, table_name: str, period: str, chunk: int, table: pa.Table) -> None:
        folder = self.out_dir / table_name / _PARTITION.format(key=PARTITION_KEY, period=period)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{chunk:05d}.parquet", use_dictionary=_text_columns(table))
        self.rows[table_name] += table.num_rows

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


#: The date column of each single-file table that says in which month a row lands.
_DATED_BY = {"customers": "onboarding_date", "campaign_contacts": "timestamp", "closures": "closed_date"}


class _WindowSink(_Sink):
    """Writes months ``first`` .. ``last`` of the partitioned tables, and the single-file tables with every row
    dated through month ``last`` (to a temporary, which replaces the table on ``close``)."""

    def __init__(self, out_dir: Path, cal: _Calendar, first: int, last: int):
        super().__init__(out_dir)
        self._periods = set(cal.periods[first : last + 1])
        self._end = pa.scalar(int(cal.month_end_days[last]), pa.int32()).cast(pa.date32())

    def _file(self, table_name: str) -> Path:
        return self.out_dir / f".{table_name}.parquet.writing"

    def append(self, table_name: str, table: pa.Table) -> None:
        dates = table[_DATED_BY[table_name]]
        if pa.types.is_timestamp(dates.type):
            dates = pc.cast(dates, pa.date32())
        super().append(table_name, table.filter(pc.fill_null(pc.less_equal(dates, self._end), False)))

    def partition(self, table_name: str, period: str, chunk: int, table: pa.Table) -> None:
        if period in self._periods:
            super().partition(table_name, period, chunk, table)

    def close(self) -> None:
        super().close()
        for table_name in self._writers:
            os.replace(self._file(table_name), super()._file(table_name))


# ==========================================================================================================
# Statistics collected while simulating (for the summary)
# ==========================================================================================================


class _Stats:
    def __init__(self, months: int, sample_rate: float = 1.0):
        self.months = months
        #: share of at-risk customer-months kept for the oracle AUC (bounds memory and time at scale)
        self.sample_rate = sample_rate
        self.scores: list[np.ndarray] = []
        self.outcomes: list[np.ndarray] = []
        self.quarter_at_risk = np.zeros(months)
        self.quarter_exits = np.zeros(months)
        self.upgrade_at_risk = 0
        self.upgrades = 0
        self.final_aum: list[np.ndarray] = []
        self.final_tier: list[np.ndarray] = []
        self.active_months = 0
        self.customer_transactions = 0
        self.all_transactions = 0
        self.payroll_exits = np.zeros(2)
        self.payroll_at_risk = np.zeros(2)

    def summary(self, out_dir, settings, config, cal, rows, seconds) -> SimulationSummary:
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        outcomes = np.concatenate(self.outcomes) if self.outcomes else np.zeros(0, bool)
        auc = _roc_auc(outcomes, scores)
        quarters = tuple(
            (cal.periods[t + 1], float(self.quarter_exits[t] / self.quarter_at_risk[t]))
            for t in range(0, self.months - 3, 3)
            if self.quarter_at_risk[t] > 0
        )
        aum = np.concatenate(self.final_aum) if self.final_aum else np.zeros(0)
        tier = np.concatenate(self.final_tier) if self.final_tier else np.zeros(0, int)
        names = config.value_tiers.names
        shares = {name: float(np.mean(tier == i)) if len(tier) else 0.0 for i, name in enumerate(names)}
        top = 0.0
        if len(aum) >= 10 and aum.sum() > 0:
            ordered = np.sort(aum)[::-1]
            top = float(ordered[: max(1, len(aum) // 10)].sum() / ordered.sum())
        return SimulationSummary(
            out_dir=Path(out_dir),
            customers=settings.customers,
            months=settings.months,
            start_month=settings.start_month,
            data_end=cal.month_end_dates[-1],
            rows=dict(rows),
            oracle_churn_auc=auc,
            churn_rate_by_quarter=quarters,
            upgrade_rate_3m=self.upgrades / max(self.upgrade_at_risk, 1),
            tier_shares=shares,
            top_decile_aum_share=top,
            transactions_per_active_month=self.all_transactions / max(self.active_months, 1),
            seconds=seconds,
            churn_horizon_months=config.labels.churn_horizon_months,
            extra={
                "customer_initiated_transactions_per_active_month": self.customer_transactions / max(self.active_months, 1),
                "churn_rate_3m_payroll": float(self.payroll_exits[1] / max(self.payroll_at_risk[1], 1)),
                "churn_rate_3m_no_payroll": float(self.payroll_exits[0] / max(self.payroll_at_risk[0], 1)),
            },
        )


def _roc_auc(outcomes: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); NaN when only one class is present."""
    positives = int(outcomes.sum())
    negatives = len(outcomes) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    rank_sum = average_rank[inverse][outcomes].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


# ==========================================================================================================
# One chunk of customers
# ==========================================================================================================

# customer status
PENDING, ACTIVE, DRAINING, DORMANT, CLOSED = range(5)


@dataclass
class _Book:
    """Static traits and the evolving state of one chunk of customers (arrays of length n)."""

    ids: np.ndarray
    onboard_month: np.ndarray  # -1 = before the window
    onboard_day: np.ndarray
    onboard_days: np.ndarray  # date32 days
    tenure0: np.ndarray  # months of tenure at the window start (existing book), else 0
    age0: np.ndarray
    income: np.ndarray  # standardised income
    salary: np.ndarray
    payroll: np.ndarray
    payday: np.ndarray
    low_activity: np.ndarray
    txn_rate: np.ndarray
    login_rate: np.ndarray
    branch_rate: np.ndarray
    digital: np.ndarray
    mobile: np.ndarray
    growth: np.ndarray
    baseline: np.ndarray
    engagement: np.ndarray
    target: np.ndarray  # log target AUM
    log_aum: np.ndarray
    weights: np.ndarray  # (n, 5) asset-product weights
    held: np.ndarray  # (n, 5) bool
    mortgage: np.ndarray
    mortgage_principal: np.ndarray
    loan: np.ndarray
    loan_principal: np.ndarray
    card: np.ndarray  # holds a credit card
    card_balance: np.ndarray
    sms_fee: np.ndarray
    fee_month: np.ndarray
    closure_bias: np.ndarray
    rate_sensitivity: np.ndarray
    retention_noise: np.ndarray
    upgrade_noise: np.ndarray
    status: np.ndarray
    exit_month: np.ndarray
    exit_type: np.ndarray
    payroll_lost_at: np.ndarray
    retention_until: np.ndarray
    retention_multiplier: np.ndarray
    residual: np.ndarray
    prev_balance: np.ndarray  # (n, 5) month-end asset balances of the previous month
    prev_liability: np.ndarray  # (n, 3)
    txn_last_month: np.ndarray
    hazard_logit: np.ndarray  # for the next month, before campaign effects


def _draw_book(rng: np.random.Generator, ctx: _Context, first: int, n: int) -> tuple[_Book, dict[str, np.ndarray]]:
    """Draw a chunk of customers: their state at the window start (or at onboarding) and their profile."""
    cal, months = ctx.calendar, ctx.settings.months
    existing = rng.random(n) < EXISTING_BOOK_SHARE
    growth_weights = 1.0 + 0.6 * np.arange(months) / max(months - 1, 1)
    joined = rng.choice(months, size=n, p=growth_weights / growth_weights.sum())
    onboard_month = np.where(existing, -1, joined)
    age0 = np.where(existing, rng.normal(43, 14, n), rng.normal(33, 11, n)).clip(18, 88)
    tenure0 = np.where(existing, np.minimum(1 + rng.exponential(60, n), 240), 0.0)
    tenure0 = np.minimum(tenure0, (age0 - 16) * 12)
    start = cal.start_day.astype(np.int64)
    onboard_day = np.where(existing, 1, 1 + (rng.random(n) * cal.days[joined]).astype(int))
    month_start_days = (cal.month_start_us // 86_400_000_000)[joined]
    onboard_days = np.where(existing, start - np.maximum(1, np.round(tenure0 * 30.44)), month_start_days + onboard_day - 1)
    onboard_day = np.where(existing, 1, onboard_day)

    city = rng.choice(4, size=n, p=[0.18, 0.32, 0.30, 0.20])
    income = rng.normal(0, 1, n) + np.array([0.5, 0.2, -0.1, -0.4])[city] - 0.012 * np.abs(age0 - 45)
    working = age0 < 60
    payroll = rng.random(n) < expit(-0.55 + 0.35 * income - 2.2 * ~working + 0.4 * ~existing)
    salary = 6500 * np.exp(0.55 * income + rng.normal(0, 0.1, n))
    low_activity = rng.random(n) < expit(-0.05 - 1.4 * payroll + 0.02 * (age0 - 40) - 0.3 * income)
    txn_rate = np.where(low_activity, rng.uniform(0.9, 2.4, n), rng.lognormal(np.log(12.0), 0.5, n))
    digital = expit(1.8 - 0.08 * (age0 - 35) + 0.3 * income)
    mobile = expit(1.5 - 0.05 * (age0 - 35))
    login_rate = np.where(low_activity, 0.5, 8.0) * digital
    branch_rate = 0.05 + 0.4 * (1 - digital)
    tenure_years = tenure0 / 12
    target = (
        np.log(6500)
        + 0.9 * income
        + 0.03 * (np.clip(age0, 20, 62) - 40)
        + 0.15 * np.log1p(tenure_years)
        + 0.3 * (city == 0)
        + rng.normal(0, 1.55, n)
        + np.where(rng.random(n) < 0.02, rng.exponential(1.4, n), 0.0)
    )
    log_aum = np.where(existing, target + rng.normal(0, 0.35, n), target - rng.uniform(0.7, 2.5, n))
    # low-activity accounts are rarely near-empty: a customer with a tiny balance and no activity is a leaver
    log_aum = np.where(low_activity, np.maximum(log_aum, np.log(rng.uniform(1200, 4000, n))), log_aum)

    lw = target - 10
    held = np.zeros((n, 5), bool)
    held[:, CD] = True
    held[:, TD] = rng.random(n) < expit(-1.0 + 0.35 * lw + 0.02 * (age0 - 40))
    held[:, WM] = rng.random(n) < expit(-3.0 + 0.8 * lw)
    held[:, FUND] = rng.random(n) < expit(-3.2 + 0.6 * lw - 0.02 * (age0 - 40))
    held[:, INS] = rng.random(n) < expit(-3.0 + 0.5 * lw + 0.02 * (age0 - 40))
    held[~existing, 1:] &= rng.random((int((~existing).sum()), 4)) < 0.3
    weights = np.column_stack(
        [np.ones(n), rng.lognormal(0.3, 0.5, n), rng.lognormal(0.5, 0.5, n), rng.lognormal(0.2, 0.5, n), rng.lognormal(0.0, 0.5, n)]
    )

    has_mortgage = rng.random(n) < expit(-2.6 + 0.6 * income - 0.04 * np.abs(age0 - 38))
    mortgage = np.where(has_mortgage, 12 * salary * rng.uniform(3, 10, n), 0.0)
    mortgage_principal = mortgage / rng.uniform(60, 300, n)
    has_loan = rng.random(n) < 0.06
    loan = np.where(has_loan, salary * rng.uniform(2, 15, n), 0.0)
    loan_principal = loan / rng.uniform(12, 36, n)
    card = rng.random(n) < expit(-0.7 + 0.5 * income + 1.0 * digital - 0.02 * (age0 - 40))
    baseline = rng.normal(0, 0.55, n) + 0.35 * payroll
    engagement = np.where(existing, baseline + rng.normal(0, 0.45, n), baseline + 0.2)

    book = _Book(
        ids=np.arange(first, first + n, dtype=np.int64) + 100_000_001,
        onboard_month=onboard_month,
        onboard_day=onboard_day,
        onboard_days=onboard_days.astype(np.int64),
        tenure0=tenure0,
        age0=age0,
        income=income,
        salary=salary,
        payroll=payroll,
        payday=rng.choice(np.array([5, 10, 15, 20, 25, 28]), size=n),
        low_activity=low_activity,
        txn_rate=txn_rate,
        login_rate=login_rate,
        branch_rate=branch_rate,
        digital=digital,
        mobile=mobile,
        growth=rng.normal(0.04, 0.06, n) + 0.04 * (age0 < 35),
        baseline=baseline,
        engagement=engagement,
        target=target,
        log_aum=log_aum,
        weights=weights,
        held=held,
        mortgage=mortgage,
        mortgage_principal=mortgage_principal,
        loan=loan,
        loan_principal=loan_principal,
        card=card,
        card_balance=np.zeros(n),
        sms_fee=rng.random(n) < 0.25,
        fee_month=rng.integers(1, 13, n),
        closure_bias=rng.normal(0, 0.5, n),
        rate_sensitivity=rng.random(n),
        retention_noise=rng.normal(0, RETENTION_EFFECT_LATENT_SD, n),
        upgrade_noise=rng.normal(0, 0.02, n),
        status=np.where(existing, ACTIVE, PENDING),
        exit_month=np.full(n, -1),
        exit_type=np.zeros(n, np.int8),
        payroll_lost_at=np.full(n, -999),
        retention_until=np.full(n, -999),
        retention_multiplier=np.ones(n),
        residual=np.zeros(n),
        prev_balance=np.zeros((n, 5)),
        prev_liability=np.zeros((n, 3)),
        txn_last_month=np.zeros(n),
        hazard_logit=np.full(n, -10.0),
    )
    profile = {
        "city_tier": city,
        "gender": rng.choice(3, size=n, p=[0.49, 0.49, 0.02]),
        "income_band": np.digitize(income, [-0.9, -0.2, 0.5, 1.3]),
        "income_band_missing": rng.random(n) < 0.03,
        "birth_date": (start - np.round(age0 * 365.25 + rng.uniform(0, 365, n))).astype(np.int64),
        "birth_date_missing": rng.random(n) < 0.01,
    }
    return book, profile


def _tier_of(aum: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.searchsorted(bounds, aum, side="right") - 1


def _activity_multiplier(engagement: np.ndarray, low_activity: np.ndarray) -> np.ndarray:
    mult = np.clip(np.exp(0.55 * engagement), 0.25, 3.0)
    # sleeping accounts keep a steady trickle of card spending and bills, whatever their mood
    return np.where(low_activity, np.maximum(mult, 0.7), mult)


def _drain(engagement: np.ndarray) -> np.ndarray:
    """Monthly log-AUM outflow of a disengaging customer (money moved to another bank)."""
    return -DRAIN_PER_ENGAGEMENT * np.clip(-engagement - 0.3, 0, 3)


def _simulate_chunk(ctx: _Context, chunk: int, first: int, n: int, sink: _Sink, stats: _Stats, bar,
                    continuation: _Continuation | None = None) -> None:
    rng = np.random.default_rng([ctx.settings.seed, chunk])
    explore_rng = np.random.default_rng([ctx.settings.seed, chunk, 1])
    cal, cfg, months = ctx.calendar, ctx.config, ctx.settings.months
    book, profile = _draw_book(rng, ctx, first, n)
    bounds = np.asarray(cfg.value_tiers.lower_bounds, float)
    rates = cfg.revenue.annual_rate
    asset_rates = np.array([rates.get(p, 0.0) for p in ASSET_PRODUCTS]) / 12
    liability_rates = np.array([rates.get(p, 0.0) for p in ("mortgage", "consumer_loan", "credit_card")]) / 12
    threshold = cfg.labels.dormancy_aum_threshold
    intensity = ctx.settings.transaction_intensity

    sink.append(
        "customers",
        pa.table(
            {
                "customer_id": pa.array(book.ids),
                "birth_date": _dates(profile["birth_date"], mask=profile["birth_date_missing"]),
                "gender": _text(profile["gender"], GENDERS),
                "city_tier": _text(profile["city_tier"], CITY_TIERS),
                "income_band": pc.if_else(
                    pa.array(profile["income_band_missing"]), pa.scalar(None, pa.string()), _text(profile["income_band"], INCOME_BANDS)
                ),
                "onboarding_date": _dates(book.onboard_days),
            },
            schema=contract_schema("customers", _WRITTEN_COLUMNS["customers"]),
        ),
    )

    log_aum_history = np.full((months, n), np.nan)
    complaints_history = np.zeros((months, n), np.int8)
    ground_truth: list[dict[str, np.ndarray]] = []
    contacts: list[dict[str, np.ndarray]] = []
    closed_on = np.full(n, -1, np.int64)
    txn_id = chunk * 10**12

    for t in range(months):
        if continuation is not None and t == continuation.fork + 1:
            # from here on every customer continues as `replications` copies with a random stream of their own
            book, log_aum_history, complaints_history, closed_on = _replicate(
                continuation.replications, n, book, log_aum_history, complaints_history, closed_on)
            n *= continuation.replications
            if continuation.stream is not None:
                rng = np.random.default_rng([ctx.settings.seed, chunk, _CONTINUATION_STREAM, continuation.stream])
        days = int(cal.days[t])
        moy = int(cal.month_of_year[t])
        shock = float(ctx.shocks[t])
        season = 1.0 + 0.55 * cal.cny[t] + 0.15 * cal.pre_cny[t] + 0.12 * (moy == 10) + 0.2 * (moy == 11) + 0.08 * (moy == 6)

        # --- status transitions at the start of the month ---------------------------------------------
        book.status[book.status == DRAINING] = DORMANT
        new = book.onboard_month == t
        book.status[new] = ACTIVE
        tenure = np.where(book.onboard_month < 0, book.tenure0 + t, t - book.onboard_month)
        at_risk = (book.status == ACTIVE) & ~new

        # --- campaigns (contact on the 5th; only customers who were active last month) ----------------
        aum_prev = np.exp(book.log_aum)
        tier_prev = _tier_of(aum_prev, bounds)
        td_share = _time_deposit_share(book)
        retention_effect = _retention_effect(book, t, complaints_history, td_share)
        upgrade_effect = _upgrade_effect(book)
        month_contacts, treated_retention, treated_upgrade, treated_cross = _campaigns(
            rng, explore_rng, book, at_risk, t, tier_prev, bounds, complaints_history
        )
        book.retention_until[treated_retention] = t + 2
        book.retention_multiplier[treated_retention] = 1 - retention_effect[treated_retention]

        # --- leaving ---------------------------------------------------------------------------------
        mult = np.where(book.retention_until >= t, book.retention_multiplier, 1.0)
        hazard = np.minimum(expit(book.hazard_logit) * mult, HAZARD_CAP)
        leaves = at_risk & (rng.random(n) < hazard)
        has_loans = (book.mortgage > 0) | (book.loan > 0)
        closure_p = np.clip(CLOSURE_SHARE + 0.2 * (tier_prev >= 1) + 0.15 * has_loans + 0.2 * book.closure_bias, 0.05, 0.9)
        closing = leaves & (rng.random(n) < closure_p)
        draining = leaves & ~closing
        book.status[closing] = CLOSED
        book.exit_month[closing] = t
        book.exit_type[closing] = 1
        book.status[draining] = DRAINING
        # a dormancy exit is dated at its first quiet month: the month after the drain (the label's dating)
        book.exit_month[draining] = t + 1
        book.exit_type[draining] = 2
        closure_day = np.where(closing, 6 + (rng.random(n) * (days - 5)).astype(int), days)
        closed_on[closing] = (cal.month_start_us[t] // 86_400_000_000) + closure_day[closing] - 1

        active = book.status == ACTIVE
        na = int(active.sum())

        # --- life events of active customers -----------------------------------------------------------
        payroll_lost = active & book.payroll & (rng.random(n) < 0.006)
        book.payroll[payroll_lost] = False
        book.payroll_lost_at[payroll_lost] = t
        payroll_gained = active & ~book.payroll & (book.age0 + t / 12 < 60) & (rng.random(n) < 0.002)
        book.payroll[payroll_gained] = True
        career = active & (rng.random(n) < 0.004)
        jump = rng.uniform(0.15, 0.45, n)
        book.salary[career] *= 1 + jump[career]
        book.target[career] += 0.8 * np.log1p(jump[career])
        book.target[active] += book.growth[active] / 12
        book.salary[active] *= np.exp(book.growth[active] / 12)
        complaint = active & (rng.random(n) < 0.011 * (1 + 0.6 * (book.digital < 0.3)))
        complaints_history[t] = complaint
        disaffected = active & (rng.random(n) < 0.011)
        book.baseline[disaffected] -= rng.uniform(0.6, 1.6, int(disaffected.sum()))
        recovered = active & (book.baseline < 0) & (rng.random(n) < 0.01)
        book.baseline[recovered] += rng.uniform(0.2, 0.6, int(recovered.sum()))

        sens = book.rate_sensitivity * td_share
        evolve = active & ~new
        e = book.engagement
        e_new = (
            book.baseline
            + ENGAGEMENT_PERSISTENCE * (e - book.baseline)
            + rng.normal(0, ENGAGEMENT_NOISE, n)
            - 0.6 * complaint
            - 0.8 * payroll_lost
            - 1.2 * shock * sens
        )
        book.engagement = np.where(evolve, e_new, e)

        # --- products ----------------------------------------------------------------------------------
        adopt_p = ADOPTION_BASE * np.exp(0.35 * book.income + 0.3 * book.engagement + 5 * book.growth) * np.where(
            (tier_prev == 1) | (tier_prev == 2), 1.5, 1.0
        )
        adopt_p = np.maximum(adopt_p + np.where(treated_upgrade, upgrade_effect, 0.0), 0.0)
        can_adopt = evolve & ~book.held[:, _WEALTH].all(axis=1)
        adopt = can_adopt & (rng.random(n) < adopt_p)
        if adopt.any():
            choice = _pick_missing(rng, ~book.held[adopt][:, _WEALTH])
            rows = np.flatnonzero(adopt)
            book.held[rows, _WEALTH[choice]] = True
            book.weights[rows, _WEALTH[choice]] = rng.lognormal(0.5, 0.5, len(rows))
            gain = rng.uniform(*ADOPTION_JUMP, len(rows))
            book.log_aum[rows] += gain
            book.target[rows] += 0.5 * gain
        retention_response = treated_retention & active & (rng.random(n) < _retention_acceptance(retention_effect))
        td_open = evolve & ~book.held[:, TD] & ((rng.random(n) < TIME_DEPOSIT_OPENING) | retention_response)
        book.held[td_open, TD] = True
        book.weights[td_open, TD] = rng.lognormal(0.3, 0.5, int(td_open.sum()))
        weak = np.clip(-book.engagement - 0.8, 0, None)
        product_close = evolve[:, None] & book.held & (rng.random((n, 5)) < (0.004 + 0.03 * weak)[:, None])
        product_close[:, CD] = False
        book.held &= ~product_close
        cross_open = evolve & (rng.random(n) < 0.004 + 0.05 * treated_cross)
        card_open = cross_open & ~book.card
        book.card |= card_open
        ins_open = cross_open & ~card_open & ~book.held[:, INS]
        book.held[ins_open, INS] = True
        book.weights[ins_open, INS] = rng.lognormal(0.0, 0.5, int(ins_open.sum()))
        card_close = evolve & book.card & (rng.random(n) < 0.002 + 0.02 * weak)
        book.card &= ~card_close
        loan_open = evolve & (book.loan <= 0) & (rng.random(n) < 0.002 + 0.01 * treated_cross)
        book.loan[loan_open] = book.salary[loan_open] * rng.uniform(2, 15, int(loan_open.sum()))
        book.loan_principal[loan_open] = book.loan[loan_open] / rng.uniform(12, 36, int(loan_open.sum()))
        month_contacts["responded"] = _responses(month_contacts, adopt, retention_response, td_open, cross_open)

        # --- assets --------------------------------------------------------------------------------------
        kappa = np.where(tenure < 12, WEALTH_REVERSION_NEW, WEALTH_REVERSION)
        noise_sd = 0.07 + 0.05 * _wealth_share(book)
        step = kappa * (book.target - book.log_aum) + _drain(book.engagement) + rng.normal(0, 1, n) * noise_sd
        step -= 0.03 * cal.cny[t]
        step += np.log1p(-0.6 * shock * sens)
        bonus = np.zeros(n)
        if moy == 12:
            bonus = np.where(book.payroll & active, book.salary * rng.uniform(1, 3, n), 0.0)
            step += np.log1p(0.5 * bonus / np.exp(book.log_aum))
        windfall = evolve & (rng.random(n) < WINDFALL_RATE)
        gain = rng.uniform(*WINDFALL_JUMP, n)
        step += np.where(windfall, gain, 0.0)
        book.target += np.where(windfall, 0.5 * gain, 0.0)
        book.log_aum = np.where(evolve, book.log_aum + step, book.log_aum)
        book.weights *= np.exp(rng.normal(0, 0.05, (n, 5)))
        if draining.any():
            book.residual[draining] = rng.uniform(0.05, 0.9, int(draining.sum())) * threshold
        balance = np.zeros((n, 5))
        share = book.weights * book.held
        share /= share.sum(axis=1, keepdims=True)
        balance[active] = np.exp(book.log_aum[active])[:, None] * share[active]
        dormant_now = (book.status == DORMANT) | draining
        balance[dormant_now, CD] = book.residual[dormant_now]
        balance = np.round(balance, 2)
        previous = book.prev_balance
        avg = np.where(previous > 0, 0.5 * (previous + balance) * rng.uniform(0.92, 1.08, (n, 5)), balance * rng.uniform(0.2, 0.8, (n, 5)))
        avg[draining] = np.where(
            previous[draining] > 0, previous[draining] * rng.uniform(0.3, 0.7, (int(draining.sum()), 5)), 0
        )
        avg[draining, CD] = np.maximum(avg[draining, CD], balance[draining, CD])
        avg[book.status == DORMANT] = balance[book.status == DORMANT]
        avg = np.round(avg, 2)
        aum_before_leaving = previous.sum(axis=1)

        # --- liabilities -------------------------------------------------------------------------------------
        repay = active & ((book.mortgage > 0) | (book.loan > 0))
        interest_due = book.mortgage * 0.04 / 12 + book.loan * 0.08 / 12
        principal_due = np.minimum(book.mortgage, book.mortgage_principal) + np.minimum(book.loan, book.loan_principal)
        repayment = np.where(repay, interest_due + principal_due, 0.0)
        book.mortgage = np.where(active, np.maximum(book.mortgage - book.mortgage_principal, 0), book.mortgage)
        book.loan = np.where(active, np.maximum(book.loan - book.loan_principal, 0), book.loan)
        book.mortgage[book.mortgage < 1] = 0
        book.loan[book.loan < 1] = 0
        leaving = closing | draining
        payoff = np.where(leaving, book.mortgage + book.loan + book.card_balance, 0.0)
        book.mortgage[leaving] = 0
        book.loan[leaving] = 0
        book.card[leaving] = False
        book.payroll[leaving] = False

        # --- transactions ----------------------------------------------------------------------------------
        min_day = np.where(new, book.onboard_day, 1)
        max_day = np.where(closing, closure_day - 1, closure_day)
        live = active | leaving
        frac = (max_day - min_day + 1) / days
        lam = book.txn_rate * _activity_multiplier(book.engagement, book.low_activity) * season * intensity * frac
        lam = np.where(active, lam, np.where(leaving, 0.5 * lam, 0.0))
        tx = _transactions(
            rng, book, t, cal, lam, live, active, leaving, closing, draining, min_day, max_day, bonus, repayment,
            payoff, aum_before_leaving, balance, avg, moy, threshold,
        )
        n_tx = len(tx["customer"])
        customer_initiated = tx["customer_initiated"]
        book.txn_last_month = np.bincount(tx["customer"][customer_initiated], minlength=n)
        card_spend = np.bincount(tx["customer"], weights=np.where(tx["category"] == _CAT["card_spend"], tx["amount"], 0), minlength=n)
        book.card_balance = np.where(book.card & active, np.round(card_spend * rng.uniform(0.5, 1.0, n) + 0.15 * book.card_balance, 2), 0.0)
        sink.partition(
            "transactions",
            cal.periods[t],
            chunk,
            pa.table(
                {
                    "transaction_id": pa.array(txn_id + np.arange(n_tx, dtype=np.int64)),
                    "customer_id": pa.array(book.ids[tx["customer"]]),
                    "timestamp": _timestamps(tx["timestamp"]),
                    "amount": pa.array(tx["amount"]),
                    "direction": _text(tx["direction"], DIRECTIONS),
                    "channel": _text(tx["channel"], CHANNELS),
                    "category": _text(tx["category"], TRANSACTION_CATEGORIES),
                },
                schema=contract_schema("transactions"),
            ),
        )
        txn_id += n_tx

        # --- interactions ----------------------------------------------------------------------------------
        inter = _interactions(rng, book, t, cal, live, active, leaving, complaint, min_day, max_day, frac, season)
        sink.partition(
            "interactions",
            cal.periods[t],
            chunk,
            pa.table(
                {
                    "customer_id": pa.array(book.ids[inter["customer"]]),
                    "timestamp": _timestamps(inter["timestamp"]),
                    "kind": _text(inter["kind"], INTERACTION_KINDS),
                },
                schema=contract_schema("interactions"),
            ),
        )

        # --- balances ----------------------------------------------------------------------------------------
        liability = np.column_stack([book.mortgage, book.loan, book.card_balance])
        liability_held = np.column_stack([book.mortgage > 0, book.loan > 0, book.card])
        liability_avg = np.where(book.prev_liability > 0, 0.5 * (book.prev_liability + liability), liability)
        liability_avg[:, 2] = np.round(liability[:, 2] * rng.uniform(0.5, 0.9, n), 2)
        liability_avg = np.round(liability_avg, 2)
        open_now = (book.status == ACTIVE) | (book.status == DRAINING) | (book.status == DORMANT)
        asset_rows = book.held.copy()
        asset_rows[dormant_now] = False
        asset_rows[dormant_now, CD] = True
        asset_rows &= open_now[:, None]
        liability_held &= open_now[:, None]
        sink.partition("balances", cal.periods[t], chunk, _balances_table(book.ids, cal.month_end_days[t], asset_rows, balance, avg, liability_held, liability, liability_avg))
        book.prev_balance = np.where(asset_rows, balance, 0.0)
        book.prev_liability = np.where(liability_held, liability, 0.0)

        # --- end of month: true state, hazard for next month, ground truth -----------------------------------
        log_aum_history[t] = np.where(open_now, np.log(np.maximum(balance.sum(axis=1), 1.0)), np.nan)
        aum_end = np.where(active, np.exp(book.log_aum), balance.sum(axis=1))
        tier_end = _tier_of(aum_end, bounds)
        fees = np.bincount(tx["customer"], weights=np.where(tx["category"] == _CAT["fee"], tx["amount"], 0), minlength=n)
        revenue = (avg * asset_rates).sum(axis=1) + (liability_avg * liability_rates).sum(axis=1) + fees - cfg.revenue.cost_to_serve_monthly
        td_share = _time_deposit_share(book)
        book.hazard_logit = _hazard_logit(book, t, tenure + 1, log_aum_history, complaints_history, td_share, shock, book.engagement)
        if continuation is None:
            truth = _ground_truth(book, t, cfg, tenure, log_aum_history, complaints_history, td_share, shock, tier_end, bounds,
                                  balance, liability, asset_rates, liability_rates, revenue, months)
            truth["aum"] = aum_end[truth["customer"]]
            ground_truth.append(truth)
        contacts.append(_contacts_rows(month_contacts, cal, t, rng))
        stats.active_months += na + int(leaving.sum())
        stats.customer_transactions += int(customer_initiated.sum())
        stats.all_transactions += n_tx
        bar.update(1)
        if continuation is not None and t >= continuation.fork:
            # what the labels read from the written tables: month-end AUM and net revenue of open customers
            written_aum = (np.maximum(balance, 0.0) * asset_rows).sum(axis=1)
            label_revenue = ((np.maximum(avg, 0.0) * asset_rates * asset_rows).sum(axis=1)
                             + (np.maximum(liability_avg, 0.0) * liability_rates * liability_held).sum(axis=1)
                             + fees - cfg.revenue.cost_to_serve_monthly)
            continuation.record(t, open_now, _tier_of(written_aum, bounds), np.where(open_now, label_revenue, 0.0), book.exit_month)
            if t == continuation.last:
                return

    _write_chunk_end(sink, chunk, book, cal, ground_truth, contacts, closed_on, stats, months, cfg, bounds)


# --- helpers for the monthly step -------------------------------------------------------------------------


def _time_deposit_share(book: _Book) -> np.ndarray:
    share = book.weights * book.held
    return share[:, TD] / share.sum(axis=1)


def _wealth_share(book: _Book) -> np.ndarray:
    share = book.weights * book.held
    return share[:, _WEALTH].sum(axis=1) / share.sum(axis=1)


def _pick_missing(rng: np.random.Generator, missing: np.ndarray) -> np.ndarray:
    """For each row, a random column index among the True entries of ``missing``."""
    keys = rng.random(missing.shape) * missing
    return keys.argmax(axis=1)


def _retention_effect(book: _Book, t: int, complaints_history: np.ndarray, td_share: np.ndarray) -> np.ndarray:
    """True relative drop in churn hazard from a retention offer (negative: sleeping dogs; ~0: lost causes)."""
    c = RETENTION_EFFECT
    complained = complaints_history[max(0, t - 3) : t].sum(axis=0) > 0
    lost = (t - book.payroll_lost_at) <= 6
    effect = (
        c["intercept"]
        + c["time_deposit_share"] * td_share
        + c["payroll"] * book.payroll
        + c["complained_3m"] * complained
        + c["low_activity"] * book.low_activity
        + book.retention_noise
    )
    effect = np.where(lost, 0.1 * effect, effect)  # the salary has already moved: lost causes
    return np.clip(effect, *RETENTION_EFFECT_RANGE)


def _retention_acceptance(retention_effect: np.ndarray) -> np.ndarray:
    """Probability that a contacted customer accepts the retention offer (and is paid its rate bonus)."""
    return 0.12 + 0.5 * np.clip(retention_effect, 0, None)


def _upgrade_effect(book: _Book) -> np.ndarray:
    """True change in the month's wealth-product adoption probability from an upgrade offer."""
    effect = 0.02 + 0.06 * (book.income > 0.5) + 0.08 * (book.growth > 0.06) + 0.04 * book.digital - 0.07 * (book.age0 > 60) * (book.digital < 0.4)
    return np.clip(effect + book.upgrade_noise, -0.05, 0.25)


def _campaigns(rng, explore_rng, book: _Book, at_risk, t, tier_prev, bounds, complaints_history):
    n = len(book.ids)
    aum = np.exp(book.log_aum)
    complained = complaints_history[max(0, t - 3) : t].sum(axis=0) > 0
    # the bank's own targeting rule: recent complaints, little activity last month, valuable customers
    score = 1.0 * complained + 0.9 * (book.txn_last_month < 3) + 0.5 * (tier_prev >= 1)
    retention = at_risk & (rng.random(n) < np.minimum(0.008 * np.exp(score), 0.25))
    next_bound = np.append(bounds, np.inf)[np.minimum(tier_prev + 1, len(bounds))]
    upgrade = at_risk & (tier_prev < len(bounds) - 1) & (aum >= 0.3 * next_bound) & (rng.random(n) < 0.08)
    cross = at_risk & (rng.random(n) < 0.015)
    treated = rng.random((3, n)) < TREATED_SHARE
    # exploration: a random sample of the whole active base per offer, beside (never inside) the targeted list
    draw = explore_rng.random((2, n))
    explore_treated = explore_rng.random((2, n)) < EXPLORATION_TREATED_SHARE
    explore_retention = at_risk & ~retention & (draw[0] < EXPLORATION_SHARE)
    explore_upgrade = at_risk & ~upgrade & (tier_prev < len(bounds) - 1) & (draw[1] < EXPLORATION_SHARE)
    treated[0] = np.where(explore_retention, explore_treated[0], treated[0])
    treated[1] = np.where(explore_upgrade, explore_treated[1], treated[1])
    rows_customer, rows_offer, rows_treated, rows_explore = [], [], [], []
    for code, chosen, explore in ((0, retention, explore_retention), (1, upgrade, explore_upgrade), (2, cross, None)):
        for sample, flag in ((chosen, False), (explore, True)):
            if sample is None:
                continue
            idx = np.flatnonzero(sample)
            rows_customer.append(idx)
            rows_offer.append(np.full(len(idx), code))
            rows_treated.append(treated[code, idx])
            rows_explore.append(np.full(len(idx), flag))
    contacts = {
        "customer": np.concatenate(rows_customer),
        "offer": np.concatenate(rows_offer),
        "treated": np.concatenate(rows_treated),
        "exploration": np.concatenate(rows_explore),
    }
    assert OFFERS == ("retention", "upgrade", "cross_sell")
    retention, upgrade = retention | explore_retention, upgrade | explore_upgrade
    return contacts, retention & treated[0], upgrade & treated[1], cross & treated[2]


def _responses(contacts, adopt, retention_response, td_open, cross_open) -> np.ndarray:
    customer, offer = contacts["customer"], contacts["offer"]
    return np.select(
        [offer == 0, offer == 1, offer == 2],
        [retention_response[customer] | td_open[customer], adopt[customer], cross_open[customer]],
        False,
    )


def _contacts_rows(contacts, cal: _Calendar, t: int, rng) -> dict[str, np.ndarray]:
    m = len(contacts["customer"])
    minutes = rng.integers(9 * 60, 18 * 60, m)
    return {
        "customer": contacts["customer"],
        "timestamp": cal.month_start_us[t] + 4 * 86_400_000_000 + minutes * 60_000_000,
        "month": np.full(m, t),
        "offer": contacts["offer"],
        "treated": contacts["treated"],
        "exploration": contacts["exploration"],
        "responded": contacts["responded"],
    }


def _spread(rng, customer, min_day, max_day, month_start_us, hours=(7, 23)) -> np.ndarray:
    lo, hi = min_day[customer], max_day[customer]
    day = lo + (rng.random(len(customer)) * (hi - lo + 1)).astype(np.int64)
    seconds = rng.integers(hours[0] * 3600, hours[1] * 3600, len(customer))
    return month_start_us + (day - 1) * 86_400_000_000 + seconds * 1_000_000


def _transactions(rng, book, t, cal, lam, live, active, leaving, closing, draining, min_day, max_day, bonus, repayment,
                  payoff, aum_before_leaving, balance, avg, moy, threshold) -> dict[str, np.ndarray]:
    n = len(book.ids)
    start_us = int(cal.month_start_us[t])
    blocks: list[dict[str, np.ndarray]] = []

    def block(customer, timestamp, amount, direction, channel, category, initiated):
        m = len(customer)
        blocks.append(
            {
                "customer": customer,
                "timestamp": np.broadcast_to(timestamp, m),
                "amount": np.broadcast_to(np.round(amount, 2), m),
                "direction": np.broadcast_to(direction, m),
                "channel": np.broadcast_to(channel, m),
                "category": np.broadcast_to(category, m),
                "customer_initiated": np.broadcast_to(initiated, m),
            }
        )

    # customer-initiated spending, transfers, bills, cash, investments
    counts = rng.poisson(lam)
    customer = np.repeat(np.arange(n), counts)
    m = len(customer)
    names = tuple(_SPEND_MIX)
    shares = np.array([_SPEND_MIX[c][0] for c in names])
    kind = np.searchsorted(np.cumsum(shares) / shares.sum(), rng.random(m), side="right")
    kind = np.minimum(kind, len(names) - 1)
    holds_wealth = book.held[:, _WEALTH].any(axis=1)
    kind = np.where((kind == names.index("investment")) & ~holds_wealth[customer], names.index("transfer"), kind)
    category = np.array([_CAT[c] for c in names])[kind]
    spend_scale = np.exp(0.45 * book.income)[customer]
    aum = np.maximum(balance.sum(axis=1), 100.0)
    median = np.array([_SPEND_MIX[c][1] for c in names])[kind] * spend_scale
    median = np.where(kind == names.index("transfer"), median * (aum[customer] / 20_000) ** 0.15, median)
    median = np.where(kind == names.index("investment"), np.maximum(0.1 * aum[customer], 1000.0), median)
    sigma = np.array([_SPEND_MIX[c][2] for c in names])[kind]
    amount = median * np.exp(sigma * rng.normal(0, 1, m))
    amount = np.where(kind == names.index("cash"), np.maximum(100, np.round(amount, -2)), amount)
    inbound = rng.random(m) < np.array([_INBOUND[c] for c in names])[kind]
    direction = np.where(inbound, _DIR["in"], _DIR["out"])
    u = rng.random(m)
    digital_pick = np.where(rng.random(m) < book.mobile[customer], _CH["mobile"], _CH["online"])
    is_digital = u < np.minimum(book.digital[customer], 0.97)
    at_atm = (kind == names.index("transfer")) & (rng.random(m) < 0.15)
    channel = np.where(is_digital, digital_pick, np.where(at_atm, _CH["atm"], _CH["branch"]))
    channel = np.where(kind == names.index("card_spend"), np.where(u < 0.62, _CH["pos"], digital_pick), channel)
    channel = np.where(kind == names.index("cash"), np.where(u < 0.85, _CH["atm"], _CH["branch"]), channel)
    timestamp = _spread(rng, customer, min_day, max_day, start_us)
    block(customer, timestamp, amount, direction, channel, category, True)

    # fees the bank charges on some of those rows: fund/wealth subscription, counter transfers
    invest_buy = (category == _CAT["investment"]) & (direction == _DIR["out"])
    branch_transfer = (category == _CAT["transfer"]) & (direction == _DIR["out"]) & (channel == _CH["branch"])
    charged = invest_buy | branch_transfer
    fee_amount = np.where(invest_buy, amount * rng.uniform(0.005, 0.012, m), np.clip(amount * 0.005, 2, 50))
    block(customer[charged], timestamp[charged] + 1_000_000, fee_amount[charged], _DIR["out"], channel[charged], _CAT["fee"], False)

    # payroll credits, and the December bonus
    salaried = np.flatnonzero(active & book.payroll & (book.payday >= min_day) & (book.payday <= max_day))
    pay_ts = start_us + (book.payday[salaried] - 1) * 86_400_000_000 + 9 * 3_600_000_000 + rng.integers(0, 3600, len(salaried)) * 1_000_000
    block(salaried, pay_ts, book.salary[salaried] * np.exp(rng.normal(0, 0.03, len(salaried))), _DIR["in"], _CH["online"], _CAT["salary"], False)
    if moy == 12:
        bonused = salaried[bonus[salaried] > 0]
        bonus_ts = pay_ts[bonus[salaried] > 0] + 3_600_000_000  # with the December salary, an hour later
        block(bonused, bonus_ts, bonus[bonused], _DIR["in"], _CH["online"], _CAT["salary"], False)

    # loan repayments by direct debit on the 15th
    debit = np.flatnonzero((repayment > 0) & (min_day <= 15) & (max_day >= 15))
    block(debit, start_us + 14 * 86_400_000_000 + 6 * 3_600_000_000, repayment[debit], _DIR["out"], _CH["online"], _CAT["loan_repayment"], True)

    # the leavers: pay off loans and move the money out (everything, or all but a residual before going dormant)
    leavers = np.flatnonzero(leaving)
    if len(leavers):
        leave_ts = np.where(
            closing[leavers],
            start_us + max_day[leavers] * 86_400_000_000 + 11 * 3_600_000_000,
            _spread(rng, leavers, min_day, max_day, start_us),
        )
        channel_out = np.where(rng.random(len(leavers)) < book.digital[leavers], _CH["mobile"], _CH["branch"])
        out_amount = np.maximum(aum_before_leaving[leavers] - np.where(draining[leavers], balance[leavers, CD], 0), 0)
        moving = out_amount > 0
        block(leavers[moving], leave_ts[moving], out_amount[moving], _DIR["out"], channel_out[moving], _CAT["transfer"], True)
        owes = payoff[leavers] > 0
        block(leavers[owes], leave_ts[owes] - 60_000_000, payoff[leavers][owes], _DIR["out"], channel_out[owes], _CAT["loan_repayment"], True)

    # interest on current deposits, paid quarterly on the 21st
    if moy in (3, 6, 9, 12):
        open_ = live | (book.status == DORMANT)
        earn = np.flatnonzero(open_ & (avg[:, CD] >= 20) & (min_day <= 21) & (max_day >= 21))
        block(earn, start_us + 20 * 86_400_000_000 + 1_800_000_000, avg[earn, CD] * 0.0025 / 4, _DIR["in"], _CH["online"], _CAT["interest"], False)

    # monthly fees: SMS alerts, the annual card fee, and a small-balance fee on near-empty accounts
    open_ = active | draining | (book.status == DORMANT)
    last_day = start_us + (int(cal.days[t]) - 1) * 86_400_000_000 + 2 * 3_600_000_000
    sms = np.flatnonzero(open_ & book.sms_fee & (book.status != DORMANT))
    block(sms, np.full(len(sms), last_day), np.full(len(sms), 2.0), _DIR["out"], _CH["online"], _CAT["fee"], False)
    annual = np.flatnonzero(open_ & (book.fee_month == moy) & (book.log_aum < np.log(10_000)) & (book.status == ACTIVE))
    block(annual, np.full(len(annual), last_day), np.full(len(annual), 10.0), _DIR["out"], _CH["online"], _CAT["fee"], False)
    card_fee = np.flatnonzero(open_ & book.card & (book.fee_month == moy) & (book.status == ACTIVE))
    block(card_fee, np.full(len(card_fee), last_day), rng.choice(np.array([0.0, 50.0, 100.0]), len(card_fee)), _DIR["out"], _CH["online"], _CAT["fee"], False)
    small = np.flatnonzero(open_ & (balance[:, CD] < 300) & (balance[:, CD] >= 1) & (balance.sum(axis=1) < 300))
    block(small, np.full(len(small), last_day + 60_000_000), np.full(len(small), 1.0), _DIR["out"], _CH["online"], _CAT["fee"], False)

    out = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    keep = out["amount"] > 0
    return {key: value[keep] for key, value in out.items()}


def _interactions(rng, book, t, cal, live, active, leaving, complaint, min_day, max_day, frac, season) -> dict[str, np.ndarray]:
    n = len(book.ids)
    start_us = int(cal.month_start_us[t])
    e = book.engagement
    scale = np.where(active, frac, np.where(leaving, 0.4 * frac, 0.0))
    logins = rng.poisson(book.login_rate * np.clip(np.exp(0.7 * e), 0.2, 4) * scale * (1 + 0.1 * (season > 1)))
    visits = rng.poisson(book.branch_rate * scale * (0.6 if cal.cny[t] else 1.0))
    calls = rng.poisson((0.05 + 0.9 * complaint) * scale)
    complaints = (complaint & live).astype(np.int64)
    counts = np.stack([logins, complaints, visits, calls])  # order of INTERACTION_KINDS
    assert INTERACTION_KINDS == ("login", "complaint", "branch_visit", "call_center")
    kinds = np.repeat(np.arange(4), counts.sum(axis=1))
    customer = np.concatenate([np.repeat(np.arange(n), c) for c in counts])
    timestamp = _spread(rng, customer, min_day, max_day, start_us, hours=(6, 24))
    return {"customer": customer, "timestamp": timestamp, "kind": kinds}


def _balances_table(ids, month_day, asset_rows, balance, avg, liability_rows, liability, liability_avg) -> pa.Table:
    held = np.concatenate([asset_rows, liability_rows], axis=1)
    end = np.concatenate([balance, liability], axis=1)
    average = np.concatenate([avg, liability_avg], axis=1)
    customer, slot = np.nonzero(held)  # row-major: by customer, then product
    product = np.array([_PROD[p] for p in (*ASSET_PRODUCTS, "mortgage", "consumer_loan", "credit_card")])[slot]
    return pa.table(
        {
            "customer_id": pa.array(ids[customer]),
            "month": _dates(np.full(len(customer), month_day)),
            "product": _text(product, PRODUCTS),
            "balance_month_end": pa.array(np.maximum(end[customer, slot], 0.0)),
            "balance_month_avg": pa.array(np.maximum(average[customer, slot], 0.0)),
        },
        schema=contract_schema("balances"),
    )


# --- the true state -----------------------------------------------------------------------------------------


def _hazard_logit(book, t, tenure_next, log_aum_history, complaints_history, td_share, shock, engagement) -> np.ndarray:
    """Logit of the probability that an active customer starts leaving next month."""
    h = HAZARD
    la = log_aum_history[t]
    back = log_aum_history[max(0, t - 3)]
    back = np.where(np.isnan(back), la, back)
    fall = np.clip(-(la - back), 0, 3)
    fall = np.nan_to_num(fall)
    complaints = complaints_history[max(0, t - 2) : t + 1].sum(axis=0)
    products = book.held.sum(axis=1) + (book.mortgage > 0) + (book.loan > 0) + book.card
    lost = (t - book.payroll_lost_at) <= 6
    return (
        h["intercept"]
        + h["engagement"] * engagement
        + h["payroll"] * book.payroll
        + h["payroll_lost_6m"] * lost
        + h["complaints_3m"] * np.minimum(complaints, 2)
        + h["aum_fall_3m"] * fall
        + h["product_count"] * (products - 2)
        + h["rate_shock_x_time_deposit_share"] * shock * td_share * book.rate_sensitivity
        + h["tenure_under_12m"] * (tenure_next < 12)
        + h["low_activity"] * book.low_activity
        + h["log_aum"] * (np.nan_to_num(la) - 9)
    )


def _exit_probability(h: np.ndarray, closure_p: np.ndarray) -> np.ndarray:
    """P(an exit dated in the next H months) from the next H monthly leaving hazards (the columns of h).

    A closure is dated in its leaving month; a dormancy exit at its first quiet month, the month after the
    drain, so a drain in the horizon's last month exits just after it.
    """
    survive = np.ones(len(h))
    total = np.zeros(len(h))
    horizon = h.shape[1]
    for k in range(horizon):
        total += survive * h[:, k] * (closure_p if k == horizon - 1 else 1.0)
        survive = survive * (1 - h[:, k])
    return total


def _ground_truth(book, t, cfg, tenure, log_aum_history, complaints_history, td_share, shock, tier_end, bounds, balance,
                  liability, asset_rates, liability_rates, revenue, months) -> dict:
    upgrade_effect = _upgrade_effect(book)
    active = book.status == ACTIVE
    draining = book.status == DRAINING
    open_now = active | draining | (book.status == DORMANT)
    n = len(book.ids)
    labels = cfg.labels
    h_churn, h_up = labels.churn_horizon_months, labels.upgrade_horizon_months
    # projected hazards for the next months: engagement reverts to its baseline, the rest stays
    projected = max(h_churn, h_up, 3)
    hs = np.zeros((n, projected))
    base = np.zeros((n, projected))
    for k in range(projected):
        e_k = book.baseline + ENGAGEMENT_PERSISTENCE**k * (book.engagement - book.baseline)
        logit = book.hazard_logit + HAZARD["engagement"] * (e_k - book.engagement)
        if k > 0:
            logit = logit - HAZARD["tenure_under_12m"] * ((tenure + 1 < 12) & (tenure + 1 + k >= 12))
        mult = np.where(book.retention_until >= t + 1 + k, book.retention_multiplier, 1.0)
        base[:, k] = expit(logit)
        hs[:, k] = np.minimum(base[:, k] * mult, HAZARD_CAP)
    has_loans = (book.mortgage > 0) | (book.loan > 0)
    closure_p = np.clip(CLOSURE_SHARE + 0.2 * (tier_end >= 1) + 0.15 * has_loans + 0.2 * book.closure_bias, 0.05, 0.9)
    p_exit = _exit_probability(hs[:, :h_churn], closure_p)
    retention_effect = _retention_effect(book, t + 1, complaints_history, td_share)
    treated_hs = np.minimum(base * (1 - retention_effect)[:, None], HAZARD_CAP)
    effect = p_exit - _exit_probability(treated_hs[:, :h_churn], closure_p)
    stays = np.prod(1 - hs[:, :h_up], axis=1)  # no leaving (closure or drain) before the upgrade horizon

    # upgrade: log AUM in h_up months is normal around its drift; adoption adds a jump
    kappa = np.where(tenure < 12, WEALTH_REVERSION_NEW, WEALTH_REVERSION)
    target3 = book.target + h_up * book.growth / 12
    drift_drain = sum(_drain(book.baseline + ENGAGEMENT_PERSISTENCE ** (k + 1) * (book.engagement - book.baseline)) for k in range(h_up))
    la3 = target3 + (book.log_aum - target3) * (1 - kappa) ** h_up + drift_drain
    sd = np.sqrt(h_up) * (0.07 + 0.05 * _wealth_share(book))
    next_bound = np.append(bounds, np.inf)[np.minimum(tier_end + 1, len(bounds))]
    gap = la3 - np.log(next_bound)
    adopt_p = ADOPTION_BASE * np.exp(0.35 * book.income + 0.3 * book.engagement + 5 * book.growth) * np.where((tier_end == 1) | (tier_end == 2), 1.5, 1.0)
    can_adopt = ~book.held[:, _WEALTH].all(axis=1)
    jump_mean = np.mean(ADOPTION_JUMP)
    jump_var = (ADOPTION_JUMP[1] - ADOPTION_JUMP[0]) ** 2 / 12

    wind_mean = np.mean(WINDFALL_JUMP)
    wind_var = (WINDFALL_JUMP[1] - WINDFALL_JUMP[0]) ** 2 / 12
    p_wind = 1 - (1 - WINDFALL_RATE) ** h_up

    def upgrade_probability(first_month_adopt):
        # at most one jump of either kind within the horizon (the chance of two is small for a few months)
        pa_ = np.where(can_adopt, 1 - (1 - np.minimum(first_month_adopt, 1)) * (1 - adopt_p) ** (h_up - 1), 0.0)
        without = ndtr(gap / sd)
        with_adoption = ndtr((gap + jump_mean) / np.sqrt(sd**2 + jump_var))
        with_windfall = ndtr((gap + wind_mean) / np.sqrt(sd**2 + wind_var))
        return stays * ((1 - pa_ - p_wind) * without + pa_ * with_adoption + p_wind * with_windfall)

    up = upgrade_probability(adopt_p)
    up_effect = upgrade_probability(np.maximum(adopt_p + upgrade_effect, 0.0)) - up
    top = tier_end >= len(bounds) - 1
    up = np.where(top | ~active, 0.0, up)
    up_effect = np.where(top | ~active, 0.0, up_effect)
    # expected offer cost of a contact next month: every acceptor is paid, whatever they would have done
    aum_now = balance.sum(axis=1)
    policy = cfg.policy
    accept = _retention_acceptance(retention_effect)
    accept = accept + (1 - accept) * TIME_DEPOSIT_OPENING * ~book.held[:, TD]  # ``responded`` as the contacts record it
    retention_offer_cost = accept * policy.retention_offer_rate * aum_now
    upgrade_accept = np.where(can_adopt, np.clip(adopt_p + upgrade_effect, 0, 1), 0.0)
    upgrade_offer_cost = np.where(top | ~active, 0.0, upgrade_accept * policy.upgrade_offer_rate * aum_now)

    # expected revenue: today's balances drifting with AUM; fees as this month; survival from the hazards
    monthly_drift = np.clip((la3 - book.log_aum) / 3, -0.3, 0.3)
    asset_income = (balance * asset_rates).sum(axis=1)
    liability_income = (liability * liability_rates).sum(axis=1)
    base_rev = revenue - asset_income - liability_income  # fees - cost to serve
    disc = (1 + cfg.labels.clv_annual_discount_rate) ** (-1 / 12)
    survive = np.ones(n)
    clv = np.zeros(n)
    expected_next = np.zeros(n)
    for k in range(1, cfg.labels.clv_horizon_months + 1):
        h_k = hs[:, min(k - 1, projected - 1)]
        survive = survive * (1 - h_k)
        rev_k = asset_income * np.exp(monthly_drift * min(k, 6)) + liability_income + base_rev
        if k == 1:
            expected_next = survive * rev_k
        clv += survive * rev_k * disc**k
    clv = np.maximum(clv, 0.0)

    # a customer who drained this month exits next month (certain); once the exit is past, 0
    waiting = (draining | (book.status == DORMANT)) & (book.exit_month > t)
    churn_hazard = np.where(active, hs[:, 0], np.where(waiting & (book.exit_month == t + 1), 1.0, 0.0))
    churn_p = np.where(active, p_exit, np.where(waiting & (book.exit_month <= t + h_churn), 1.0, 0.0))
    idx = np.flatnonzero(open_now)
    return {
        "customer": idx,
        "month": np.full(len(idx), t),
        "churn_hazard": churn_hazard[idx],
        "churn_probability": churn_p[idx],
        "upgrade_probability": up[idx],
        "expected_net_revenue": np.where(active, expected_next, 0.0)[idx],
        "expected_clv": np.where(active, clv, 0.0)[idx],
        "campaign_effect": np.where(active, effect, 0.0)[idx],
        "upgrade_campaign_effect": up_effect[idx],
        "retention_offer_cost": np.where(active, retention_offer_cost, 0.0)[idx],
        "upgrade_offer_cost": upgrade_offer_cost[idx],
        "engagement": book.engagement[idx],
        "tier": tier_end[idx],
        "payroll": book.payroll[idx],
        # the churn population: still using the bank this month (active, or draining: it acted this month)
        "at_risk": (active | draining)[idx],
    }


def _write_chunk_end(sink, chunk, book, cal, ground_truth, contacts, closed_on, stats, months, cfg, bounds) -> None:
    """Ground truth (needs each customer's eventual exit), campaign contacts, closures and statistics."""
    names = cfg.value_tiers.names
    schema = ground_truth_schema(cfg.labels)
    horizon = cfg.labels.churn_horizon_months
    exit_days = np.where(book.exit_month >= 0, np.append(cal.month_end_days, cal.month_end_days[-1] + 31)[np.minimum(book.exit_month, months)], 0)
    rng_sample = np.random.default_rng([0, chunk])
    tier_history = np.full((months, len(book.ids)), -1)
    for t, truth in enumerate(ground_truth):
        idx = truth["customer"]
        tier_history[t, idx] = truth["tier"]
        exit_month = book.exit_month[idx]
        has_exit = exit_month >= 0
        sink.partition(
            GROUND_TRUTH_TABLE,
            cal.periods[t],
            chunk,
            pa.table(
                {
                    "customer_id": pa.array(book.ids[idx]),
                    "month": _dates(np.full(len(idx), cal.month_end_days[t])),
                    **{name: pa.array(truth[k]) for name, k in zip(schema.names[2:], _TRUTH_COLUMNS)},
                    "value_tier": _text(truth["tier"], names),
                    "exit_month": _dates(exit_days[idx], mask=~has_exit),
                    "exit_type": _text(book.exit_type[idx], EXIT_TYPES),
                },
                schema=schema,
            ),
        )
        at_risk = truth["at_risk"]
        if t + horizon < months:
            exits = has_exit & (exit_month > t) & (exit_month <= t + horizon)
            score = truth["churn_probability"][at_risk]
            outcome = exits[at_risk]
            keep = rng_sample.random(len(score)) < stats.sample_rate
            stats.scores.append(score[keep].astype(np.float32))
            stats.outcomes.append(outcome[keep])
        if t + 3 < months:
            outcome = (has_exit & (exit_month > t) & (exit_month <= t + 3))[at_risk]
            if t % 3 == 0:
                stats.quarter_at_risk[t] += at_risk.sum()
                stats.quarter_exits[t] += outcome.sum()
                payroll = truth["payroll"][at_risk]
                for flag in (0, 1):
                    stats.payroll_at_risk[flag] += (payroll == flag).sum()
                    stats.payroll_exits[flag] += outcome[payroll == flag].sum()
    for t in range(months - 3):
        now, later = tier_history[t], tier_history[t + 3]
        eligible = (now >= 0) & (now < len(bounds) - 1)
        stats.upgrade_at_risk += int(eligible.sum())
        stats.upgrades += int((eligible & (later > now)).sum())
    stats.final_tier.append(ground_truth[-1]["tier"])
    stats.final_aum.append(ground_truth[-1]["aum"])

    rows = {k: np.concatenate([c[k] for c in contacts]) for k in contacts[0]}
    periods = np.array(cal.periods)[rows["month"]]
    offers = np.array(OFFERS)[rows["offer"]]
    campaign_id = np.char.add(np.char.add(periods.astype(str), "-"), offers.astype(str))
    campaign_id = np.where(rows["exploration"], np.char.add(campaign_id, "-exploration"), campaign_id)
    sink.append(
        "campaign_contacts",
        pa.table(
            {
                "customer_id": pa.array(book.ids[rows["customer"]]),
                "timestamp": _timestamps(rows["timestamp"]),
                "campaign_id": pa.array(campaign_id, pa.string()),
                "offer": pa.array(offers, pa.string()),
                "treated": pa.array(rows["treated"].astype(bool)),
                "responded": pa.array(rows["responded"].astype(bool)),
            },
            schema=contract_schema("campaign_contacts"),
        ),
    )
    closed = closed_on >= 0
    sink.append(
        "closures",
        pa.table(
            {"customer_id": pa.array(book.ids[closed]), "closed_date": _dates(closed_on[closed])},
            schema=contract_schema("closures"),
        ),
    )


# ==========================================================================================================
# Monte Carlo continuation: oracles that are true limits
# ==========================================================================================================

#: Random-stream tag of continuations (kept apart from the chunks' own streams).
_CONTINUATION_STREAM = 9_000_011
#: File (in the bank's folder) of the continuation oracle; no feature builder reads it.
CONTINUATION_ORACLE_FILE = "oracle_continuation.parquet"


@dataclass
class _Continuation:
    """One continuation of a chunk from the end of month ``fork`` to month ``last``.

    ``replications`` copies of every customer continue from the same true state at the end of ``fork`` with a random
    stream of their own (``stream``; None keeps the bank's own stream, which with one copy replays the written path).
    ``record`` keeps what the labels read, per month: open, value-tier rank, net revenue; and the exit months.
    """

    fork: int
    last: int
    replications: int
    stream: int | None
    open: dict[int, np.ndarray] = field(default_factory=dict)
    tier: dict[int, np.ndarray] = field(default_factory=dict)
    revenue: dict[int, np.ndarray] = field(default_factory=dict)
    exit_month: np.ndarray | None = None

    def record(self, t: int, open_now: np.ndarray, tier: np.ndarray, revenue: np.ndarray, exit_month: np.ndarray) -> None:
        self.open[t], self.tier[t], self.revenue[t] = open_now.copy(), tier.copy(), revenue.copy()
        self.exit_month = exit_month.copy()


def _replicate(copies: int, n: int, book: _Book, log_aum_history, complaints_history, closed_on):
    """``copies`` copies of every customer (copy-major: row r * n + i is copy r of customer i)."""
    def tile(value):
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
            return np.tile(value, (copies,) + (1,) * (value.ndim - 1))
        return value

    replicated = _Book(**{f.name: tile(getattr(book, f.name)) for f in fields(_Book)})
    return (replicated, np.tile(log_aum_history, (1, copies)), np.tile(complaints_history, (1, copies)),
            np.tile(closed_on, copies))


class _Discard(_Sink):
    """A sink that writes nothing (continuations only observe)."""

    def __init__(self):
        self.rows = {}

    def append(self, table_name: str, table: pa.Table) -> None:
        pass

    def partition(self, table_name: str, period: str, chunk: int, table: pa.Table) -> None:
        pass

    def close(self) -> None:
        pass


class _NoBar:
    def update(self, _: int) -> None:
        pass

    def set_postfix_str(self, _: str) -> None:
        pass


def _continue_chunk(ctx: _Context, chunk: int, first: int, n: int, fork: int, last: int, copies: int,
                    stream: int | None) -> _Continuation:
    run = _Continuation(fork=fork, last=last, replications=copies, stream=stream)
    _simulate_chunk(ctx, chunk, first, n, _Discard(), _Stats(ctx.settings.months, 0.0), _NoBar(), continuation=run)
    return run


def continuation_outcomes(run: _Continuation, n: int, labels: Labels) -> dict[str, np.ndarray]:
    """Per copy (rows) and customer (columns): the labels' outcomes after ``run.fork``, NaN past the simulated months.

    ``churn``: an exit dated in (fork, fork + H]; ``upgrade``: value tier at fork + H above the tier at fork;
    ``clv``: max(0, discounted net revenue of months fork + 1 .. fork + H), 0 from the closure month on.
    """
    fork, copies = run.fork, run.replications
    out = {}
    h = labels.churn_horizon_months
    if fork + h <= run.last:
        exit_month = run.exit_month.reshape(copies, n)
        out["churn"] = ((exit_month > fork) & (exit_month <= fork + h)).astype(float)
    h = labels.upgrade_horizon_months
    if fork + h <= run.last:
        out["upgrade"] = (run.tier[fork + h].reshape(copies, n) > run.tier[fork][None, :]).astype(float)
    h = labels.clv_horizon_months
    if fork + h <= run.last:
        rate = labels.clv_annual_discount_rate
        value = sum(run.revenue[fork + i].reshape(copies, n) * (1 + rate) ** (-i / 12) for i in range(1, h + 1))
        out["clv"] = np.maximum(value, 0.0)
    return out


def continuation_oracle(settings: Simulation, config: Config, fork_months: list[int], *, replications: int = 32,
                        max_rows: int = 400_000, progress: bool = True) -> pa.Table:
    """The oracle as a true limit: each outcome's expectation given every customer's true state at a month end.

    Replays the simulated bank (same settings, config and seed as written; nothing is written) to the end of each
    month in ``fork_months`` (indexes from the first simulated month), then continues it ``replications`` times with
    fresh random streams and averages what the labels would read: P(churn), P(upgrade), E[CLV] over the configured
    horizons (a horizon past the simulated months gives NaN). The standard error of each mean is in ``<column>_se``,
    and the mean over the first half of the replications in ``<column>_half``: a metric of the oracle is biased down
    by its Monte Carlo noise, and comparing the two tells by how much. Copies are simulated ``max_rows // chunk size``
    at a time to bound memory.

    Returns
    -------
    pyarrow.Table
        ``customer_id``, ``month`` (the fork's month end), the oracle columns named by ``config.labels.names``,
        their ``_se`` and ``_half`` columns and ``replications``; one row per customer open at the month end.
    """
    if replications < 2:
        raise SimulationError(f"replications must be >= 2 to state a standard error, got {replications}")
    calendar_ = _Calendar.build(settings.start_month, settings.months)
    bad = [m for m in fork_months if not 0 <= m < settings.months]
    if bad:
        raise SimulationError(f"fork months {bad} are outside the simulated months 0..{settings.months - 1}")
    ctx = _Context(settings=settings, config=config, calendar=calendar_, shocks=_rate_shocks(settings.seed, calendar_))
    labels = config.labels
    names = labels.names
    columns = {"churn": names.churn_oracle, "upgrade": names.upgrade_oracle, "clv": names.clv_oracle}
    horizon = max(labels.churn_horizon_months, labels.upgrade_horizon_months, labels.clv_horizon_months)
    n_chunks = -(-settings.customers // settings.chunk_customers)
    group = max(1, min(replications, max_rows // max(1, min(settings.customers, settings.chunk_customers))))
    groups = -(-replications // group)
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=n_chunks * len(fork_months) * groups, desc="oracle continuations", unit="run", disable=not progress) as bar:
        for chunk in range(n_chunks):
            first = chunk * settings.chunk_customers
            n = min(settings.chunk_customers, settings.customers - first)
            for fork in sorted(set(fork_months)):
                last = min(fork + horizon, settings.months - 1)
                sums: dict[str, np.ndarray] = {}
                squares: dict[str, np.ndarray] = {}
                halves: dict[str, np.ndarray] = {}
                done = 0
                open_at_fork = None
                for g in range(groups):
                    copies = min(group, replications - done)
                    run = _continue_chunk(ctx, chunk, first, n, fork, last, copies, stream=fork * 10_000 + g)
                    open_at_fork = run.open[fork]
                    for key, values in continuation_outcomes(run, n, labels).items():
                        sums[key] = sums.get(key, 0.0) + values.sum(axis=0)
                        squares[key] = squares.get(key, 0.0) + (values**2).sum(axis=0)
                        halves[key] = halves.get(key, 0.0) + values[: max(0, replications // 2 - done)].sum(axis=0)
                    done += copies
                    bar.update(1)
                ids = np.arange(first, first + n, dtype=np.int64) + 100_000_001
                rows = np.flatnonzero(open_at_fork)
                table = {"customer_id": pa.array(ids[rows]),
                         "month": _dates(np.full(len(rows), calendar_.month_end_days[fork]))}
                for key, column in columns.items():
                    if key in sums:
                        mean = sums[key] / replications
                        variance = np.maximum(squares[key] / replications - mean**2, 0.0) * replications / (replications - 1)
                        table[column] = pa.array(mean[rows])
                        table[f"{column}_se"] = pa.array(np.sqrt(variance / replications)[rows])
                        table[f"{column}_half"] = pa.array((halves[key] / (replications // 2))[rows])
                    else:
                        for suffix in ("", "_se", "_half"):
                            table[f"{column}{suffix}"] = pa.nulls(len(rows), pa.float64())
                table["replications"] = pa.array(np.full(len(rows), replications, np.int64))
                parts.append(pa.table(table))
    return pa.concat_tables(parts)
