"""The raw-data contract: the tables a bank hands to custbase, declared once as data.

Validation (pandera schemas and relational checks), the simulated bank, the importers and the README
all read these declarations; nothing else restates a column name or a category list.

Tables live in one folder, each as ``NAME.parquet``, a folder ``NAME/`` of parquet files (optionally
hive-partitioned as ``period=YYYY-MM``), or ``NAME.csv``. ``customers`` and ``transactions`` are
required; the others are optional, and features that need a missing table are simply absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DType = Literal["int64", "float64", "str", "bool", "date", "timestamp"]

PRODUCTS: tuple[str, ...] = (
    "current_deposit",
    "time_deposit",
    "wealth_management",
    "fund",
    "insurance",
    "mortgage",
    "consumer_loan",
    "credit_card",
)
#: Products whose balance counts towards assets under management (AUM).
ASSET_PRODUCTS: tuple[str, ...] = ("current_deposit", "time_deposit", "wealth_management", "fund", "insurance")
#: Products whose balance is money the customer owes the bank.
LIABILITY_PRODUCTS: tuple[str, ...] = ("mortgage", "consumer_loan", "credit_card")
#: Asset products beyond plain deposits: adopting one is a step towards a higher tier.
WEALTH_PRODUCTS: tuple[str, ...] = ("wealth_management", "fund", "insurance")

CHANNELS: tuple[str, ...] = ("mobile", "online", "branch", "atm", "pos")
DIGITAL_CHANNELS: tuple[str, ...] = ("mobile", "online")
TRANSACTION_CATEGORIES: tuple[str, ...] = (
    "salary",
    "transfer",
    "card_spend",
    "bill_payment",
    "cash",
    "investment",
    "loan_repayment",
    "interest",
    "fee",
    "other",
)
#: Transaction categories the bank or an employer initiates; every other category is the customer's own doing.
NON_CUSTOMER_INITIATED_CATEGORIES: tuple[str, ...] = ("salary", "interest", "fee")
DIRECTIONS: tuple[str, ...] = ("in", "out")
INTERACTION_KINDS: tuple[str, ...] = ("login", "complaint", "branch_visit", "call_center")
OFFERS: tuple[str, ...] = ("retention", "upgrade", "cross_sell")
GENDERS: tuple[str, ...] = ("F", "M", "U")
CITY_TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3", "tier4")
INCOME_BANDS: tuple[str, ...] = ("low", "lower_middle", "middle", "upper_middle", "high")


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    ``required`` columns must be present; optional ones are checked when present.
    ``categories`` restricts a text column to known codes; ``min_value`` bounds numbers from below.
    ``not_after_data_end`` and ``not_before_onboarding`` mark event dates checked against the data's end
    and the customer's onboarding date.
    """

    name: str
    dtype: DType
    description: str
    required: bool = True
    nullable: bool = False
    categories: tuple[str, ...] | None = None
    min_value: float | None = None
    not_after_data_end: bool = False
    not_before_onboarding: bool = False
    #: The code that means "not known" for a customer attribute (an empty value when None and ``nullable``).
    unknown: str | None = None

    @property
    def can_be_unknown(self) -> bool:
        return self.nullable or self.unknown is not None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    required: bool = False
    #: Columns that identify a row; duplicates are a violation. Empty when rows have no natural key.
    key: tuple[str, ...] = ()
    #: The column holding the row's date (used for partitioning and the data's end).
    date_column: str | None = None
    example: tuple[dict, ...] = field(default=())

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


_CUSTOMER_ID = Column("customer_id", "int64", "The bank's customer identifier.")

