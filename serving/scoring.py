"""The one scoring function: the endpoint, the local batch job and the Spark job all call :func:`score_customers`."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Literal, Mapping

import numpy as np
import pandas as pd

from serving.models import ScoringModel, ScoringModels, prepare_features
from serving.policy import Policy, recommend_actions, segment_customers

ReasonMode = Literal["all", "actionable", "action", "none"]
#: The model whose reasons back each action in ``reasons="action"`` mode.
ACTION_MODEL = {"retain": "churn", "nurture": "churn", "upgrade_offer": "upgrade", "cross_sell": "clv"}

#: Columns of a score frame, in order.
SCORE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "as_of",
    "value_tier",
    "segment",
    "recommended_action",
    "expected_value_of_contact",
    "churn_probability",
    "upgrade_probability",
    "clv_12m",
    "value_at_risk",
    "recommended_offer",
    "offer_uplift",
    "offer_incremental_value",
    "churn_reasons",
    "upgrade_reasons",
    "clv_reasons",
    "churn_model_version",
    "upgrade_model_version",
    "clv_model_version",
)
REASON_COLUMNS: tuple[str, ...] = ("churn_reasons", "upgrade_reasons", "clv_reasons")
#: Columns besides the models' features that scoring reads from the feature frame.
IDENTITY_COLUMNS: tuple[str, ...] = ("customer_id", "as_of", "value_tier")
#: Optional policy inputs: used when present.
POLICY_COLUMNS: tuple[str, ...] = ("is_dormant", "months_quiet", "product_count", "aum_month_end")
#: Offers a campaign can make; ``uplift`` callables of :func:`score_customers` are keyed by them.
OFFERS: tuple[str, ...] = ("retention", "upgrade")


@lru_cache(maxsize=1)
def feature_descriptions() -> dict[str, str] | None:
    """Descriptions of the feature set for reason sentences, when the feature builder publishes them."""
    try:
        from features.feature_set import FEATURE_DESCRIPTIONS
    except ImportError:
        return None
    return dict(FEATURE_DESCRIPTIONS)


def _reason_mode(reasons: bool | str) -> ReasonMode:
    if reasons is True:
        return "all"
    if reasons is False or reasons is None:
        return "none"
    if reasons not in ("all", "actionable", "action", "none"):
        raise ValueError(f"reasons must be 'all', 'actionable', 'action', 'none' or a bool, got {reasons!r}")
    return reasons  # type: ignore[return-value]


def _explain(model: ScoringModel, X: pd.DataFrame, rows: np.ndarray, k: int) -> list[list[str]]:
    """Top-``k`` reason sentences of ``model`` for the rows at positions ``rows`` of ``X``; [] elsewhere."""
    out: list[list[str]] = [[] for _ in range(len(X))]
    if len(rows) == 0:
        return out
    from training.explain import reason_codes

    codes = reason_codes(model.booster, X.iloc[rows], k=k, descriptions=feature_descriptions(), direction="increase")
    for position, row_reasons in zip(rows.tolist(), codes):
        out[position] = [r.sentence for r in row_reasons]
    return out


def score_customers(
    features: pd.DataFrame,
    models: ScoringModels,
    policy: Policy,
    *,
    reasons: bool | ReasonMode = "all",
    reason_k: int = 3,
    uplift: Mapping[str, Callable[[pd.DataFrame], np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Score customer-month rows: probabilities, CLV, value at risk, segment, action, reasons, model versions.

    Parameters
    ----------
    features
        One row per customer: ``customer_id``, ``as_of``, ``value_tier``, every feature of the three models, and
        optionally ``is_dormant``, ``months_quiet`` (the churn population) and ``product_count`` (used by the
        policy). Not modified.
    models
        The churn, upgrade and CLV models.
    policy
        Segmentation and action policy.
    reasons
        ``"all"`` (or True): top-``reason_k`` reasons of each model for every row; ``"actionable"``: only for rows
        whose recommended action is not ``none`` (reason codes cost 100x+ a prediction); ``"action"``: for those rows,
        only the model behind the action (churn for retain / nurture, upgrade for upgrade_offer, clv for cross_sell:
        a third of the cost); ``"none"`` (or False): empty lists.
    reason_k
        Reasons per model and row.

    Returns
    -------
    pandas.DataFrame
        :data:`SCORE_COLUMNS`, one row per input row in input order (index reset). ``upgrade_probability`` is
        NaN (and ``upgrade_reasons`` empty) for customers already in the top tier; ``clv_12m`` is clipped at 0;
        ``value_at_risk`` = churn_probability x clv_12m.
    """
    mode = _reason_mode(reasons)
    missing = [c for c in IDENTITY_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"the {len(features)}-row feature frame lacks {missing}: scoring needs {list(IDENTITY_COLUMNS)}")
    frame = features.reset_index(drop=True)
    n = len(frame)
    X = {m.name: prepare_features(frame, m) for m in models}

    tier = frame["value_tier"].astype("object").where(frame["value_tier"].notna(), None)
    top = (tier == policy.top_value_tier).to_numpy(dtype=bool)
    churn = np.clip(models.churn.predict(X["churn"]), 0.0, 1.0) if n else np.zeros(0)
    upgrade = np.full(n, np.nan)
    if (~top).any():
        rows = np.flatnonzero(~top)
        upgrade[rows] = np.clip(models.upgrade.predict(X["upgrade"].iloc[rows]), 0.0, 1.0)
    clv = np.maximum(models.clv.predict(X["clv"]), 0.0) if n else np.zeros(0)

    scores = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(dtype="int64"),
            "as_of": pd.to_datetime(frame["as_of"]).astype("datetime64[us]").to_numpy(),
            "value_tier": tier.astype("str").to_numpy() if n else np.zeros(0, dtype=object),
            "churn_probability": churn,
            "upgrade_probability": upgrade,
            "clv_12m": clv,
            "value_at_risk": churn * clv,
        }
    )
    for column in POLICY_COLUMNS:
        if column in frame.columns:
            scores[column] = frame[column].to_numpy()
    scores["segment"] = segment_customers(scores, policy)
    scores = _with_best_offer(scores, frame, policy, uplift or {})
    actions, values = recommend_actions(scores, policy)
    scores["recommended_action"] = actions
    scores["expected_value_of_contact"] = values

    if mode == "none":
        explained = np.zeros(0, dtype=int)
    elif mode in ("actionable", "action"):
        explained = np.flatnonzero(actions != "none")
    else:
        explained = np.arange(n)
    per_model = {name: explained for name in ("churn", "upgrade", "clv")}
    if mode == "action":
        driver = pd.Series(actions).map(ACTION_MODEL).to_numpy()
        per_model = {name: explained[driver[explained] == name] for name in per_model}
    per_model["upgrade"] = per_model["upgrade"][~top[per_model["upgrade"]]]
    scores["churn_reasons"] = _explain(models.churn, X["churn"], per_model["churn"], reason_k)
    scores["upgrade_reasons"] = _explain(models.upgrade, X["upgrade"], per_model["upgrade"], reason_k)
    scores["clv_reasons"] = _explain(models.clv, X["clv"], per_model["clv"], reason_k)
    for m in models:
        scores[f"{m.name}_model_version"] = str(m.version)
    scores["segment"] = scores["segment"].astype("str")
    scores["recommended_action"] = scores["recommended_action"].astype("str")
    return scores.loc[:, list(SCORE_COLUMNS)]


