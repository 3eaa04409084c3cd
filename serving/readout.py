"""Campaign read-out: treated against the randomized holdout, by value tier, with confidence intervals.

Closes the loop design -> contact -> measure: a campaign list keeps a randomized holdout; the bank records every
contact and holdout row in ``campaign_contacts`` (``treated = False`` for the holdout) under the campaign's id;
once the label horizon has passed, this read-out compares the two groups on the offer's response, churn within
the churn horizon, and realized 12-month value (``clv_12m``), using the customer-month at the contact's as_of.
Differences carry normal-approximation 95 % confidence intervals (Welch standard errors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
#: Outcome -> column of the contact rows (``responded`` from the contacts, the rest from the customer-month labels).
OUTCOMES = {"response": "responded", "churn": "churn_3m", "value": "clv_12m"}


def difference(treated: np.ndarray, control: np.ndarray) -> tuple[float, float, float]:
    """Mean difference treated - control and its 95 % confidence interval (NaN when a group has < 2 rows)."""
    t = np.asarray(treated, dtype="float64")
    c = np.asarray(control, dtype="float64")
    t, c = t[~np.isnan(t)], c[~np.isnan(c)]
    if len(t) < 2 or len(c) < 2:
        return float("nan"), float("nan"), float("nan")
    diff = t.mean() - c.mean()
    se = np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))
    return float(diff), float(diff - Z95 * se), float(diff + Z95 * se)


def _mean(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return float(known.mean()) if len(known) else float("nan")


def readout_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per tier (and ``all``): group sizes, means of each outcome per group, difference and its 95 % CI.

    ``rows`` holds one row per contact with ``treated``, ``value_tier`` and the outcome columns of :data:`OUTCOMES`
    that exist (missing labels are left out of that outcome only).
    """
    records = []
    groups = [("all", rows)] + [(str(t), part) for t, part in rows.groupby(rows["value_tier"].astype("str"), sort=True)]
    for tier, part in groups:
        treated = part["treated"].astype(bool).to_numpy()
        record = {"tier": tier, "treated": int(treated.sum()), "holdout": int((~treated).sum())}
        for name, column in OUTCOMES.items():
            if column not in part.columns:
                continue
            values = pd.to_numeric(part[column], errors="coerce").to_numpy(dtype="float64")
            diff, low, high = difference(values[treated], values[~treated])
            record.update({
                f"{name}_treated": _mean(values[treated]), f"{name}_holdout": _mean(values[~treated]),
                f"{name}_difference": diff, f"{name}_ci_low": low, f"{name}_ci_high": high,
            })
        records.append(record)
    return pd.DataFrame.from_records(records)


@dataclass
class Readout:
    campaign_id: str
    offer: str
    as_of: str
    currency: str
    table: pd.DataFrame

    def render(self) -> str:
        lines = [f"campaign {self.campaign_id} ({self.offer}, features as of {self.as_of}): treated vs holdout, 95% CI"]
        for _, r in self.table.iterrows():
            lines.append(f"  {r['tier']:<16} treated {r['treated']:>6,}  holdout {r['holdout']:>6,}")
            for name, unit in (("response", "pts"), ("churn", "pts"), ("value", self.currency)):
                if f"{name}_difference" not in r or pd.isna(r[f"{name}_treated"]):
                    continue
                scale = 100 if unit == "pts" else 1
                fmt = (lambda v: f"{v * scale:+.2f}") if unit == "pts" else (lambda v: f"{v:+,.0f}")
                level = (lambda v: f"{v:.1%}") if unit == "pts" else (lambda v: f"{v:,.0f}")
                diff = r[f"{name}_difference"]
                ci = f"[{fmt(r[f'{name}_ci_low'])}, {fmt(r[f'{name}_ci_high'])}]" if np.isfinite(diff) else "(too few rows)"
                lines.append(f"    {name:<9} treated {level(r[f'{name}_treated']):>10}  holdout {level(r[f'{name}_holdout']):>10}  "
                             f"difference {fmt(diff) if np.isfinite(diff) else '-':>8} {unit} {ci}")
        return "\n".join(lines)


