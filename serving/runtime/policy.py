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
no action's EV exceeds ``min_expected_value``. One function, :func:`contact_values`, computes every EV on arrays;
the action choice, scoring (batch and online) and campaign lists all read it:

- ``retain``:        retention_uplift x clv_12m - retention_contact_cost - retention_offer_take_up x retention_offer_rate x aum
- ``upgrade_offer``: upgrade_uplift x upgrade_value_gain[value_tier] - upgrade_contact_cost
  - upgrade_offer_take_up x upgrade_offer_rate x aum (not for the top tier)
- ``cross_sell``:    (1 - churn_probability) x cross_sell_acceptance_rate x cross_sell_clv_uplift x clv_12m
  - cross_sell_contact_cost (only below ``cross_sell_max_products`` products, never for dormant customers)
- ``nurture``:       churn_probability x clv_12m x nurture_acceptance_rate - nurture_contact_cost
  (a cheap digital touch: it wins for moderate value at risk, where an RM call costs more than it saves)

``*_uplift`` is the uplift model's change in the offer's success probability (retention: not exiting) when the
scores carry it; without an uplift model the rule of thumb stands in: churn_probability x retention_acceptance_rate,
upgrade_probability x upgrade_acceptance_rate. ``aum`` is ``aum_month_end`` (0 when unknown): the offer cost is
paid by every acceptor, so it scales with balances.

Offer (``recommended_offer``, what a retention or upgrade campaign offers): the retention / upgrade part of the same
ranking, i.e. the better of the ``retain`` and ``upgrade_offer`` EVs when it exceeds ``min_expected_value``, else
``none``. Action and offer therefore never contradict: ``retain`` comes with ``retention`` and ``upgrade_offer`` with
``upgrade`` (same value), ``none`` with ``none``; beside ``cross_sell`` or ``nurture`` the offer is the one a retention
or upgrade campaign would make (often ``none``).

Customers outside the churn population (:func:`features.definitions.in_churn_population`: dormant or lapsing)
get no ``retain``, ``nurture`` or ``cross_sell``: the churn model was neither trained nor evaluated on them, and
their exit, if it comes, has already begun. They are their own segments, for a reactivation effort.

Acceptance rates are the share of the modelled outcome the contact changes (a retention call keeps 25% of the
customers who would have left). Defaults are in the bank's currency (CNY) and are starting points to be
replaced by measured campaign results.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _rows(scores) -> int:
    """Rows of a frame or of a mapping of equally long arrays."""
    if hasattr(scores, "index") and hasattr(scores, "columns"):
        return len(scores.index)
    return len(next(iter(scores.values()))) if len(scores) else 0


def _column(scores, name: str, default: float) -> np.ndarray:
    """Column ``name`` as float64, ``default`` when absent."""
    import numpy as np

    if name not in scores:
        return np.full(_rows(scores), default, dtype="float64")
    return _floats(scores, name)


def _tiers(scores) -> np.ndarray:
    import numpy as np
    import pandas as pd

    values = scores["value_tier"]
    return values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)


def _in_churn_population(scores) -> np.ndarray:
    # imported here: custbase.config imports this module, and features.definitions imports custbase.config
    from features.definitions import churn_population_mask

    return churn_population_mask(scores, _rows(scores))


def _outside_churn_population(scores) -> np.ndarray:
    """Rows outside the churn population, by its mask and, when the scores carry one, by their segment."""
    import numpy as np

    outside = ~_in_churn_population(scores)
    if "segment" in scores:
        outside = outside | _isin(scores["segment"], OUTSIDE_CHURN_POPULATION)
    return outside


def _isin(values, names) -> np.ndarray:
    """``values`` (text) in ``names``, as a boolean array; a set lookup per row beats ``np.isin`` on object arrays."""
    import numpy as np

    names = frozenset(names)
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return np.fromiter((v in names for v in values), dtype=bool, count=len(values))