def _with_best_offer(scores: pd.DataFrame, frame: pd.DataFrame, policy: Policy, uplift: Mapping) -> pd.DataFrame:
    """``scores`` plus the campaign offer worth most (:func:`serving.campaign.best_offers`), its uplift and its
    expected incremental value (the uplift models' when given, else the policy's rule of thumb)."""
    from serving.campaign import UPLIFT_COLUMNS, best_offers, offer_values

    unknown = set(uplift) - set(OFFERS)
    if unknown:
        raise ValueError(f"uplift is keyed by offer ({', '.join(OFFERS)}), got {sorted(unknown)}")
    aum = frame["aum_month_end"].to_numpy() if "aum_month_end" in frame.columns else np.zeros(len(frame))  # unknown: no offer cost
    inputs = scores.assign(aum_month_end=aum, **{UPLIFT_COLUMNS[o]: fn(frame) for o, fn in uplift.items()})
    best = best_offers(inputs, policy)
    offer_uplift = np.full(len(scores), np.nan)
    for offer in OFFERS:
        chosen = (best["best_offer"] == offer).to_numpy()
        offer_uplift[chosen] = offer_values(inputs.loc[chosen], offer, policy)["uplift"].to_numpy()
    return scores.assign(recommended_offer=best["best_offer"].astype("str").to_numpy(), offer_uplift=offer_uplift,
                         offer_incremental_value=best["best_offer_value"].to_numpy())


def input_columns(models: ScoringModels) -> list[str]:
    """Columns :func:`score_customers` reads (identity, the models' features, the optional policy inputs)."""
    return list(dict.fromkeys([*IDENTITY_COLUMNS, *models.feature_names(), *POLICY_COLUMNS]))