def campaign_readout(campaign_id: str, contacts: pd.DataFrame, frame: pd.DataFrame, *, currency: str = "CNY") -> Readout:
    """The read-out of ``campaign_id`` from the contacts table and the customer-month table (inputs not changed)."""
    from training.uplift import contact_as_of

    rows = contacts.loc[contacts["campaign_id"].astype("str") == campaign_id]
    if rows.empty:
        known = contacts["campaign_id"].astype("str").drop_duplicates().sort_values().tail(5).tolist()
        raise ValueError(f"table campaign_contacts has no campaign_id {campaign_id!r} (newest ids: {', '.join(known)})")
    if rows["treated"].astype(bool).all():
        raise ValueError(f"campaign {campaign_id} has no holdout rows (treated = false): it cannot be read out")
    rows = rows.assign(_month=contact_as_of(rows["timestamp"]))
    wanted = [c for c in ("customer_id", "as_of", "value_tier", "churn_3m", "clv_12m") if c in frame.columns]
    months = frame[wanted].assign(_month=pd.to_datetime(frame["as_of"]).dt.to_period("M"))
    joined = rows.merge(months, on=["customer_id", "_month"], how="left")
    joined["value_tier"] = joined["value_tier"].astype("object").fillna("unknown")
    return Readout(campaign_id, str(rows["offer"].iloc[0]), str(rows["_month"].iloc[0]), currency, readout_table(joined))


@dataclass(frozen=True)
class ValueReadout:
    """What a campaign earned, net of contact and offer costs: the doubly robust estimate of treated against holdout
    (:mod:`serving.policy_value`), with its interval, the holdout it would have needed, and the verdict in words."""

    campaign_id: str
    contacts: int
    holdout: int
    currency: str
    estimate: float
    standard_error: float
    ci_low: float
    ci_high: float
    expected: float  # what the outcome models expected the list to earn
    holdout_for_power: int | None
    conclusion: str
    value_note: str

    def render(self) -> str:
        c = self.currency
        n = max(self.contacts + self.holdout, 1)
        return (f"  value (doubly robust, {self.value_note}): {c} {self.estimate:,.0f} for the {n:,} customers of the list "
                f"({c} {self.estimate / n:,.2f} each), 95% interval [{c} {self.ci_low:,.0f}, {c} {self.ci_high:,.0f}]\n"
                f"  {self.conclusion}")


def value_readout(campaign_id: str, kind: str, contacts: pd.DataFrame, labeled: pd.DataFrame, config, *,
                  clv: np.ndarray | None, feature_columns: list[str]) -> ValueReadout:
    """The value a campaign earned, per list customer and in total, from its treated and holdout rows.

    ``labeled``: the eligible, labeled customer-months of the offer's model (with ``_month``). The outcome models
    learn from every randomized contact of the offer; the campaign's own rows are valued out of fold. ``clv``: the
    CLV a retention success is worth for each of the campaign's rows in :func:`campaign_rows` order (None for upgrade).
    """
    from serving.backtest import build_evidence, contact_value, offer_price
    from serving.policy_value import policy_value
    from serving.runtime.evidence import conclusion, gain_sd, holdout_for_power

    population = campaign_rows(campaign_id, contacts, labeled)
    if kind == "retention":
        if clv is None:
            raise ValueError("a retention read-out in currency needs the CLV of its customers (no clv champion model)")
        population = population.assign(clv_12m=np.asarray(clv, dtype="float64"))
    value, price = contact_value(population, kind, config), offer_price(population, kind, config)
    evidence = build_evidence(kind, population, value, price, labeled, contacts, config, feature_columns=feature_columns)
    result = policy_value(np.ones(len(population), bool), evidence)
    low, high = result.ci
    treated = population["treated"].astype(bool).to_numpy()
    expected = float(evidence.population["tau_model"].sum())
    success = 1 - population[_CHURN].to_numpy(dtype="float64") if kind == "retention" else population["upgrade_3m"].to_numpy(dtype="float64")
    take_up = float(population.loc[treated, "responded"].astype(bool).mean()) if treated.any() else 0.0
    sd = gain_sd(np.nanmean(success) * np.ones(len(population)), value, take_up, price)
    needed = holdout_for_power(expected / len(population), sd, int(treated.sum()))
    words = conclusion(result.estimate, low, high, config.value_tiers.currency, needed_holdout=needed, holdout=int((~treated).sum()))
    note = "a success priced at the CLV model's value" if kind == "retention" else "a success priced at the policy's tier-step value"
    return ValueReadout(campaign_id, int(treated.sum()), int((~treated).sum()), config.value_tiers.currency, result.estimate,
                        result.standard_error, low, high, expected, needed, words, note)