#: The contacts the policy values, in the columns of :attr:`ContactValues.matrix` (``none`` is the absence of one).
CONTACTS: tuple[str, ...] = ACTIONS[:-1]
#: Campaign offers (:mod:`serving.runtime.campaign`) and the contact each one is: the offers are the retention /
#: upgrade part of the one contact ranking.
OFFERS: tuple[str, ...] = ("retention", "upgrade")
OFFER_CONTACT: dict[str, str] = {"retention": "retain", "upgrade": "upgrade_offer"}
#: Column (or mapping key) of each offer's modelled uplift in the scores.
UPLIFT_COLUMNS: dict[str, str] = {"retention": "retention_uplift", "upgrade": "upgrade_uplift"}


@dataclass(frozen=True)
class OfferTerms:
    """The terms of one offer's expected incremental value, one value per row (NaN value: not eligible)."""

    uplift: np.ndarray  #: change in the offer's success probability (modelled, else the rule of thumb)
    uplift_from_model: np.ndarray  #: bool: ``uplift`` comes from the uplift model
    value: np.ndarray  #: value of one success: clv_12m (retention) or upgrade_value_gain[value_tier] (upgrade)
    contact_cost: np.ndarray
    offer_cost: np.ndarray  #: take-up x offer rate x aum_month_end (0 when balances are unknown)

    @property
    def expected_incremental_value(self) -> np.ndarray:
        return self.uplift * self.value - self.contact_cost - self.offer_cost


@dataclass(frozen=True)
class ContactValues:
    """Expected value of each contact for each row: :func:`contact_values`."""

    matrix: np.ndarray  #: rows x :data:`CONTACTS`, NaN where the contact does not apply
    offers: dict[str, OfferTerms]  #: the terms of the retention and upgrade columns, keyed by :data:`OFFERS`

    def column(self, contact: str) -> np.ndarray:
        return self.matrix[:, CONTACTS.index(contact)]


def offer_terms(scores, kind: str, policy: Policy, *, outside: np.ndarray | None = None) -> OfferTerms:
    """The terms of a ``kind`` (:data:`OFFERS`) contact's expected incremental value for each row.

    ``uplift x value - contact_cost - offer_cost``; the uplift is the scores' ``retention_uplift`` /
    ``upgrade_uplift`` where present and not missing, else the rule of thumb (churn probability x retention
    acceptance rate, upgrade probability x upgrade acceptance rate). No retention offer outside the churn population
    (``outside``, when the caller has it already); no upgrade offer for the top tier.
    """
    import numpy as np

    if kind not in OFFERS:
        raise ValueError(f"offer must be one of {', '.join(OFFERS)}, got {kind!r}")
    n = _rows(scores)
    aum = _column(scores, "aum_month_end", 0.0)
    aum = np.where(np.isnan(aum), 0.0, aum).clip(min=0)  # unknown balances: no offer cost
    model_uplift = _column(scores, UPLIFT_COLUMNS[kind], np.nan)
    if kind == "retention":
        rule = _floats(scores, "churn_probability") * policy.retention_acceptance_rate
        outside = _outside_churn_population(scores) if outside is None else outside
        value = np.where(outside, np.nan, _floats(scores, "clv_12m").clip(min=0))
        contact = policy.retention_contact_cost
        offer = policy.retention_offer_take_up * policy.retention_offer_rate * aum
    else:
        rule = _floats(scores, "upgrade_probability") * policy.upgrade_acceptance_rate
        value = np.array([policy.upgrade_value_gain.get(t, np.nan) for t in _tiers(scores).tolist()], dtype="float64")
        contact = policy.upgrade_contact_cost
        offer = policy.upgrade_offer_take_up * policy.upgrade_offer_rate * aum
    from_model = ~np.isnan(model_uplift)
    return OfferTerms(np.where(from_model, model_uplift, rule), from_model, value,
                      np.full(n, contact, dtype="float64"), offer)


