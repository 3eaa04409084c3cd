"""Campaign lists: the customers most worth contacting for one campaign, within a budget of contacts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from serving.policy import OUTSIDE_CHURN_POPULATION, Policy

CampaignKind = Literal["retention", "upgrade"]

_REASONS = {"retention": "churn_reasons", "upgrade": "upgrade_reasons"}
_PROBABILITY = {"retention": "churn_probability", "upgrade": "upgrade_probability"}


def contact_value(scores: pd.DataFrame, kind: CampaignKind, policy: Policy) -> pd.Series:
    """Expected value of contacting each customer in a ``kind`` campaign (NaN where the campaign does not apply).

    retention: churn_probability x clv_12m x retention_acceptance_rate - retention_contact_cost, only for customers in
    the churn population (NaN for the ``dormant`` and ``lapsing`` segments, as in the policy);
    upgrade: upgrade_probability x upgrade_acceptance_rate x upgrade_value_gain[value_tier] - upgrade_contact_cost.
    """
    if kind == "retention":
        value = scores["churn_probability"] * scores["clv_12m"] * policy.retention_acceptance_rate - policy.retention_contact_cost
        if "segment" in scores.columns:
            value = value.where(~scores["segment"].isin(OUTSIDE_CHURN_POPULATION))
    elif kind == "upgrade":
        gain = scores["value_tier"].astype("object").map(policy.upgrade_value_gain).astype("float64")
        value = scores["upgrade_probability"].astype("float64") * policy.upgrade_acceptance_rate * gain - policy.upgrade_contact_cost
    else:
        raise ValueError(f"campaign kind must be 'retention' or 'upgrade', got {kind!r}")
    return value.astype("float64").rename("campaign_expected_value")


def campaign_list(scores: pd.DataFrame, kind: CampaignKind, budget: int, policy: Policy) -> pd.DataFrame:
    """The ``budget`` customers with the highest positive expected value of contact, best first.

    Parameters
    ----------
    scores
        Output of :func:`serving.scoring.score_customers` (one month). Not modified.
    kind
        ``retention`` or ``upgrade``.
    budget
        Contacts the campaign can afford; fewer rows come back when fewer customers are worth a contact.
    policy
        Contact costs, acceptance rates and value gains.

    Returns
    -------
    pandas.DataFrame
        ``rank``, ``customer_id``, ``as_of``, ``value_tier``, ``segment``, ``recommended_action``, the campaign's
        probability, ``clv_12m``, ``value_at_risk``, ``campaign_expected_value`` and ``reasons`` (the campaign's
        model reasons joined with "; "). Ties are broken by customer_id so the list is reproducible.
    """
    if budget < 0:
        raise ValueError(f"budget must be a non-negative number of contacts, got {budget}")
    value = contact_value(scores, kind, policy)
    keep = value.notna() & (value > 0)
    chosen = scores.loc[keep].assign(campaign_expected_value=value[keep])
    chosen = chosen.sort_values(["campaign_expected_value", "customer_id"], ascending=[False, True], kind="stable").head(budget)
    reasons = chosen[_REASONS[kind]].map(lambda r: "; ".join(r) if isinstance(r, (list, tuple, np.ndarray)) else "")
    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(chosen) + 1),
            "customer_id": chosen["customer_id"].to_numpy(),
            "as_of": chosen["as_of"].to_numpy(),
            "value_tier": chosen["value_tier"].to_numpy(),
            "segment": chosen["segment"].to_numpy(),
            "recommended_action": chosen["recommended_action"].to_numpy(),
            _PROBABILITY[kind]: chosen[_PROBABILITY[kind]].to_numpy(),
            "clv_12m": chosen["clv_12m"].to_numpy(),
            "value_at_risk": chosen["value_at_risk"].to_numpy(),
            "campaign_expected_value": chosen["campaign_expected_value"].to_numpy(),
            "reasons": reasons.to_numpy(dtype=object),
        }
    )
    return out


def write_campaign_csv(campaign: pd.DataFrame, path: Path) -> Path:
    """Write a campaign list as CSV atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame = campaign.assign(as_of=pd.to_datetime(campaign["as_of"]).dt.strftime("%Y-%m-%d"))
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
