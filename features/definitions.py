"""The one definition of every customer-month feature and label, as SQL (DuckDB dialect).

Each feature family is a small function returning named select expressions; :func:`pipeline` strings them
into a few SQL steps that DuckDB runs as written and Spark runs after ``sqlglot`` transpiles them. The SQL
keeps to what both engines share: integer month indexes (``year * 12 + month - 1``) instead of date
arithmetic, ``ROWS`` window frames over a dense customer x month spine, ``NULLIF`` around every divisor
(Spark runs in ANSI mode).

Pipeline
--------
1. ``span``: one row per customer with onboarding, closure and birth month indexes.
2. ``txn_monthly``, ``balance_monthly``, ``interaction_monthly``, ``campaign_monthly``: one row per customer
   and month of each source table, reading only the months the requested output needs.
3. ``monthly``: the dense spine (every month a customer is active at month end, from onboarding - or the
   first month read - to the month before closure) left-joined to those aggregates. With the optional
   ``coverage`` table (partial extracts) the spine also stays inside each customer's covered months: the
   month-ends from ``coverage_start`` to ``coverage_end``; months outside it are unobserved, not inactive.
4. ``base``: adds the month-over-month flags that need the previous month (tier changes, products opened).
5. ``customer_month_features``: trailing-window features (``ROWS BETWEEN k-1 PRECEDING AND CURRENT ROW``).
6. ``customer_month_labels``: forward-window labels (null when the horizon runs past the data's end, or past
   the customer's ``coverage_end``); the final select keeps the requested as_of months.

Point in time: a feature at ``as_of`` reads only spine rows at or before ``as_of``, and a month's row holds
only data dated in that month, so nothing dated after ``as_of`` reaches it. Features that look back without
a fixed window (months since the last salary, months in the value tier) look back at most
:data:`HISTORY_MONTHS`, so that building only the latest month reads a bounded slice of history and gives
exactly the rows a full build gives.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from custbase.config import Config, Labels
from features.contract import (
    ASSET_PRODUCTS,
    CHANNELS,
    DIGITAL_CHANNELS,
    LIABILITY_PRODUCTS,
    NON_CUSTOMER_INITIATED_CATEGORIES,
    OFFERS,
    PRODUCTS,
    TRANSACTION_CATEGORIES,
)

#: The longest look-back of any feature: "months since" and "months in tier" features are capped here.
HISTORY_MONTHS = 24
#: Window lengths (months) of the windowed transaction features.
WINDOWS: tuple[int, ...] = (1, 3, 6, 12)
#: Interaction kinds that are the customer's own doing (with customer-initiated transactions: "activity").
ACTIVITY_INTERACTIONS = ("login", "branch_visit", "call_center")
#: The feature that decides the churn population: a customer is in it at as_of when this is 0.
CHURN_POPULATION_COLUMN = "months_quiet"

#: Words reason phrases use for the contract's codes; a code not listed reads as its name with spaces.
PRODUCT_WORDS: dict[str, str] = {
    "current_deposit": "current account",
    "wealth_management": "wealth management product",
    "insurance": "insurance policy",
}
CHANNEL_WORDS: dict[str, str] = {"atm": "ATM", "pos": "card-terminal (POS)"}
#: Transaction categories as plural nouns ("No card spending ...", "Fees of 12 ...").
CATEGORY_WORDS: dict[str, str] = {
    "salary": "salary credits",
    "transfer": "transfers",
    "card_spend": "card spending",
    "bill_payment": "bill payments",
    "cash": "cash transactions",
    "investment": "investment transactions",
    "loan_repayment": "loan repayments",
    "fee": "fees",
    "other": "other transactions",
}


def product_word(code: str) -> str:
    return PRODUCT_WORDS.get(code, code.replace("_", " "))


def channel_word(code: str) -> str:
    return CHANNEL_WORDS.get(code, code.replace("_", " "))


def category_words(code: str) -> str:
    return CATEGORY_WORDS.get(code, code.replace("_", " "))


DType = Literal["int64", "float64", "str"]
_SPINE = "PARTITION BY customer_id ORDER BY month_idx"
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Phrase:
    """How a reason code says a feature's value: one ``str.format`` template per case of the value.

    The first case that applies is used: ``missing`` (null value), ``zero``, ``one``, ``negative``, else
    ``other``; a case left None falls through to the next (a missing value without a ``missing`` template
    reads "<name>: missing"). Templates format ``{value}`` with one of these specs
    (:mod:`serving.runtime.reasons` applies them):

    ======================  =====================================================================
    ``{value}``             a readable number (``3``, ``3,200``, ``0.35``) or the text as it is
    ``{value:%}``           the absolute value as a percent (``-0.45`` -> ``45%``)
    ``{value:abs}``         the absolute value as a number
    ``{value:months}``      ``1 month``, ``4 months``
    ``{value:years}``       months as ``2 years 3 months``
    ``{value:text}``        a code with spaces for underscores (``high_net_worth`` -> ``high net worth``)
    ======================  =====================================================================
    """

    other: str
    zero: str | None = None
    one: str | None = None
    negative: str | None = None
    missing: str | None = None

    def templates(self) -> tuple[str, ...]:
        """Every template given, ``other`` first."""
        return tuple(t for t in (self.other, self.zero, self.one, self.negative, self.missing) if t is not None)


@dataclass(frozen=True)
class Feature:
    """One output column: its name, SQL expression over the ``base`` step, dtype, business meaning and reason phrase.

    ``reason`` says the column's value in a reason code (a :class:`Phrase`, or one template string for every
    value). Adding a feature is one ``Feature(...)`` in its family function below, plus a line in the pinned
    column list of a new feature-set version (``features/feature_set.py``) and a test of its values, e.g.::

        Feature("loans_opened_12m", trailing_sum("loans_opened", 12), "int64", "products",
                "Loans opened in the last 12 months.",
                count_phrase("loan opened", "loans opened", 12), ("balances",))

    ``custbase features --list`` then shows it, and reason codes read "2 loans opened in the last 12 months".
    """

    name: str
    sql: str
    dtype: DType
    family: str
    description: str
    reason: Phrase | str
    requires: tuple[str, ...] = ("transactions",)

    def __post_init__(self) -> None:
        if isinstance(self.reason, str):
            object.__setattr__(self, "reason", Phrase(self.reason))


@dataclass(frozen=True)
class Step:
    """One named SQL step (a view in either engine)."""

    name: str
    sql: str
    #: DuckDB stores the result (a temporary table) instead of a view: a step read twice runs once.
    materialize: bool = False


@dataclass(frozen=True)
class MonthRange:
    """The months of one build, as month indexes (``year * 12 + month - 1``).

    ``start``-``end`` are the output as_of months; ``read_start``-``read_end`` the months read from the raw
    tables (history for trailing windows, the label horizon after ``end``); ``first`` the data's first month
    (nothing before it is known, so no spine row precedes it); ``last`` the last complete month of the data.
    """

    first: int

    start: int
    end: int
    last: int
    read_start: int
    read_end: int


# ----------------------------------------------------------------------------------------------- months


def month_index(day: date) -> int:
    """``year * 12 + month - 1``: consecutive months are consecutive integers."""
    return day.year * 12 + day.month - 1


def month_end(index: int) -> date:
    """The last day of the month with index ``index``."""
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, calendar.monthrange(year, month0 + 1)[1])


def last_complete_month(data_end: date) -> int:
    """Index of the last month whose month end is on or before ``data_end``."""
    index = month_index(data_end)
    return index if data_end >= month_end(index) else index - 1


def month_range(config: Config, *, data_end: date, first_data_month: int, start: int | None, end: int | None) -> MonthRange:
    """The output and read months of a build; raises if the requested months hold no complete month.

    ``first_data_month`` is the month of the first transaction: the default ``start``, and the first spine
    month (months before it would look like months without any activity).
    """
    last = last_complete_month(data_end)
    start = first_data_month if start is None else max(start, first_data_month)
    end = last if end is None else min(end, last)
    if start > end:
        raise ValueError(
            f"no as_of month to build: from {month_end(start)} to {month_end(end)} "
            f"(the data's last complete month is {month_end(last)}); check --from/--to"
        )
    lookback, horizon = _reach(config)
    return MonthRange(first=first_data_month, start=start, end=end, last=last,
                      read_start=max(start - lookback, first_data_month), read_end=min(end + horizon, last))


# ----------------------------------------------------------------------------------------------- helpers


def trailing(aggregate: str, months: int) -> str:
    """``aggregate`` over the ``months`` spine rows ending at the current one (1 = this month only)."""
    return f"{aggregate} OVER ({_SPINE} ROWS BETWEEN {months - 1} PRECEDING AND CURRENT ROW)"


def trailing_sum(column: str, months: int) -> str:
    return column if months == 1 else trailing(f"SUM({column})", months)


def previous(column: str, months: int = 1) -> str:
    return f"LAG({column}, {months}) OVER ({_SPINE})"


def following(column: str, months: int) -> str:
    return f"LEAD({column}, {months}) OVER ({_SPINE})"


def ratio(numerator: str, denominator: str) -> str:
    """ANSI-safe division: null when the denominator is 0."""
    return f"CAST({numerator} AS DOUBLE) / NULLIF({denominator}, 0)"


def in_last(months: int) -> str:
    """``in the last month`` / ``in the last 3 months``: the window of a reason phrase."""
    return "in the last month" if months == 1 else f"in the last {months} months"


def count_phrase(singular: str, plural: str, months: int) -> Phrase:
    """Reason phrase of an event count over the last ``months``: "No complaints ...", "1 complaint ...", "3 complaints ..."."""
    window = in_last(months)
    return Phrase(f"{{value}} {plural} {window}", zero=f"No {plural} {window}", one=f"1 {singular} {window}")


def since_phrase(event: str) -> Phrase:
    """Reason phrase of a "months since the last <event>" feature (null: none within :data:`HISTORY_MONTHS`)."""
    return Phrase(f"No {event} for {{value:months}}", zero=f"Last {event} this month", missing=f"No {event} on record")


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(_quote(v) for v in values) + ")"


def _month_of(column: str) -> str:
    return f"(YEAR({column}) * 12 + MONTH({column}) - 1)"


def value_tier_rank_sql(aum: str, config: Config) -> str:
    """Rank of the value tier whose lower bound is the last one at or below ``aum`` (0 = lowest)."""
    bounds = config.value_tiers.lower_bounds
    cases = " ".join(f"WHEN {aum} >= {bounds[i]!r} THEN {i}" for i in range(len(bounds) - 1, 0, -1))
    return f"(CASE {cases} ELSE 0 END)" if cases else "0"


def next_tier_progress_sql(aum: str, rank: str, config: Config) -> str:
    """``aum`` as a share of the next tier's lower bound (null in the top tier): how close an upgrade is."""
    bounds = config.value_tiers.lower_bounds
    cases = " ".join(f"WHEN {i} THEN {aum} / {bounds[i + 1]!r}" for i in range(len(bounds) - 1))
    return f"(CASE {rank} {cases} END)"