def contact_values(scores, policy: Policy) -> ContactValues:
    """Expected value of each contact of :data:`CONTACTS` for each row (see the module docstring).

    ``scores``, a frame or a mapping of arrays, needs ``churn_probability``, ``upgrade_probability``, ``clv_12m``
    and ``value_tier``; it uses ``product_count``, ``is_dormant``, ``months_quiet``, ``segment``,
    ``aum_month_end`` and the uplift columns (:data:`UPLIFT_COLUMNS`) when present.
    """
    import numpy as np

    outside = _outside_churn_population(scores)
    offers = {kind: offer_terms(scores, kind, policy, outside=outside) for kind in OFFERS}
    churn = _floats(scores, "churn_probability")
    clv = _floats(scores, "clv_12m")
    products = _column(scores, "product_count", 0.0)
    cross_sell = (1 - churn) * policy.cross_sell_acceptance_rate * policy.cross_sell_clv_uplift * clv - policy.cross_sell_contact_cost
    cross_sell = np.where(outside | ~(products < policy.cross_sell_max_products), np.nan, cross_sell)
    nurture = np.where(outside, np.nan, churn * clv * policy.nurture_acceptance_rate - policy.nurture_contact_cost)
    columns = {"retain": offers["retention"].expected_incremental_value,
               "upgrade_offer": offers["upgrade"].expected_incremental_value, "cross_sell": cross_sell, "nurture": nurture}
    matrix = np.column_stack([columns[c] for c in CONTACTS]) if len(churn) else np.zeros((0, len(CONTACTS)))
    return ContactValues(matrix, offers)


def _best(matrix: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column of each row's highest value (first on ties), that value, and whether it exceeds ``threshold``."""
    import numpy as np

    filled = np.where(np.isnan(matrix), -np.inf, matrix)
    best = filled.argmax(axis=1) if len(filled) else np.zeros(0, dtype=int)
    value = filled[np.arange(len(filled)), best]
    return best, value, value > threshold


def recommend(scores, policy: Policy, values: ContactValues | None = None) -> dict[str, np.ndarray]:
    """The recommended action and campaign offer of each row, from one ranking of :func:`contact_values`.

    Returns arrays ``recommended_action`` (:data:`ACTIONS`), ``expected_value_of_contact`` (0 for ``none``),
    ``recommended_offer`` (:data:`OFFERS` or ``none``), ``offer_uplift`` (NaN for ``none``) and
    ``offer_incremental_value`` (0 for ``none``). The offer is the better of the retain and upgrade_offer values
    when it exceeds ``min_expected_value``, so the two never contradict: retain gives retention and upgrade_offer
    gives upgrade (with the same value), none gives none; beside cross_sell or nurture the offer is the one a
    retention or upgrade campaign would make. ``values``: :func:`contact_values` of ``scores`` when already computed.
    """
    import numpy as np

    values = values if values is not None else contact_values(scores, policy)
    best, best_value, act = _best(values.matrix, policy.min_expected_value)
    names = np.asarray(CONTACTS, dtype=object)
    offer_columns = [CONTACTS.index(OFFER_CONTACT[kind]) for kind in OFFERS]
    offer, offer_value, worth = _best(values.matrix[:, offer_columns], policy.min_expected_value)
    uplift = np.column_stack([values.offers[kind].uplift for kind in OFFERS]) if len(best) else np.zeros((0, len(OFFERS)))
    return {
        "recommended_action": np.where(act, names[best], "none").astype(object),
        "expected_value_of_contact": np.where(act, best_value, 0.0),
        "recommended_offer": np.where(worth, np.asarray(OFFERS, dtype=object)[offer], "none").astype(object),
        "offer_uplift": np.where(worth, uplift[np.arange(len(offer)), offer], np.nan),
        "offer_incremental_value": np.where(worth, offer_value, 0.0),
    }


def recommend_actions(scores: pd.DataFrame, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    """The recommended action of each row and its expected value of contact (0 for ``none``): :func:`recommend`."""
    chosen = recommend(scores, policy)
    return chosen["recommended_action"], chosen["expected_value_of_contact"]


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
    high_value = (clv >= policy.key_customer_clv) | _isin(tier, policy.key_customer_tiers)
    growth = (tier != policy.top_value_tier) & (np.nan_to_num(upgrade, nan=-1.0) >= policy.growth_upgrade_probability)
    return np.select(
        [dormant, lapsing, at_risk & high_value, at_risk, growth, high_value],
        ["dormant", "lapsing", "key_customer_at_risk", "low_value_at_risk", "growth_potential", "stable_core"],
        default="low_value_stable",
    ).astype(object)