CUSTOMERS = Table(
    name="customers",
    description="One row per personal customer.",
    required=True,
    key=("customer_id",),
    date_column="onboarding_date",
    columns=(
        _CUSTOMER_ID,
        Column("birth_date", "date", "Date of birth.", nullable=True),
        Column("gender", "str", "F, M or U (unknown).", categories=GENDERS, unknown="U"),
        Column("city_tier", "str", "Tier of the customer's home city (tier1 = largest).", categories=CITY_TIERS, nullable=True),
        Column("income_band", "str", "Declared or estimated income band.", categories=INCOME_BANDS, nullable=True),
        Column("onboarding_date", "date", "Date the customer relationship began.", not_after_data_end=True),
        Column("region", "str", "Free-text region or district.", required=False, nullable=True),
        Column("occupation", "str", "Free-text occupation.", required=False, nullable=True),
    ),
    example=(
        {"customer_id": 1001, "birth_date": "1984-03-02", "gender": "F", "city_tier": "tier1",
         "income_band": "upper_middle", "onboarding_date": "2019-06-14"},
    ),
)

BALANCES = Table(
    name="balances",
    description="Month-end and month-average balance of each product a customer holds, one row per month.",
    key=("customer_id", "month", "product"),
    date_column="month",
    columns=(
        _CUSTOMER_ID,
        Column("month", "date", "The month's last day.", not_after_data_end=True, not_before_onboarding=True),
        Column("product", "str", "Product held.", categories=PRODUCTS),
        Column("balance_month_end", "float64", "Balance on the month's last day (loans: amount owed).", min_value=0),
        Column("balance_month_avg", "float64", "Average daily balance over the month.", min_value=0),
    ),
    example=(
        {"customer_id": 1001, "month": "2025-10-31", "product": "time_deposit",
         "balance_month_end": 80000.0, "balance_month_avg": 80000.0},
    ),
)

TRANSACTIONS = Table(
    name="transactions",
    description="Every posted transaction of a customer's accounts.",
    required=True,
    key=("transaction_id",),
    date_column="timestamp",
    columns=(
        Column("transaction_id", "int64", "Unique transaction identifier (optional).", required=False),
        _CUSTOMER_ID,
        Column("timestamp", "timestamp", "When the transaction was posted.",
               not_after_data_end=True, not_before_onboarding=True),
        Column("amount", "float64", "Absolute amount; the direction gives the sign.", min_value=0),
        Column("direction", "str", "in (credit) or out (debit).", categories=DIRECTIONS),
        Column("channel", "str", "Where the transaction was made.", categories=CHANNELS),
        Column("category", "str", "What the transaction was for.", categories=TRANSACTION_CATEGORIES),
    ),
    example=(
        {"customer_id": 1001, "timestamp": "2025-10-25 09:00:00", "amount": 12500.0, "direction": "in",
         "channel": "online", "category": "salary"},
    ),
)

INTERACTIONS = Table(
    name="interactions",
    description="Contacts with the bank: app or web logins, complaints, branch visits, call-centre calls.",
    date_column="timestamp",
    columns=(
        _CUSTOMER_ID,
        Column("timestamp", "timestamp", "When it happened.", not_after_data_end=True, not_before_onboarding=True),
        Column("kind", "str", "What kind of contact.", categories=INTERACTION_KINDS),
    ),
    example=({"customer_id": 1001, "timestamp": "2025-10-03 20:14:00", "kind": "login"},),
)

CAMPAIGN_CONTACTS = Table(
    name="campaign_contacts",
    description="Campaign offers made (treated) or held back (randomized control group), and the response.",
    key=("customer_id", "campaign_id"),
    date_column="timestamp",
    columns=(
        _CUSTOMER_ID,
        Column("timestamp", "timestamp", "When the offer was made (or would have been, for controls).",
               not_after_data_end=True, not_before_onboarding=True),
        Column("campaign_id", "str", "Campaign identifier."),
        Column("offer", "str", "What was offered.", categories=OFFERS),
        Column("treated", "bool", "True if contacted; False for the randomized control group."),
        Column("responded", "bool", "True if the customer took up the offer (or, for controls, the product)."),
    ),
    example=(
        {"customer_id": 1001, "timestamp": "2025-09-10 10:00:00", "campaign_id": "2025-09-retention",
         "offer": "retention", "treated": True, "responded": False},
    ),
)