def value_tier_name_sql(rank: str, config: Config) -> str:
    cases = " ".join(f"WHEN {i} THEN {_quote(name)}" for i, name in enumerate(config.value_tiers.names))
    return f"(CASE {rank} {cases} END)"


# ----------------------------------------------------------------------------------------------- monthly aggregates


def _txn_monthly(r: MonthRange, only: str = "") -> str:
    first, after = month_end(r.read_start - 1), month_end(r.read_end)
    channels = [f"COUNT(CASE WHEN channel = {_quote(c)} THEN 1 END) AS txn_count_{c}" for c in CHANNELS]
    categories = [f"SUM(CASE WHEN category = {_quote(c)} THEN amount ELSE 0 END) AS txn_amount_{c}" for c in TRANSACTION_CATEGORIES]
    return f"""
SELECT customer_id, month_idx,
  COUNT(*) AS txn_count,
  {", ".join(channels)},
  {", ".join(categories)},
  SUM(CASE WHEN direction = 'in' THEN amount ELSE 0 END) AS txn_amount_in,
  SUM(CASE WHEN direction = 'out' THEN amount ELSE 0 END) AS txn_amount_out,
  COUNT(CASE WHEN category = 'salary' THEN 1 END) AS salary_count,
  COUNT(CASE WHEN category NOT IN {_in_list(NON_CUSTOMER_INITIATED_CATEGORIES)} THEN 1 END) AS customer_txn_count
FROM (
  SELECT CAST(customer_id AS BIGINT) AS customer_id, {_month_of('CAST("timestamp" AS TIMESTAMP)')} AS month_idx,
    CAST(amount AS DOUBLE) AS amount, direction, channel, category
  FROM raw_transactions
  WHERE "timestamp" >= CAST('{first + _ONE_DAY}' AS TIMESTAMP) AND "timestamp" < CAST('{after + _ONE_DAY}' AS TIMESTAMP){only}
) AS t
GROUP BY customer_id, month_idx"""


def _balance_monthly(r: MonthRange, config: Config, only: str = "") -> str:
    rates = config.revenue.annual_rate
    per_product = []
    for p in PRODUCTS:
        per_product.append(f"SUM(CASE WHEN product = {_quote(p)} THEN balance_month_end ELSE 0 END) AS balance_{p}")
        per_product.append(f"CASE WHEN COUNT(CASE WHEN product = {_quote(p)} THEN 1 END) > 0 THEN 1 ELSE 0 END AS held_{p}")
    margin = " ".join(f"WHEN {_quote(p)} THEN {rates.get(p, 0.0) / 12!r}" for p in PRODUCTS)
    return f"""
SELECT customer_id, month_idx,
  {", ".join(per_product)},
  SUM(CASE WHEN product IN {_in_list(ASSET_PRODUCTS)} THEN balance_month_end ELSE 0 END) AS aum,
  SUM(CASE WHEN product IN {_in_list(LIABILITY_PRODUCTS)} THEN balance_month_end ELSE 0 END) AS liabilities,
  COUNT(DISTINCT product) AS product_count,
  SUM(balance_month_avg * (CASE product {margin} ELSE 0.0 END)) AS balance_revenue
FROM (
  SELECT CAST(customer_id AS BIGINT) AS customer_id, {_month_of('CAST("month" AS DATE)')} AS month_idx, product,
    CAST(balance_month_end AS DOUBLE) AS balance_month_end, CAST(balance_month_avg AS DOUBLE) AS balance_month_avg
  FROM raw_balances
  WHERE "month" >= CAST('{month_end(r.read_start - 1) + _ONE_DAY}' AS DATE) AND "month" <= CAST('{month_end(r.read_end)}' AS DATE){only}
) AS b
GROUP BY customer_id, month_idx"""


