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
                f"{name}_treated": float(np.nanmean(values[treated])) if treated.any() else float("nan"),
                f"{name}_holdout": float(np.nanmean(values[~treated])) if (~treated).any() else float("nan"),
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