CLOSURES = Table(
    name="closures",
    description="Customers who closed their relationship with the bank, with the date.",
    key=("customer_id",),
    date_column="closed_date",
    columns=(
        _CUSTOMER_ID,
        Column("closed_date", "date", "Date the last account was closed.",
               not_after_data_end=True, not_before_onboarding=True),
    ),
    example=({"customer_id": 1002, "closed_date": "2025-08-19"},),
)

COVERAGE = Table(
    name="coverage",
    description=(
        "For partial extracts only: the period in which the extract holds a customer's complete data. "
        "Months outside it are unobserved, not inactive: no customer-month rows there, and labels whose "
        "horizon runs past coverage_end are null. Without this table every customer is covered up to the data's end."
    ),
    key=("customer_id",),
    date_column="coverage_end",
    columns=(
        _CUSTOMER_ID,
        Column("coverage_start", "date", "First day of complete data for the customer."),
        Column("coverage_end", "date", "Last day of complete data for the customer.", not_after_data_end=True),
        Column("slice", "str", "Which extract the customer comes from.", required=False, nullable=True),
    ),
    example=({"customer_id": 1001, "coverage_start": "1993-01-01", "coverage_end": "1994-03-31"},),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (CUSTOMERS, BALANCES, TRANSACTIONS, INTERACTIONS, CAMPAIGN_CONTACTS, CLOSURES, COVERAGE)
}
REQUIRED_TABLES: tuple[str, ...] = tuple(name for name, t in TABLES.items() if t.required)

#: Written by the simulated bank only; no feature builder reads it.
GROUND_TRUTH_TABLE = "ground_truth"
#: Optional file in the raw folder: ``{"data_end": "YYYY-MM-DD", "source": "..."}``.
MANIFEST_FILE = "manifest.json"
#: Folder-name prefix of hive partitions (``period=2025-10``); dropped on read.
PARTITION_KEY = "period"


def contract_markdown() -> str:
    """The contract as Markdown tables (the README's "Raw-data contract" section is this text)."""
    lines: list[str] = []
    for table in TABLES.values():
        need = "required" if table.required else "optional"
        key = f"; key: `{', '.join(table.key)}`" if table.key else ""
        lines += [f"#### `{table.name}` ({need}{key})", "", table.description, "",
                  "| column | type | required | rule | meaning |", "|---|---|---|---|---|"]
        for c in table.columns:
            rules = []
            if c.categories:
                rules.append("one of " + ", ".join(f"`{v}`" for v in c.categories))
            if c.min_value is not None:
                rules.append(f">= {c.min_value:g}")
            if c.unknown is not None:
                rules.append(f"`{c.unknown}` = unknown")
            if c.nullable:
                rules.append("may be empty")
            if c.not_after_data_end:
                rules.append("not after the data's end")
            if c.not_before_onboarding:
                rules.append("not before onboarding")
            lines.append(f"| `{c.name}` | {c.dtype} | {'yes' if c.required else 'no'} | {'; '.join(rules)} | {c.description} |")
        lines.append("")
    return "\n".join(lines)


def check_revenue_names(revenue) -> None:
    """Refuse a value definition (``config.revenue``) that names a product or category the contract does not know.

    Called where the configuration meets the data (the CLI's configuration loader, the feature builder, the
    simulator), so that a typo in ``revenue.annual_rate`` is one line before any work, not a silently zero margin.
    """
    for field_name, known in (("annual_rate", PRODUCTS), ("transaction_rate", TRANSACTION_CATEGORIES)):
        unknown = sorted(set(getattr(revenue, field_name)) - set(known))
        if unknown:
            raise ValueError(f"revenue.{field_name} names {', '.join(unknown)}, which the contract does not know; "
                             f"use {', '.join(known)}")