def _interaction_monthly(r: MonthRange, only: str = "") -> str:
    first, after = month_end(r.read_start - 1), month_end(r.read_end)
    return f"""
SELECT customer_id, month_idx,
  COUNT(CASE WHEN kind = 'login' THEN 1 END) AS logins,
  COUNT(CASE WHEN kind = 'complaint' THEN 1 END) AS complaints,
  COUNT(CASE WHEN kind = 'branch_visit' THEN 1 END) AS branch_visits,
  COUNT(CASE WHEN kind = 'call_center' THEN 1 END) AS call_center_calls
FROM (
  SELECT CAST(customer_id AS BIGINT) AS customer_id, {_month_of('CAST("timestamp" AS TIMESTAMP)')} AS month_idx, kind
  FROM raw_interactions
  WHERE "timestamp" >= CAST('{first + _ONE_DAY}' AS TIMESTAMP) AND "timestamp" < CAST('{after + _ONE_DAY}' AS TIMESTAMP){only}
) AS i
GROUP BY customer_id, month_idx"""


def _campaign_monthly(r: MonthRange, only: str = "") -> str:
    first, after = month_end(r.read_start - 1), month_end(r.read_end)
    offers = [f"COUNT(CASE WHEN treated AND offer = {_quote(o)} THEN 1 END) AS campaign_contacts_{o}" for o in OFFERS]
    return f"""
SELECT customer_id, month_idx,
  COUNT(CASE WHEN treated THEN 1 END) AS campaign_contacts,
  COUNT(CASE WHEN treated AND responded THEN 1 END) AS campaign_responses,
  {", ".join(offers)}
FROM (
  SELECT CAST(customer_id AS BIGINT) AS customer_id, {_month_of('CAST("timestamp" AS TIMESTAMP)')} AS month_idx,
    offer, CAST(treated AS BOOLEAN) AS treated, CAST(responded AS BOOLEAN) AS responded
  FROM raw_campaign_contacts
  WHERE "timestamp" >= CAST('{first + _ONE_DAY}' AS TIMESTAMP) AND "timestamp" < CAST('{after + _ONE_DAY}' AS TIMESTAMP){only}
) AS c
GROUP BY customer_id, month_idx"""


MONTHLY_COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": (
        "txn_count",
        *(f"txn_count_{c}" for c in CHANNELS),
        *(f"txn_amount_{c}" for c in TRANSACTION_CATEGORIES),
        "txn_amount_in",
        "txn_amount_out",
        "salary_count",
        "customer_txn_count",
    ),
    "balances": (
        *(col for p in PRODUCTS for col in (f"balance_{p}", f"held_{p}")),
        "aum",
        "liabilities",
        "product_count",
        "balance_revenue",
    ),
    "interactions": ("logins", "complaints", "branch_visits", "call_center_calls"),
    "campaign_contacts": ("campaign_contacts", "campaign_responses", *(f"campaign_contacts_{o}" for o in OFFERS)),
}
#: Source table -> (monthly step, alias in the ``monthly`` join).
_MONTHLY_STEP = {
    "transactions": ("txn_monthly", "t"),
    "balances": ("balance_monthly", "b"),
    "interactions": ("interaction_monthly", "i"),
    "campaign_contacts": ("campaign_monthly", "c"),
}


# ----------------------------------------------------------------------------------------------- spine


def _span(tables: frozenset[str], only: str = "") -> str:
    closures = (
        f"LEFT JOIN (SELECT CAST(customer_id AS BIGINT) AS customer_id, MIN({_month_of('CAST(closed_date AS DATE)')}) AS closure_idx "
        "FROM raw_closures GROUP BY customer_id) AS cl ON cl.customer_id = c.customer_id"
        if "closures" in tables
        else ""
    )
    closure = "cl.closure_idx" if "closures" in tables else "CAST(NULL AS BIGINT)"
    coverage, covered = "", ""
    if "coverage" in tables:
        end = "CAST(coverage_end AS DATE)"
        # The last covered as_of month is the last month whose month-end is on or before coverage_end.
        last = f"{_month_of(end)} - CASE WHEN {end} = LAST_DAY({end}) THEN 0 ELSE 1 END"
        coverage = (
            f"LEFT JOIN (SELECT CAST(customer_id AS BIGINT) AS customer_id, MIN({_month_of('CAST(coverage_start AS DATE)')}) "
            f"AS cover_first_idx, MAX({last}) AS cover_last_idx FROM raw_coverage GROUP BY customer_id) AS cv "
            "ON cv.customer_id = c.customer_id"
        )
        covered = ", cv.cover_first_idx, cv.cover_last_idx"
    return f"""
SELECT c.customer_id, c.birth_idx, c.gender, c.city_tier, c.income_band, c.onboard_idx, {closure} AS closure_idx{covered}
FROM (
  SELECT CAST(customer_id AS BIGINT) AS customer_id, {_month_of('CAST(birth_date AS DATE)')} AS birth_idx,
    CAST(gender AS VARCHAR) AS gender, CAST(city_tier AS VARCHAR) AS city_tier, CAST(income_band AS VARCHAR) AS income_band,
    {_month_of('CAST(onboarding_date AS DATE)')} AS onboard_idx
  FROM raw_customers
  WHERE TRUE{only}
) AS c
{closures}
{coverage}"""


def _monthly(tables: frozenset[str], config: Config) -> str:
    joins, columns = [], []
    for table, (step, alias) in _MONTHLY_STEP.items():
        if table not in tables:
            continue
        joins.append(f"LEFT JOIN {step} AS {alias} ON {alias}.customer_id = s.customer_id AND {alias}.month_idx = s.month_idx")
        columns += [f"COALESCE({alias}.{col}, 0) AS {col}" for col in MONTHLY_COLUMNS[table]]
    alias_of = {table: alias for table, (_, alias) in _MONTHLY_STEP.items()}

    def col(table: str, name: str) -> str:
        return f"COALESCE({alias_of[table]}.{name}, 0)"

    activity = [f"{col('transactions', 'customer_txn_count')}"]
    if "interactions" in tables:
        activity += [col("interactions", c) for c in ("logins", "branch_visits", "call_center_calls")]
    derived = [f"CASE WHEN {' + '.join(activity)} > 0 THEN 1 ELSE 0 END AS active"]
    # Quiet month: no customer-initiated activity and (with balances) month-end AUM below the dormancy threshold.
    quiet = [f"{' + '.join(activity)} = 0"]
    # The value definition of config.revenue: rated transaction amounts (+ balance margins below) - cost to serve.
    revenue = [f"{col('transactions', f'txn_amount_{c}')} * {rate!r}" for c, rate in config.revenue.transaction_rate.items() if rate]
    revenue.append(f"-{config.revenue.cost_to_serve_monthly!r}")
    if "balances" in tables:
        quiet.append(f"{col('balances', 'aum')} < {config.labels.dormancy_aum_threshold!r}")
        revenue.insert(0, col("balances", "balance_revenue"))
        derived.append(f"{value_tier_rank_sql(col('balances', 'aum'), config)} AS tier_rank")
    derived.append(f"CASE WHEN {' AND '.join(quiet)} THEN 1 ELSE 0 END AS quiet")
    derived.append(f"({' + '.join(revenue)}) AS net_revenue")
    covered, inside = "", ""
    if "coverage" in tables:
        # A customer without a coverage row is covered up to the data's end.
        covered = ", sp.cover_last_idx"
        inside = ("\n    AND (sp.cover_first_idx IS NULL OR m.month_idx >= sp.cover_first_idx)"
                  "\n    AND (sp.cover_last_idx IS NULL OR m.month_idx <= sp.cover_last_idx)")
    return f"""
SELECT s.customer_id, s.month_idx, s.as_of, s.birth_idx, s.gender, s.city_tier, s.income_band, s.onboard_idx, s.closure_idx{covered.replace('sp.', 's.')},
  {", ".join(columns + derived)}
FROM (
  SELECT sp.customer_id, m.month_idx, m.as_of, sp.birth_idx, sp.gender, sp.city_tier, sp.income_band, sp.onboard_idx, sp.closure_idx{covered}
  FROM span AS sp JOIN months AS m
    ON m.month_idx >= sp.onboard_idx AND (sp.closure_idx IS NULL OR m.month_idx < sp.closure_idx){inside}
) AS s
{chr(10).join(joins)}"""