_CHURN = "churn_3m"


def campaign_rows(campaign_id: str, contacts: pd.DataFrame, labeled: pd.DataFrame) -> pd.DataFrame:
    """The customer-months of ``campaign_id``'s rows (features at the contact's as_of), with ``treated`` and
    ``responded``; rows whose outcome has not matured are left out."""
    from training.uplift import contact_as_of

    rows = contacts.loc[contacts["campaign_id"].astype("str") == campaign_id]
    if rows.empty:
        raise ValueError(f"table campaign_contacts has no campaign_id {campaign_id!r}")
    keys = rows[["customer_id", "treated", "responded"]].assign(_month=contact_as_of(rows["timestamp"]))
    joined = keys.merge(labeled, on=["customer_id", "_month"], how="inner")
    if joined.empty or joined["treated"].astype(bool).all() or not joined["treated"].astype(bool).any():
        raise ValueError(f"campaign {campaign_id}: no matured treated and holdout rows to value yet "
                         f"({len(rows):,} contact rows, {len(joined):,} with a known outcome)")
    return joined.reset_index(drop=True)


def campaign_value(campaign_id: str, offer: str, contacts: pd.DataFrame, frame: pd.DataFrame, config) -> ValueReadout:
    """:func:`value_readout` with the champions of the registry: the CLV model prices a retention success, and the
    offer's base model names the features the outcome models use (the pinned feature set without one)."""
    from features.feature_set import CUSTOMER_MONTH_V1
    from serving.runtime.bundle import load_bundle
    from training.registry import champion_uri
    from training.spec import get_spec
    from training.tracking import configure_tracking

    configure_tracking(config)
    if offer not in ("retention", "upgrade"):
        raise ValueError(f"campaign {campaign_id} is a {offer!r} campaign: only retention and upgrade campaigns are valued")
    spec = get_spec("churn" if offer == "retention" else "upgrade")
    labeled = frame.loc[spec.eligible(frame, config)].assign(_month=lambda f: pd.to_datetime(f["as_of"]).dt.to_period("M"))
    columns = [c for c in CUSTOMER_MONTH_V1.columns if c in labeled.columns]
    clv = None
    if offer == "retention":
        uri = champion_uri("clv")
        if uri is None:
            raise ValueError("no champion clv model to price a retention success (custbase train clv; custbase promote clv)")
        clv = load_bundle(uri).predict(campaign_rows(campaign_id, contacts, labeled))
    return value_readout(campaign_id, offer, contacts, labeled, config, clv=clv, feature_columns=columns)


def _matured_months(offer: str, contacts: pd.DataFrame, frame: pd.DataFrame) -> tuple[pd.Series, pd.Period | None]:
    """Per ``offer`` campaign with a holdout (exploration samples aside) whose outcomes are all known: its as_of
    month; and the newest labeled month of the offer's label (None: no labels yet)."""
    from training.uplift import contact_as_of

    label = "churn_3m" if offer == "retention" else "upgrade_3m"
    rows = contacts.loc[(contacts["offer"].astype("str") == offer)
                        & ~contacts["campaign_id"].astype("str").str.endswith("-exploration")]
    labeled = pd.to_datetime(frame.loc[frame[label].notna(), "as_of"]).dt.to_period("M")
    if rows.empty or labeled.empty:
        return pd.Series(dtype="object"), None
    newest = labeled.max()
    rows = rows.assign(_month=contact_as_of(rows["timestamp"]))
    matured = rows.loc[rows["_month"] <= newest].groupby("campaign_id")["treated"].agg(lambda t: 0 < t.astype(bool).mean() < 1)
    matured = matured[matured]
    months = rows.loc[rows["campaign_id"].isin(matured.index)].groupby("campaign_id")["_month"].max()
    return months.sort_values(kind="stable"), newest


def newest_matured_campaign(offer: str, contacts: pd.DataFrame, frame: pd.DataFrame) -> str | None:
    """The newest ``offer`` campaign (with a holdout, not an exploration sample) whose outcomes are all known."""
    months, _ = _matured_months(offer, contacts, frame)
    return None if months.empty else str(months.index[-1])


def matured_campaigns(offer: str, contacts: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """Every ``offer`` campaign (with a holdout, not an exploration sample) whose outcomes are all known, oldest first."""
    months, _ = _matured_months(offer, contacts, frame)
    return [str(c) for c in months.index]
