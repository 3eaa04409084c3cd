"""Campaign lists that pay: whom to contact, with which offer, within a budget, with a holdout to read it out.

For each customer and offer the **expected incremental value** of a contact (currency, over the label horizon):
the retention and upgrade values of the one contact ranking (:func:`serving.runtime.policy.contact_values`):

- retention: ``retention_uplift x clv_12m - retention_contact_cost - retention_offer_take_up x retention_offer_rate x aum``
- upgrade:   ``upgrade_uplift x upgrade_value_gain[value_tier] - upgrade_contact_cost - upgrade_offer_take_up x upgrade_offer_rate x aum``

``*_uplift`` is the uplift model's change in the offer's success probability (retention: not exiting). Without an
uplift model the rule of thumb of the policy stands in for it (churn probability x retention acceptance rate,
upgrade probability x upgrade acceptance rate), and the reasons say so. The offer cost is paid by every acceptor,
including those who would have stayed anyway, so it scales with balances. This module wraps those arrays in frames.

A customer gets at most one offer (the one with the higher value, scoring's ``recommended_offer``) and never one
whose value is not positive (nor at most the policy's ``min_expected_value``): "sleeping dogs", whom a contact pushes
out, are left alone. With ``budget`` (contacts) the best customers by value
are kept; with ``budget_amount`` (money: contact plus expected offer cost) the best value per unit cost, until the
money runs out. A randomized ``holdout_share`` of every list is flagged ``holdout = true`` and not contacted, so that
the campaign can be read out (``custbase campaign readout``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from serving.runtime.evidence import gain_sd, holdout_for_power
from serving.runtime.policy import OFFER_CONTACT, OFFERS, UPLIFT_COLUMNS, Policy, contact_values, offer_terms, recommend

CampaignKind = Literal["retention", "upgrade"]
KINDS: tuple[str, ...] = OFFERS

_REASONS = {"retention": "churn_reasons", "upgrade": "upgrade_reasons"}
_PROBABILITY = {"retention": "churn_probability", "upgrade": "upgrade_probability"}
#: Money columns of a campaign list, rounded to cents and labelled with the currency.
MONEY_COLUMNS = ("clv_12m", "value", "contact_cost", "offer_cost", "expected_incremental_value")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"campaign kind must be 'retention' or 'upgrade', got {kind!r}")


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"the campaign input ({len(frame)} rows) has no column {column}")
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def offer_values(frame: pd.DataFrame, kind: CampaignKind, policy: Policy) -> pd.DataFrame:
    """Uplift, value, costs and expected incremental value of a ``kind`` contact for each row (NaN: not eligible):
    :func:`serving.runtime.policy.offer_terms` as a frame.

    ``frame`` needs ``churn_probability`` / ``upgrade_probability``, ``clv_12m``, ``value_tier`` and ``aum_month_end``
    (the offer's cost base); ``retention_uplift`` / ``upgrade_uplift`` are used when present and not missing.
    Returns ``uplift``, ``uplift_source`` (``model`` or ``rule``), ``value``, ``contact_cost``, ``offer_cost`` and
    ``expected_incremental_value``, indexed like ``frame``.
    """
    _check_kind(kind)
    _numbers(frame, "aum_month_end")  # a campaign prices every offer: unknown balances are an error here
    terms = offer_terms(frame, kind, policy)
    return pd.DataFrame(
        {
            "uplift": terms.uplift,
            "uplift_source": np.where(terms.uplift_from_model, "model", "rule"),
            "value": terms.value,
            "contact_cost": terms.contact_cost,
            "offer_cost": terms.offer_cost,
            "expected_incremental_value": terms.expected_incremental_value,
        },
        index=frame.index,
    )


def best_offers(frame: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Each row's best offer (``retention``, ``upgrade`` or ``none``) and its expected incremental value: the
    ``recommended_offer`` of :func:`serving.runtime.policy.recommend`, as scoring gives it.

    ``none`` when neither offer's value exceeds ``min_expected_value``. Returns ``best_offer``, ``best_offer_value``
    (0 for none), and ``retention_value`` / ``upgrade_value`` (NaN where not eligible).
    """
    _numbers(frame, "aum_month_end")
    values = contact_values(frame, policy)
    chosen = recommend(frame, policy, values)
    return pd.DataFrame(
        {
            "best_offer": chosen["recommended_offer"],
            "best_offer_value": chosen["offer_incremental_value"],
            "retention_value": values.column(OFFER_CONTACT["retention"]),
            "upgrade_value": values.column(OFFER_CONTACT["upgrade"]),
        },
        index=frame.index,
    )


def select_within_budget(value: np.ndarray, cost: np.ndarray, *, budget: int | None = None, budget_amount: float | None = None,
                         holdout_share: float = 0.0) -> tuple[np.ndarray, str]:
    """Positions (best first) of the rows to put on the list, and why it is shorter than the budget ('' if not).

    Only rows with a positive ``value`` qualify. ``budget`` caps the contacts (holdout rows are not contacted, so
    the list holds ``budget / (1 - holdout_share)`` rows); ``budget_amount`` caps the expected cost of the
    contacted rows, filled by value per unit cost (the greedy knapsack solution, optimal up to the last row).
    """
    if (budget is None) == (budget_amount is None):
        raise ValueError("give exactly one of budget (contacts) or budget_amount (money)")
    value = np.asarray(value, dtype="float64")
    cost = np.asarray(cost, dtype="float64")
    positive = np.flatnonzero(np.nan_to_num(value, nan=-np.inf) > 0)
    if budget is not None:
        if budget < 0:
            raise ValueError(f"budget must be a non-negative number of contacts, got {budget}")
        order = positive[np.argsort(-value[positive], kind="stable")]
        size = int(round(budget / (1 - holdout_share)))
        chosen = order[:size]
        short = "" if len(chosen) >= size else (
            f"only {len(positive):,} customers have a positive expected incremental value for this offer")
        return chosen, short
    if budget_amount < 0:
        raise ValueError(f"budget_amount must be non-negative, got {budget_amount}")
    ratio = value[positive] / np.maximum(cost[positive], 1e-9)
    order = positive[np.argsort(-ratio, kind="stable")]
    spent = np.cumsum(cost[order]) * (1 - holdout_share)  # the holdout share of the list costs nothing
    chosen = order[spent <= budget_amount]
    short = ""
    if len(chosen) == len(order):
        short = (f"only {len(positive):,} customers have a positive expected incremental value; their expected cost "
                 f"is below the budget amount")
    return chosen, short


@dataclass(frozen=True)
class CampaignSummary:
    """What a campaign list holds and what it is expected to earn."""

    kind: str
    as_of: str
    currency: str
    budget: int | None
    budget_amount: float | None
    rows: int
    contacts: int
    holdout: int
    holdout_share: float
    expected_cost: float
    expected_incremental_value: float
    roi: float | None
    uplift_source: str
    why_shorter: str
    #: Holdout that would detect the expected incremental value at 80 % power (None: no holdout can at this size).
    holdout_for_power: int | None = None

    def power_text(self) -> str:
        if self.contacts == 0:
            return ""
        if self.holdout_for_power is None:
            return (f"power: no holdout detects the expected value at 80% power beside {self.contacts:,} contacts "
                    f"(the value is small against the noise of single outcomes): read several months' campaigns together")
        enough = "enough" if self.holdout >= self.holdout_for_power else "too small: the read-out will likely be inconclusive"
        return (f"power: a holdout of {self.holdout_for_power:,} detects the expected value at 80% power; this list's "
                f"{self.holdout:,} is {enough}")

    def render(self) -> str:
        c = self.currency
        roi = f"{self.roi:.2f}" if self.roi is not None else "n/a"
        budget = f"{self.budget:,} contacts" if self.budget is not None else f"{c} {self.budget_amount:,.2f}"
        line = (f"{self.kind} campaign {self.as_of}: {self.contacts:,} contacts + {self.holdout:,} holdout "
                f"({self.holdout / max(self.rows, 1):.1%}) of budget {budget}; expected cost {c} {self.expected_cost:,.2f}, "
                f"expected incremental value {c} {self.expected_incremental_value:,.2f} (net of costs), ROI {roi}; "
                f"uplift from {self.uplift_source}")
        line += f"; shorter than the budget: {self.why_shorter}" if self.why_shorter else ""
        return line + (f"\n  {self.power_text()}" if self.power_text() else "")


def _reason_text(row_values: pd.Series, kind: str, other_value: float, currency: str, model_reasons) -> str:
    uplift = row_values["uplift"]
    source = "uplift model" if row_values["uplift_source"] == "model" else "rule of thumb (no uplift model)"
    value_name = "CLV" if kind == "retention" else "tier-step value"
    other = "upgrade" if kind == "retention" else "retention"
    why_offer = (f"{kind} beats {other} ({currency} {other_value:,.2f})" if np.isfinite(other_value)
                 else f"no {other} offer applies")
    parts = [
        f"expected incremental value {currency} {row_values['expected_incremental_value']:,.2f} = "
        f"uplift {uplift * 100:+.2f} pts ({source}) x {value_name} {currency} {row_values['value']:,.2f} - contact "
        f"{currency} {row_values['contact_cost']:,.2f} - offer {currency} {row_values['offer_cost']:,.2f}",
        why_offer,
    ]
    if isinstance(model_reasons, (list, tuple, np.ndarray)) and len(model_reasons):
        parts.append("risk drivers: " + ", ".join(map(str, model_reasons)) if kind == "retention"
                     else "propensity drivers: " + ", ".join(map(str, model_reasons)))
    return "; ".join(parts)


def campaign_list(
    frame: pd.DataFrame,
    kind: CampaignKind,
    policy: Policy,
    *,
    budget: int | None = None,
    budget_amount: float | None = None,
    currency: str = "CNY",
    seed: int = 0,
) -> tuple[pd.DataFrame, CampaignSummary]:
    """The ``kind`` campaign list of one month and its summary.

    Parameters
    ----------
    frame
        One row per customer: scores (``customer_id``, ``as_of``, ``value_tier``, ``churn_probability``,
        ``upgrade_probability``, ``clv_12m``, optional ``segment`` and reasons) with ``aum_month_end`` and, when
        the uplift models exist, ``retention_uplift`` / ``upgrade_uplift``. Not modified.
    kind
        ``retention`` or ``upgrade``. Only customers whose best offer is ``kind`` are candidates, so a customer
        is never on both lists.
    budget, budget_amount
        Exactly one: contacts, or money (contact plus expected offer cost of the contacted rows).
    seed
        Seed of the holdout draw (the same inputs and seed give the same list).

    Returns
    -------
    (list, summary)
        The list, best first: ``rank``, ``customer_id``, ``as_of``, ``offer``, ``holdout``, ``value_tier``,
        ``segment``, the campaign's probability, ``uplift``, the money columns (rounded to cents) and
        ``currency``, and ``reasons`` (never empty).
    """
    _check_kind(kind)
    values = offer_values(frame, kind, policy)
    best = best_offers(frame, policy)
    candidate = (best["best_offer"] == kind).to_numpy()
    value = np.where(candidate, values["expected_incremental_value"].to_numpy(), -np.inf)
    cost = (values["contact_cost"] + values["offer_cost"]).to_numpy()
    chosen, short = select_within_budget(value, cost, budget=budget, budget_amount=budget_amount, holdout_share=policy.holdout_share)
    rng = np.random.default_rng(seed)
    n_holdout = int(round(policy.holdout_share * len(chosen)))
    holdout = np.zeros(len(chosen), bool)
    holdout[rng.choice(len(chosen), size=n_holdout, replace=False)] = True
    picked = frame.iloc[chosen]
    picked_values = values.iloc[chosen]
    other = best["upgrade_value" if kind == "retention" else "retention_value"].to_numpy()[chosen]
    reasons_column = picked[_REASONS[kind]] if _REASONS[kind] in picked.columns else pd.Series([None] * len(picked), index=picked.index)
    reasons = [
        _reason_text(picked_values.iloc[i], kind, other[i], currency, reasons_column.iloc[i]) for i in range(len(chosen))
    ]
    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(chosen) + 1),
            "customer_id": picked["customer_id"].to_numpy(),
            "as_of": picked["as_of"].to_numpy(),
            "offer": kind,
            "holdout": holdout,
            "value_tier": picked["value_tier"].to_numpy(),
            "segment": picked["segment"].to_numpy() if "segment" in picked.columns else None,
            _PROBABILITY[kind]: picked[_PROBABILITY[kind]].to_numpy(),
            "uplift": picked_values["uplift"].round(6).to_numpy(),
            "clv_12m": picked["clv_12m"].to_numpy(dtype="float64"),
            "value": picked_values["value"].to_numpy(),
            "contact_cost": picked_values["contact_cost"].to_numpy(),
            "offer_cost": picked_values["offer_cost"].to_numpy(),
            "expected_incremental_value": picked_values["expected_incremental_value"].to_numpy(),
            "currency": currency,
            "reasons": reasons,
        }
    )
    for column in MONEY_COLUMNS:
        out[column] = out[column].round(2)
    contacted = ~holdout
    expected_cost = float((picked_values["contact_cost"] + picked_values["offer_cost"]).to_numpy()[contacted].sum())
    expected_value = float(picked_values["expected_incremental_value"].to_numpy()[contacted].sum())
    as_of = pd.to_datetime(frame["as_of"]).max() if len(frame) else None
    success = _numbers(picked, _PROBABILITY[kind])[contacted]
    success = 1 - success if kind == "retention" else success  # the outcome: staying, or stepping up a tier
    take_up = policy.retention_offer_take_up if kind == "retention" else policy.upgrade_offer_take_up
    price = picked_values["offer_cost"].to_numpy()[contacted] / take_up if take_up > 0 else np.zeros(int(contacted.sum()))
    sd = gain_sd(success, picked_values["value"].to_numpy()[contacted], take_up, price) if contacted.any() else 0.0
    needed = holdout_for_power(expected_value / max(int(contacted.sum()), 1), sd, int(contacted.sum()))
    summary = CampaignSummary(
        kind=kind,
        as_of=as_of.strftime("%Y-%m") if as_of is not None and not pd.isna(as_of) else "",
        currency=currency,
        budget=budget,
        budget_amount=budget_amount,
        rows=len(out),
        contacts=int(contacted.sum()),
        holdout=int(holdout.sum()),
        holdout_share=policy.holdout_share,
        expected_cost=round(expected_cost, 2),
        expected_incremental_value=round(expected_value, 2),
        roi=round(expected_value / expected_cost, 3) if expected_cost > 0 else None,
        uplift_source="uplift model" if (picked_values["uplift_source"] == "model").all() and len(out) else (
            "rule of thumb (no uplift model)" if len(out) else "-"),
        why_shorter=short,
        holdout_for_power=needed,
    )
    return out, summary


def write_campaign(campaign: pd.DataFrame, summary: CampaignSummary, path: Path) -> tuple[Path, Path]:
    """Write a campaign list as CSV and its summary as JSON beside it (``<name>.summary.json``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame = campaign.assign(as_of=pd.to_datetime(campaign["as_of"]).dt.strftime("%Y-%m-%d"))
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    summary_path = path.with_suffix(".summary.json")
    tmp = summary_path.with_name(f".{summary_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(summary), indent=2))
    os.replace(tmp, summary_path)
    return path, summary_path