def _base(tables: frozenset[str]) -> str:
    extra = []
    if "balances" in tables:
        before = previous("tier_rank")
        # Encoded so one trailing MAX finds both the month of the last tier change and the tier before it.
        extra.append(
            f"CASE WHEN {before} IS NULL OR {before} <> tier_rank "
            f"THEN month_idx * 16 + COALESCE({before} + 1, 0) END AS tier_change_code"
        )
        opened = " + ".join(f"CASE WHEN held_{p} = 1 AND COALESCE({previous(f'held_{p}')}, 0) = 0 THEN 1 ELSE 0 END" for p in PRODUCTS)
        closed = " + ".join(f"CASE WHEN held_{p} = 0 AND COALESCE({previous(f'held_{p}')}, 0) = 1 THEN 1 ELSE 0 END" for p in PRODUCTS)
        extra += [f"({opened}) AS products_opened", f"({closed}) AS products_closed"]
    return f"SELECT m.*{''.join(', ' + e for e in extra)} FROM monthly AS m"


# ----------------------------------------------------------------------------------------------- feature families


@dataclass(frozen=True)
class Context:
    config: Config
    tables: frozenset[str]


def profile(ctx: Context) -> list[Feature]:
    req = ("customers",)
    return [
        Feature("age", f"CAST(FLOOR((month_idx - birth_idx) / 12.0) AS DOUBLE)", "float64", "profile",
                "Age in completed years at as_of (null when the birth date is unknown).", "Age {value}", req),
        Feature("tenure_months", "month_idx - onboard_idx", "int64", "profile",
                "Months since the customer's onboarding month (0 = onboarded this month).",
                Phrase("Customer for {value:years}", zero="Onboarded this month", negative="Onboarded this month"), req),
        Feature("gender", "gender", "str", "profile", "Gender code (F, M, U).", "Gender: {value:text}", req),
        Feature("city_tier", "city_tier", "str", "profile", "Tier of the customer's home city (tier1 = largest).",
                "City tier: {value:text}", req),
        Feature("income_band", "income_band", "str", "profile", "Declared or estimated income band.", "Income band: {value:text}", req),
    ]


def balances(ctx: Context) -> list[Feature]:
    req = ("balances",)
    out = [
        Feature("aum_month_end", "aum", "float64", "balances", "Assets under management (sum of asset-product balances) at month end.",
                "AUM of {value} at month end", req),
        *(Feature(f"aum_avg_{w}m", trailing("AVG(aum)", w), "float64", "balances",
                  f"Average month-end AUM over the last {w} months.", f"Average AUM of {{value}} over the last {w} months", req)
          for w in (3, 6, 12)),
        *(Feature(f"aum_change_ratio_{k}m", f"{ratio('aum', previous('aum', k))} - 1", "float64", "balances",
                  f"AUM now / AUM {k} month{'s' if k > 1 else ''} ago - 1 (null when that AUM was 0 or unknown).",
                  Phrase(f"AUM up {{value:%}} over {k} month{'s' if k > 1 else ''}",
                         zero=f"AUM unchanged over {k} month{'s' if k > 1 else ''}",
                         negative=f"AUM down {{value:%}} over {k} month{'s' if k > 1 else ''}"), req)
          for k in (1, 3, 6)),
        Feature("aum_trend_slope_6m", trailing("REGR_SLOPE(aum, month_idx)", 6), "float64", "balances",
                "Least-squares slope of month-end AUM over the last 6 months (currency per month).",
                "AUM trend of {value} per month over the last 6 months", req),
        Feature("aum_drawdown_12m", f"1 - {ratio('aum', trailing('MAX(aum)', 12))}", "float64", "balances",
                "Fall of AUM from its 12-month maximum, as a share of that maximum (0 = at the maximum).",
                Phrase("AUM {value:%} below its 12-month peak", zero="AUM at its 12-month peak",
                       negative="AUM drawdown of {value} over the last 12 months"), req),
        Feature("liabilities_month_end", "liabilities", "float64", "balances", "Amount owed on loans and cards at month end.",
                "Liabilities of {value} at month end", req),
    ]
    out += [Feature(f"balance_{p}", f"balance_{p}", "float64", "balances", f"Month-end balance of {p.replace('_', ' ')}.",
                    Phrase(f"{product_word(p).capitalize()} balance of {{value}}", zero=f"No {product_word(p)} balance"), req)
            for p in PRODUCTS]
    return out


def value_tier(ctx: Context) -> list[Feature]:
    req = ("balances",)
    cfg = ctx.config
    last_change = trailing("MAX(tier_change_code)", HISTORY_MONTHS)
    months_in = f"(month_idx - CAST(FLOOR({last_change} / 16.0) AS BIGINT) + 1)"
    previous_rank = f"(CAST({last_change} AS BIGINT) % 16 - 1)"
    return [
        Feature("value_tier", value_tier_name_sql("tier_rank", cfg), "str", "value_tier",
                "Value tier from month-end AUM (config.value_tiers).", "Value tier: {value:text}", req),
        Feature("value_tier_rank", "tier_rank", "int64", "value_tier", "Rank of the value tier (0 = lowest tier).",
                "Value tier rank: {value}", req),
        Feature("months_in_value_tier", f"CASE WHEN {last_change} IS NULL THEN {HISTORY_MONTHS} ELSE {months_in} END",
                "int64", "value_tier",
                f"Consecutive months in the current value tier, counting this one (capped at {HISTORY_MONTHS}).",
                "In current value tier for {value:months}", req),
        Feature("previous_value_tier", f"CASE WHEN {last_change} IS NOT NULL AND {previous_rank} >= 0 "
                f"THEN {value_tier_name_sql(previous_rank, cfg)} END", "str", "value_tier",
                f"Tier held before the current one, if it changed within {HISTORY_MONTHS} months (else null).",
                Phrase("Previous value tier: {value:text}", missing="No value-tier change on record"), req),
        Feature("value_tier_rank_max_12m", trailing("MAX(tier_rank)", 12), "int64", "value_tier",
                "Highest value-tier rank over the last 12 months.", "Highest value-tier rank of {value} over the last 12 months", req),
        # Tier bounds differ by tier, so trees cannot learn "almost there" from AUM alone in one split.
        Feature("next_tier_progress", next_tier_progress_sql("aum", "tier_rank", cfg), "float64", "value_tier",
                "Month-end AUM as a share of the next value tier's lower bound (null in the top tier).",
                "AUM at {value:%} of the next value tier's threshold", req),
    ]


