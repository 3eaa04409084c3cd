"""Segmentation and action policy: from three scores to a segment and the one action worth taking.

Segment (value x risk matrix, first match wins):

==========================  ======================================================================
``dormant``                 ``is_dormant == 1`` (when the feature exists)
``lapsing``                 outside the churn population but not dormant: quiet (no activity of their own, AUM
                            below the dormancy threshold) for 1..k-1 months at as_of (``months_quiet``)
``key_customer_at_risk``    high value and ``churn_probability >= at_risk_churn_probability``
``low_value_at_risk``       not high value and at risk
``growth_potential``        not at risk, not in the top tier, ``upgrade_probability >= growth_upgrade_probability``
``stable_core``             high value, not at risk
``low_value_stable``        everyone else
==========================  ======================================================================

High value means ``clv_12m >= key_customer_clv`` or a value tier in ``key_customer_tiers``.

Action: the one with the highest expected value of contact (EV, currency over the CLV horizon), ``none`` when
no action's EV exceeds ``min_expected_value``:

- ``retain``:        churn_probability x clv_12m x retention_acceptance_rate - retention_contact_cost
- ``upgrade_offer``: upgrade_probability x upgrade_acceptance_rate x upgrade_value_gain[value_tier] - upgrade_contact_cost
  (not for the top tier)
- ``cross_sell``:    (1 - churn_probability) x cross_sell_acceptance_rate x cross_sell_clv_uplift x clv_12m
  - cross_sell_contact_cost (only below ``cross_sell_max_products`` products, never for dormant customers)
- ``nurture``:       churn_probability x clv_12m x nurture_acceptance_rate - nurture_contact_cost
  (a cheap digital touch: it wins for moderate value at risk, where an RM call costs more than it saves)

Customers outside the churn population (:func:`features.definitions.in_churn_population`: dormant or lapsing)
get no ``retain``, ``nurture`` or ``cross_sell``: the churn model was neither trained nor evaluated on them, and
their exit, if it comes, has already begun. They are their own segments, for a reactivation effort.

Acceptance rates are the share of the modelled outcome the contact changes (a retention call keeps 25% of the
customers who would have left). Defaults are in the bank's currency (CNY) and are starting points to be
replaced by measured campaign results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from custbase.config import Policy  # declared with the configuration; re-exported here

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# numpy and pandas are imported inside the functions: the CLI imports this module for its argument checks,
# which must stay light.

SEGMENTS: tuple[str, ...] = (
    "key_customer_at_risk",
    "low_value_at_risk",
    "growth_potential",
    "stable_core",
    "low_value_stable",
    "dormant",
    "lapsing",
)
#: Segments of customers outside the churn population: no retention contact, whatever their churn score.
OUTSIDE_CHURN_POPULATION: tuple[str, ...] = ("dormant", "lapsing")
ACTIONS: tuple[str, ...] = ("retain", "upgrade_offer", "cross_sell", "nurture", "none")
Action = Literal["retain", "upgrade_offer", "cross_sell", "nurture", "none"]


def _floats(scores, name: str) -> np.ndarray:
    """Column ``name`` of a frame or of a mapping of arrays as float64."""
    import numpy as np
    import pandas as pd

    values = scores[name]
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def _column(scores, name: str, default: float) -> np.ndarray:
    """Column ``name`` as float64, ``default`` when absent."""
    import numpy as np

    if name not in scores:
        return np.full(len(scores["churn_probability"]), default, dtype="float64")
    return _floats(scores, name)


def _tiers(scores) -> np.ndarray:
    import numpy as np
    import pandas as pd

    values = scores["value_tier"]
    return values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)


def _in_churn_population(scores) -> np.ndarray:
    # imported here: custbase.config imports this module, and features.definitions imports custbase.config
    from features.definitions import churn_population_mask

    return churn_population_mask(scores, len(scores["churn_probability"]))


#: The contacts the policy values, in the columns of :func:`contact_values` (``none`` is the absence of one).
CONTACTS: tuple[str, ...] = ACTIONS[:-1]


def _contact_matrix(scores, policy: Policy) -> np.ndarray:
    """Expected value of each contact of :data:`CONTACTS` (columns) for each row; NaN where it does not apply."""
    import numpy as np

    churn = _floats(scores, "churn_probability")
    upgrade = _floats(scores, "upgrade_probability")
    clv = _floats(scores, "clv_12m")
    outside = ~_in_churn_population(scores)
    products = _column(scores, "product_count", 0.0)

    gain = np.array([policy.upgrade_value_gain.get(t, np.nan) for t in _tiers(scores).tolist()], dtype="float64")
    retain = np.where(outside, np.nan, churn * clv * policy.retention_acceptance_rate - policy.retention_contact_cost)
    upgrade_offer = upgrade * policy.upgrade_acceptance_rate * gain - policy.upgrade_contact_cost
    cross_sell = (1 - churn) * policy.cross_sell_acceptance_rate * policy.cross_sell_clv_uplift * clv - policy.cross_sell_contact_cost
    cross_sell = np.where(outside | ~(products < policy.cross_sell_max_products), np.nan, cross_sell)
    nurture = np.where(outside, np.nan, churn * clv * policy.nurture_acceptance_rate - policy.nurture_contact_cost)
    return np.column_stack([retain, upgrade_offer, cross_sell, nurture]) if len(churn) else np.zeros((0, len(CONTACTS)))


def contact_values(scores: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Expected value of each contact for each row (NaN where the action does not apply).

    ``scores`` (a frame, or a mapping of arrays) needs ``churn_probability``, ``upgrade_probability``, ``clv_12m``,
    ``value_tier``, and uses ``product_count``, ``is_dormant`` and ``months_quiet`` when present.
    """
    import pandas as pd

    return pd.DataFrame(_contact_matrix(scores, policy), columns=list(CONTACTS), index=getattr(scores, "index", None))