def products(ctx: Context) -> list[Feature]:
    req = ("balances",)
    return [
        Feature("product_count", "product_count", "int64", "products", "Number of products held at month end.",
                Phrase("Holds {value} products", zero="Holds no products", one="Holds 1 product"), req),
        *(Feature(f"holds_{p}", f"held_{p}", "int64", "products", f"1 if the customer holds {p.replace('_', ' ')}.",
                  Phrase(f"Holds {_article(product_word(p))}", zero=f"Holds no {product_word(p)}",
                         negative=f"Holds no {product_word(p)}"), req)
          for p in PRODUCTS),
        Feature("products_opened_3m", trailing_sum("products_opened", 3), "int64", "products",
                "Products newly held in the last 3 months.", count_phrase("product opened", "products opened", 3), req),
        Feature("products_closed_3m", trailing_sum("products_closed", 3), "int64", "products",
                "Products no longer held, dropped in the last 3 months.", count_phrase("product closed", "products closed", 3), req),
    ]


def transactions(ctx: Context) -> list[Feature]:
    out = []
    for w in WINDOWS:
        out.append(Feature(f"txn_count_{w}m", trailing_sum("txn_count", w), "int64", "transactions",
                           f"Transactions in the last {w} month(s).", count_phrase("transaction", "transactions", w)))
        out += [Feature(f"txn_count_{c}_{w}m", trailing_sum(f"txn_count_{c}", w), "int64", "transactions",
                        f"Transactions through {c} in the last {w} month(s).",
                        count_phrase(f"{channel_word(c)} transaction", f"{channel_word(c)} transactions", w)) for c in CHANNELS]
        out += [Feature(f"txn_amount_{c}_{w}m", trailing_sum(f"txn_amount_{c}", w), "float64", "transactions",
                        f"Amount of {c.replace('_', ' ')} transactions in the last {w} month(s).",
                        Phrase(f"{category_words(c).capitalize()} of {{value}} {in_last(w)}", zero=f"No {category_words(c)} {in_last(w)}"))
                for c in TRANSACTION_CATEGORIES]
        out += [Feature(f"txn_amount_in_{w}m", trailing_sum("txn_amount_in", w), "float64", "transactions",
                        f"Amount credited (in) in the last {w} month(s).",
                        Phrase(f"Money in of {{value}} {in_last(w)}", zero=f"Nothing credited {in_last(w)}")),
                Feature(f"txn_amount_out_{w}m", trailing_sum("txn_amount_out", w), "float64", "transactions",
                        f"Amount debited (out) in the last {w} month(s).",
                        Phrase(f"Money out of {{value}} {in_last(w)}", zero=f"Nothing debited {in_last(w)}"))]
    digital = " + ".join(f"txn_count_{c}" for c in DIGITAL_CHANNELS)
    for w in (3, 12):
        out.append(Feature(f"digital_share_{w}m", ratio(trailing(f"SUM({digital})", w), trailing("SUM(txn_count)", w)),
                           "float64", "transactions",
                           f"Share of the last {w} months' transactions made on mobile or online (null without transactions).",
                           f"{{value:%}} of transactions digital ({w} months)"))
    out += [
        Feature("txn_net_flow_3m", f"{trailing_sum('txn_amount_in', 3)} - {trailing_sum('txn_amount_out', 3)}", "float64",
                "transactions", "Money in minus money out over the last 3 months.",
                Phrase("Net inflow of {value} over the last 3 months", zero="No net flow over the last 3 months",
                       negative="Net outflow of {value:abs} over the last 3 months")),
        Feature("salary_months_6m", trailing("SUM(CASE WHEN salary_count > 0 THEN 1 ELSE 0 END)", 6), "int64", "transactions",
                "Months with a salary credit among the last 6 (payroll regularity).", "Salary credited in {value} of the last 6 months"),
        Feature("months_since_last_salary",
                f"month_idx - {trailing('MAX(CASE WHEN salary_count > 0 THEN month_idx END)', HISTORY_MONTHS)}",
                "float64", "transactions",
                f"Months since the last month with a salary credit (0 = this month; null if none in {HISTORY_MONTHS} months).",
                since_phrase("salary credit")),
    ]
    return out


def engagement(ctx: Context) -> list[Feature]:
    out = [
        Feature("months_since_last_activity",
                f"month_idx - {trailing('MAX(CASE WHEN active = 1 THEN month_idx END)', HISTORY_MONTHS)}", "float64", "engagement",
                "Months since the last month with customer-initiated activity: own transactions, or logins, branch visits, "
                f"calls (0 = this month; null if none in {HISTORY_MONTHS} months).", since_phrase("activity")),
        Feature("active_months_12m", trailing("SUM(active)", 12), "int64", "engagement",
                "Months with customer-initiated activity among the last 12.", "Active in {value} of the last 12 months"),
        Feature("customer_txn_count_3m", trailing_sum("customer_txn_count", 3), "int64", "engagement",
                "Customer-initiated transactions (not salary, interest or fees) in the last 3 months.",
                count_phrase("customer-initiated transaction", "customer-initiated transactions", 3)),
    ]
    out += [Feature(f"logins_{w}m", trailing_sum("logins", w), "int64", "engagement",
                    f"App or web logins in the last {w} month(s).", count_phrase("login", "logins", w), ("interactions",))
            for w in (1, 3, 12)]
    return out


def service(ctx: Context) -> list[Feature]:
    req = ("interactions",)
    out = []
    for column, words, singular in (("complaints", "Complaints", "complaint"), ("branch_visits", "Branch visits", "branch visit"),
                                    ("call_center_calls", "Call-centre calls", "call-centre call")):
        out += [Feature(f"{column}_{w}m", trailing_sum(column, w), "int64", "service", f"{words} in the last {w} months.",
                        count_phrase(singular, words.lower(), w), req)
                for w in (3, 12)]
    return out


def campaigns(ctx: Context) -> list[Feature]:
    req = ("campaign_contacts",)

    def settled(column: str, months: int) -> str:
        # Responses are recorded on the contact row; a contact made this month may still be answered later,
        # so only contacts of the previous `months` months count.
        return f"COALESCE(SUM({column}) OVER ({_SPINE} ROWS BETWEEN {months} PRECEDING AND 1 PRECEDING), 0)"

    out = [Feature(f"campaign_contacts_{w}m", trailing_sum("campaign_contacts", w), "int64", "campaigns",
                   f"Campaign offers made to the customer (treated contacts) in the last {w} months.",
                   count_phrase("campaign contact", "campaign contacts", w), req) for w in (6, 12)]
    out += [Feature(f"campaign_responses_{w}m", settled("campaign_responses", w), "int64", "campaigns",
                    f"Offers taken up, among offers made in the {w} months before the as_of month.",
                    count_phrase("campaign response", "campaign responses", w), req) for w in (6, 12)]
    out += [Feature(f"campaign_contacts_{o}_12m", trailing_sum(f"campaign_contacts_{o}", 12), "int64", "campaigns",
                    f"{o.replace('_', '-').capitalize()} offers made in the last 12 months.",
                    count_phrase(f"{o.replace('_', '-')} offer", f"{o.replace('_', '-')} offers", 12), req) for o in OFFERS]
    return out


def revenue(ctx: Context) -> list[Feature]:
    return [Feature(f"net_revenue_{w}m", trailing_sum("net_revenue", w), "float64", "revenue",
                    f"Net revenue over the last {w} month(s) as config.revenue defines it (bank default: balance margins "
                    "+ fees - cost to serve).", f"Net revenue of {{value}} {in_last(w)}")
            for w in (1, 3, 12)]


def months_quiet_sql(ctx: Context) -> str:
    """Consecutive quiet months ending at the row's month m, counting m, capped at k.

    A month is quiet when the customer did nothing of their own doing in it (no customer-initiated
    transaction, login, branch visit or call) and, with a balances table, its month-end AUM is below
    ``labels.dormancy_aum_threshold``. k = ``labels.dormancy_inactive_months``. Reads months m-k+1..m only.
    """
    k = ctx.config.labels.dormancy_inactive_months
    last_busy = trailing("MAX(CASE WHEN quiet = 0 THEN month_idx END)", k)
    return f"COALESCE(month_idx - {last_busy}, {trailing('COUNT(*)', k)})"


def dormancy_sql(ctx: Context) -> str:
    """1 when the customer is dormant at the row's month m, else 0.

    Dormant(m): the k = ``labels.dormancy_inactive_months`` months ending at m are all quiet (see
    :func:`months_quiet_sql`); a customer with fewer than k months on the spine is not dormant.
    """
    return f"CASE WHEN {months_quiet_sql(ctx)} >= {ctx.config.labels.dormancy_inactive_months} THEN 1 ELSE 0 END"


def dormancy(ctx: Context) -> list[Feature]:
    k = ctx.config.labels.dormancy_inactive_months
    return [
        Feature("is_dormant", "dormant", "int64", "dormancy",
                "1 if dormant at as_of: AUM below the dormancy threshold and no customer-initiated activity "
                "in each of the last k months (config.labels).", Phrase("Dormant customer", zero="Not dormant", negative="Not dormant")),
        Feature(CHURN_POPULATION_COLUMN, months_quiet_sql(ctx), "int64", "dormancy",
                "Consecutive quiet months up to as_of (no customer-initiated activity and AUM below the dormancy "
                f"threshold), capped at k = {k}: 0 = still using the bank (the churn population), 1..k-1 = lapsing, "
                "k = dormant.",
                Phrase("Quiet for {value} months in a row (no own activity, AUM below the dormancy threshold)",
                       zero="Not quiet this month (own activity, or AUM above the dormancy threshold)",
                       one="Quiet this month (no own activity, AUM below the dormancy threshold)")),
    ]


#: Feature families in output order. Each is one function of the build context.
FAMILIES: dict[str, Callable[[Context], list[Feature]]] = {
    "profile": profile,
    "balances": balances,
    "value_tier": value_tier,
    "products": products,
    "transactions": transactions,
    "engagement": engagement,
    "service": service,
    "campaigns": campaigns,
    "revenue": revenue,
    "dormancy": dormancy,
}


def features_for(config: Config, tables: frozenset[str] | set[str]) -> list[Feature]:
    """The features computable from ``tables``, in output order."""
    ctx = Context(config, frozenset(tables))
    return [f for family in FAMILIES.values() for f in family(ctx) if set(f.requires) <= ctx.tables]


# ----------------------------------------------------------------------------------------------- labels

#: Label columns with the default horizons (``config.labels.names`` gives them for any configuration).
LABEL_COLUMNS: tuple[str, ...] = Labels().names.labels


def label_columns(tables: frozenset[str] | set[str], labels: Labels | None = None) -> tuple[str, ...]:
    """Labels computable from ``tables``, named for ``labels``' horizons: upgrade needs value tiers, so balances."""
    names = (labels or Labels()).names
    return tuple(c for c in names.labels if c != names.upgrade or "balances" in tables)


def churn_population_mask(columns, rows: int) -> "np.ndarray":
    """Boolean array of the rows in the churn population, from data at or before as_of only.

    The one rule training, evaluation, scoring and campaign lists share: the customer is open (every
    customer-month row is) and not quiet at as_of (``months_quiet == 0``): neither dormant nor lapsing. Tables
    without ``months_quiet`` (prepared elsewhere) fall back to ``is_dormant == 0``, and to every row without either.
    ``columns`` is a frame or a mapping of arrays with ``rows`` rows.
    """
    import numpy as np

    for name in (CHURN_POPULATION_COLUMN, "is_dormant"):
        if name in columns:
            values = columns[name]
            values = (values.to_numpy(dtype="float64", na_value=np.nan) if hasattr(values, "to_numpy")
                      else np.asarray(values, dtype="float64"))
            return np.nan_to_num(values, nan=0.0) == 0
    return np.ones(rows, dtype=bool)


def in_churn_population(frame) -> "pd.Series":
    """:func:`churn_population_mask` of a frame, as a boolean Series on its index."""
    import pandas as pd

    return pd.Series(churn_population_mask(frame, len(frame)), index=frame.index)


def label_sql(ctx: Context, r: MonthRange) -> dict[str, str]:
    """Label expressions over the feature step (one row per customer and open month), named by ``labels.names``.

    Churn (``churn_<H>m``, H = ``churn_horizon_months``): 1 if an exit is dated in (as_of, as_of + H]. An exit is
    dated when it starts: a closure at its month; a dormancy exit at the first month of a run of k =
    ``dormancy_inactive_months`` quiet months (see :func:`months_quiet_sql`). Seeing that run complete needs
    H + k - 1 months after as_of; the label is null without them. It is also null outside the churn population
    (``months_quiet > 0`` at as_of: lapsing or dormant customers, whose run began at or before as_of). Inside it
    as_of is not quiet, so a run whose k-th month falls in [as_of + k, as_of + H + k - 1] started in
    (as_of, as_of + H]. A run cut short by a closure counts as the closure.
    Upgrade (``upgrade_<H>m``): 1 if the value tier at as_of + H (``upgrade_horizon_months``) is above the tier at
    as_of; 0 if the customer closed by then; null for rows already in the top tier.
    CLV (``clv_<H>m``): max(0, sum over h = 1..H (``clv_horizon_months``) of net revenue in month as_of + h
    discounted by (1 + ``clv_annual_discount_rate``) ** (h / 12)); months from the closure month on contribute 0.
    Every label is null when the months it needs run past the data's last complete month, or (with a
    ``coverage`` table) past the customer's last covered month: the outcome is unobserved there, not "stayed".
    """
    labels = ctx.config.labels
    names = labels.names
    out = {}

    def beyond(h: int) -> str:
        past_end = f"month_idx + {h} > {r.last}"
        if "coverage" in ctx.tables:
            past_end += f" OR (cover_last_idx IS NOT NULL AND month_idx + {h} > cover_last_idx)"
        return past_end

    h, k = labels.churn_horizon_months, labels.dormancy_inactive_months
    closed_by = f"(closure_idx IS NOT NULL AND closure_idx <= month_idx + {h})"
    run_completes = f"COALESCE(MAX(dormant) OVER ({_SPINE} ROWS BETWEEN {k} FOLLOWING AND {h + k - 1} FOLLOWING), 0) = 1"
    out[names.churn] = (f"CASE WHEN {CHURN_POPULATION_COLUMN} > 0 OR {beyond(labels.churn_future_months)} "
                        f"THEN CAST(NULL AS DOUBLE) WHEN {closed_by} OR {run_completes} THEN 1.0 ELSE 0.0 END")
    if "balances" in ctx.tables:
        h = labels.upgrade_horizon_months
        top = len(ctx.config.value_tiers.names) - 1
        out[names.upgrade] = (
            f"CASE WHEN {beyond(h)} OR tier_rank >= {top} THEN CAST(NULL AS DOUBLE) "
            f"WHEN closure_idx IS NOT NULL AND closure_idx <= month_idx + {h} THEN 0.0 "
            f"WHEN {following('tier_rank', h)} > tier_rank THEN 1.0 ELSE 0.0 END"
        )
    h = labels.clv_horizon_months
    rate = labels.clv_annual_discount_rate
    # The spine stops before the closure month, so LEAD is null (revenue 0) from then on.
    terms = " + ".join(f"COALESCE({following('net_revenue', i)}, 0) * {(1 + rate) ** (-i / 12)!r}" for i in range(1, h + 1))
    out[names.clv] = f"CASE WHEN {beyond(h)} THEN CAST(NULL AS DOUBLE) ELSE GREATEST(0.0, {terms}) END"
    return out