def recommend_actions(scores: pd.DataFrame, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    """The recommended action of each row and its expected value of contact (0 for ``none``); ``scores`` a frame
    or a mapping of arrays."""
    import numpy as np

    matrix = _contact_matrix(scores, policy)
    filled = np.where(np.isnan(matrix), -np.inf, matrix)
    best = filled.argmax(axis=1) if len(filled) else np.zeros(0, dtype=int)
    best_value = filled[np.arange(len(filled)), best] if len(filled) else np.zeros(0)
    act = best_value > policy.min_expected_value
    names = np.asarray(CONTACTS, dtype=object)
    actions = np.where(act, names[best] if len(filled) else names[:0], "none").astype(object)
    return actions, np.where(act, best_value, 0.0)


def segment_customers(scores: pd.DataFrame, policy: Policy) -> np.ndarray:
    """The segment of each row from the value x risk matrix (see the module docstring); ``scores`` a frame or a
    mapping of arrays."""
    import numpy as np

    churn = _floats(scores, "churn_probability")
    upgrade = _floats(scores, "upgrade_probability")
    clv = _floats(scores, "clv_12m")
    tier = _tiers(scores)
    dormant = _column(scores, "is_dormant", 0.0) == 1
    lapsing = ~dormant & ~_in_churn_population(scores)
    at_risk = churn >= policy.at_risk_churn_probability
    high_value = (clv >= policy.key_customer_clv) | np.isin(tier, list(policy.key_customer_tiers))
    growth = (tier != policy.top_value_tier) & (np.nan_to_num(upgrade, nan=-1.0) >= policy.growth_upgrade_probability)
    return np.select(
        [dormant, lapsing, at_risk & high_value, at_risk, growth, high_value],
        ["dormant", "lapsing", "key_customer_at_risk", "low_value_at_risk", "growth_potential", "stable_core"],
        default="low_value_stable",
    ).astype(object)