# ----------------------------------------------------------------------------------------------- pipeline


def pipeline(config: Config, tables: frozenset[str] | set[str], r: MonthRange,
             bucket: tuple[int, int] = (0, 1)) -> tuple[list[Step], str]:
    """The SQL steps of one build and the final select (DuckDB dialect).

    ``bucket = (b, n)`` keeps the customers with ``customer_id % n == b``: every feature and label is a
    function of one customer's rows, so a large bank can be built in exact slices that fit in memory.

    The steps read views ``raw_<table>`` for each present table and ``months`` (``month_idx``, ``as_of``:
    the months ``r.read_start``..``r.read_end``); the final select returns ``customer_id``, ``as_of``, the
    features and the labels for as_of months ``r.start``..``r.end`` (unordered: a global sort would make
    Spark run the whole plan twice, once to sample the sort keys).
    """
    ctx = Context(config, frozenset(tables))
    b, n = bucket
    only = f" AND CAST(customer_id AS BIGINT) % {n} = {b}" if n > 1 else ""
    steps = [Step("span", _span(ctx.tables, only))]
    steps.append(Step("txn_monthly", _txn_monthly(r, only)))
    if "balances" in ctx.tables:
        steps.append(Step("balance_monthly", _balance_monthly(r, config, only)))
    if "interactions" in ctx.tables:
        steps.append(Step("interaction_monthly", _interaction_monthly(r, only)))
    if "campaign_contacts" in ctx.tables:
        steps.append(Step("campaign_monthly", _campaign_monthly(r, only)))
    steps.append(Step("monthly", _monthly(ctx.tables, config)))
    steps.append(Step("base", _base(ctx.tables)))
    feats = features_for(config, ctx.tables)
    selects = ["customer_id", *_label_inputs(ctx.tables), f"{dormancy_sql(ctx)} AS dormant"]
    selects += [f"CAST({f.sql} AS {_SQL_TYPE[f.dtype]}) AS {f.name}" for f in feats if f.name != "is_dormant"]
    steps.append(Step("customer_month_features", f"SELECT {', '.join(selects)} FROM base"))
    labels = label_sql(ctx, r)
    steps.append(Step("customer_month_labels",
                      "SELECT f.*, " + ", ".join(f"{sql} AS {name}" for name, sql in labels.items())
                      + " FROM customer_month_features AS f"))
    columns = ["customer_id", "as_of", *(("CAST(dormant AS BIGINT) AS is_dormant" if f.name == "is_dormant" else f.name) for f in feats),
               *labels]
    final = (f"SELECT {', '.join(columns)} FROM customer_month_labels "
             f"WHERE month_idx BETWEEN {r.start} AND {r.end}")
    return steps, final


def _label_inputs(tables: frozenset[str]) -> list[str]:
    """The spine columns the label step reads beside the features."""
    return ["month_idx", "as_of", "closure_idx", "net_revenue", *(["tier_rank"] if "balances" in tables else []),
            *(["cover_last_idx"] if "coverage" in tables else [])]


_SQL_TYPE = {"int64": "BIGINT", "float64": "DOUBLE", "str": "VARCHAR"}


# ----------------------------------------------------------------------------------------------- one month


def pipeline_at_months(config: Config, tables: frozenset[str] | set[str], r: MonthRange,
                       months: tuple[int, ...] | None = None) -> tuple[list[Step], str]:
    """The rows of :func:`pipeline` for a few as_of months (default the one month ``r.start == r.end``; all within
    ``r.start`` .. ``r.end``), without window functions over every month read.

    A window over the dense spine ``ROWS BETWEEN a PRECEDING AND b FOLLOWING`` at as_of month t is the same
    aggregate over the customer's rows with ``month_idx - t BETWEEN -a AND b`` (``LAG(c, k)``: the value at
    t - k; ``LEAD(c, k)``: at t + k). So every window of the features and labels becomes one conditional
    aggregate (``SUM(CASE WHEN <months> THEN x END)``) in a single ``GROUP BY customer_id, t`` over the rows
    within each t's look-back and horizon (step ``customer_month_windows``): same columns and values as
    :func:`pipeline`'s final select, which computes each window at every month read and keeps the ones asked
    for. DuckDB only (Spark runs :func:`pipeline`). Used for the latest month and for appends.
    """
    months = tuple(sorted(set(months or (r.start,))))
    if months == (r.start,) and r.start != r.end:
        raise ValueError(f"pipeline_at_months: name the months to build within {month_end(r.start)} .. {month_end(r.end)}")
    if not all(r.start <= m <= r.end for m in months):
        raise ValueError(f"months {[str(month_end(m)) for m in months]} are not all within {month_end(r.start)} .. {month_end(r.end)}")
    ctx = Context(config, frozenset(tables))
    steps, _ = pipeline(config, ctx.tables, r)
    steps = [s for s in steps if s.name not in ("customer_month_features", "customer_month_labels")]
    windows: dict[str, str] = {}
    settings = config.labels
    horizon = {settings.names.churn: settings.churn_future_months, settings.names.upgrade: settings.upgrade_horizon_months,
               settings.names.clv: settings.clv_horizon_months}
    # A label whose horizon runs past the data's last month at every month built is null (label_sql): the latest
    # month's case. Without such labels' windows no row needs its own dormancy flag, only month t does.
    unknown = {name for name, h in horizon.items() if all(t + h > r.last for t in months)}
    label_sqls = {name: ("CAST(NULL AS DOUBLE)" if name in unknown else sql) for name, sql in label_sql(ctx, r).items()}
    if all(sql == "CAST(NULL AS DOUBLE)" for sql in label_sqls.values()):
        steps.append(Step("customer_month_rows", "SELECT * FROM base"))
        dormant = f"{at_month(dormancy_sql(ctx), windows, row_columns=True)} AS dormant"
    else:
        steps.append(Step("customer_month_rows", f"SELECT *, {dormancy_sql(ctx)} AS dormant FROM base"))
        dormant = f"{at_month('dormant', windows, row_columns=True)} AS dormant"
    feats = features_for(config, ctx.tables)
    # Every column the features read at t (not in a window) is also an aggregate: the one GROUP BY is the only
    # reader of the rows, so the spine and its joins run once.
    selects = ["w.customer_id", *(f"{at_month(c, windows, row_columns=True)} AS {c}" for c in _label_inputs(ctx.tables)), dormant]
    selects += [f"{at_month(f'CAST({f.sql} AS {_SQL_TYPE[f.dtype]})', windows, row_columns=True)} AS {f.name}" for f in feats
                if f.name != "is_dormant"]
    open_at_t = at_month("COUNT(*)", windows, frame=(0, 0))
    labels = {name: at_month(sql, windows) for name, sql in label_sqls.items()}
    aggregates = ", ".join(f"{sql} AS {name}" for sql, name in windows.items())
    before, after = _reach(config)
    targets = ", ".join(str(m) for m in months)
    steps.append(Step("customer_month_windows",
                      f"SELECT rows.customer_id, t.t_idx, {aggregates} FROM customer_month_rows AS rows "
                      f"JOIN (SELECT UNNEST([{targets}]) AS t_idx) AS t "
                      f"ON rows.month_idx BETWEEN t.t_idx - {before} AND t.t_idx + {after} GROUP BY rows.customer_id, t.t_idx",
                      materialize=True))
    steps.append(Step("customer_month_features",
                      f"SELECT {', '.join(selects)} FROM customer_month_windows AS w WHERE {open_at_t} > 0"))
    steps.append(Step("customer_month_labels",
                      "SELECT f.*, " + ", ".join(f"{sql} AS {name}" for name, sql in labels.items())
                      + " FROM customer_month_features AS f JOIN customer_month_windows AS w"
                      " ON w.customer_id = f.customer_id AND w.t_idx = f.month_idx"))
    columns = ["customer_id", "as_of", *(("CAST(dormant AS BIGINT) AS is_dormant" if f.name == "is_dormant" else f.name) for f in feats),
               *labels]
    return steps, f"SELECT {', '.join(columns)} FROM customer_month_labels"


def _reach(config: Config) -> tuple[int, int]:
    """Months before and after as_of that a feature or label reads (:func:`month_range` reads these)."""
    labels = config.labels
    return (max(HISTORY_MONTHS, labels.dormancy_inactive_months, max(WINDOWS)),
            max(labels.churn_future_months, labels.upgrade_horizon_months, labels.clv_horizon_months))


def at_month(sql: str, windows: dict[str, str], *, row_columns: bool = False, frame: tuple[int, int] | None = None) -> str:
    """``sql`` with each window over the customer's spine replaced by a column ``w._wN`` of step
    ``customer_month_windows`` (grouped by customer and as_of month ``t_idx``), whose aggregate (the window's,
    over the months its frame covers at ``t_idx``) is added to ``windows`` (aggregate SQL -> column name;
    equal windows share one column). With ``row_columns`` a column outside any window (the value at ``t_idx``)
    becomes one too (``MAX(CASE WHEN month_idx = t_idx THEN c END)``: the customer has one row per month).
    ``frame = (low, high)`` makes the whole of ``sql`` (an aggregate) one such column over months
    ``t_idx + low`` .. ``t_idx + high``.

    Raises ValueError for a window this rewrite does not know (another partition or order, a RANGE frame,
    LAG/LEAD with a default): the month build would differ from the all-months build, so it refuses instead.
    """
    text, aggregates = _rewrite_at_month(sql, row_columns, frame)
    for i, aggregate in enumerate(aggregates):
        text = text.replace(f"w.__a{i}__", f"w.{windows.setdefault(aggregate, f'_w{len(windows)}')}")
    return text


def _offset(months: int) -> str:
    return f"t_idx + {months}" if months > 0 else f"t_idx - {-months}" if months < 0 else "t_idx"


@functools.lru_cache(maxsize=4096)
def _rewrite_at_month(sql: str, row_columns: bool, frame: tuple[int, int] | None) -> tuple[str, tuple[str, ...]]:
    """:func:`at_month` of one expression: its SQL with placeholder columns ``w.__a<i>__`` and their aggregates
    (cached: parsing is the slow part, and a build asks for the same expressions again)."""
    import sqlglot
    from sqlglot import expressions as exp

    found: list[str] = []

    def bound(value, side: str | None) -> int | None:
        if isinstance(value, str) and value.upper() == "CURRENT ROW":
            return 0
        if isinstance(value, str) and value.upper() == "UNBOUNDED":
            return None
        offset = int(value.this if isinstance(value, exp.Literal) else value)
        return -offset if side == "PRECEDING" else offset

    def column(aggregate: str):
        if aggregate not in found:
            found.append(aggregate)
        return exp.column(f"__a{found.index(aggregate)}__", table="w")

    def only(func, where: str) -> str:
        # Each argument as CASE WHEN <months> THEN arg END (COUNT(*): THEN 1): aggregates skip nulls, so this is
        # the aggregate over those months. DuckDB runs it about 4x faster than FILTER (WHERE ...) here.
        func = func.copy()
        condition = sqlglot.parse_one(where, read="duckdb")
        for key, value in list(func.args.items()):
            if isinstance(value, exp.Star):
                func.set(key, exp.Case(ifs=[exp.If(this=condition.copy(), true=exp.Literal.number(1))]))
            elif isinstance(value, exp.Expression):
                func.set(key, exp.Case(ifs=[exp.If(this=condition.copy(), true=value.copy())]))
        return func.sql(dialect="duckdb")

    def between(low: int | None, high: int | None) -> str:
        return " AND ".join([*([f"month_idx >= {_offset(low)}"] if low is not None else []),
                             *([f"month_idx <= {_offset(high)}"] if high is not None else [])]) or "TRUE"

    if frame is not None:
        placeholder = column(only(sqlglot.parse_one(sql, read="duckdb"), between(*frame)))
        return placeholder.sql(dialect="duckdb"), tuple(found)

    def rewrite(node):
        if row_columns and isinstance(node, exp.Column):
            if node.name == "month_idx":
                return exp.column("t_idx", table="w")
            return column(f"MAX(CASE WHEN month_idx = t_idx THEN {node.sql(dialect='duckdb')} END)")
        if not isinstance(node, exp.Window):
            return node
        partition = [p.sql(dialect="duckdb") for p in node.args.get("partition_by") or []]
        order = node.args.get("order")
        order_keys = [o.this.sql(dialect="duckdb") for o in order.expressions] if order is not None else []
        if partition != ["customer_id"] or order_keys != ["month_idx"] or any(o.args.get("desc") for o in order.expressions):
            raise ValueError(f"window {node.sql(dialect='duckdb')} is not over a customer's months in order")
        func = node.this
        if isinstance(func, (exp.Lag, exp.Lead)):
            if func.args.get("default") is not None:
                raise ValueError(f"{func.sql(dialect='duckdb')}: LAG/LEAD with a default has no month rewrite")
            offset = int(func.args["offset"].this) if func.args.get("offset") is not None else 1
            at = _offset(-offset if isinstance(func, exp.Lag) else offset)
            aggregate = f"MAX(CASE WHEN month_idx = {at} THEN {func.this.sql(dialect='duckdb')} END)"
        else:
            spec = node.args.get("spec")
            if spec is None or str(spec.args.get("kind", "")).upper() != "ROWS":
                raise ValueError(f"window {node.sql(dialect='duckdb')} has no ROWS frame: no month rewrite")
            if not isinstance(func, exp.AggFunc):
                raise ValueError(f"window {node.sql(dialect='duckdb')}: {func.sql(dialect='duckdb')} is not an aggregate")
            aggregate = only(func, between(bound(spec.args.get("start"), spec.args.get("start_side")),
                                           bound(spec.args.get("end"), spec.args.get("end_side"))))
        return column(aggregate)

    return sqlglot.parse_one(sql, read="duckdb").transform(rewrite).sql(dialect="duckdb"), tuple(found)
