"""The one scoring function: the endpoint, the local batch job and the Spark job all call :func:`score_customers`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from serving.runtime.models import MatrixModel, MatrixModels, ScoringModels, UpliftModel, matrix_models
from serving.runtime.policy import OFFERS, UPLIFT_COLUMNS, Policy, recommend, segment_customers
from serving.runtime.reasons import phraser, top_drivers
from serving.runtime.schema import SCORE_COLUMNS

ReasonMode = Literal["all", "actionable", "action", "none"]
#: The model whose reasons back each action in ``reasons="action"`` mode.
ACTION_MODEL = {"retain": "churn", "nurture": "churn", "upgrade_offer": "upgrade", "cross_sell": "clv"}

#: Columns besides the models' features that scoring reads from the feature frame.
IDENTITY_COLUMNS: tuple[str, ...] = ("customer_id", "as_of", "value_tier")
#: Optional policy inputs: used when present.
POLICY_COLUMNS: tuple[str, ...] = ("is_dormant", "months_quiet", "product_count", "aum_month_end")


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


def _reason_sentences(model: MatrixModel, X: np.ndarray, contrib: np.ndarray, k: int) -> list[list[str]]:
    """Top-``k`` features pushing each row's score up, as sentences (the rule of :func:`serving.runtime.reasons.reason_codes`)."""
    out: list[list[str]] = [[] for _ in range(len(X))]
    rows, features = top_drivers(contrib[:, :-1], k)
    phrase = _phrasers(model)
    for i, j in zip(rows.tolist(), features.tolist()):
        out[i].append(phrase(j, model.value(X, i, j)))
    return out


@lru_cache(maxsize=16)
def _phrasers(model: MatrixModel):
    """``(feature index, value) -> sentence`` for ``model``, memoised (a base repeats few values per feature)."""
    builders = [phraser(name) for name in model.feature_names]

    @lru_cache(maxsize=65_536)
    def phrase(j: int, value) -> str:
        return builders[j](value)

    return phrase


def _explain(model: MatrixModel, X: np.ndarray, rows: np.ndarray, k: int, num_threads: int) -> list[list[str]]:
    """Reason sentences of ``model`` for the rows at positions ``rows`` of ``X``; [] elsewhere."""
    out: list[list[str]] = [[] for _ in range(len(X))]
    if len(rows) == 0:
        return out
    picked = X[rows]
    for position, reasons in zip(rows.tolist(), _reason_sentences(model, picked, model.contributions(picked, num_threads), k)):
        out[position] = reasons
    return out


def _score(
    customer_id: np.ndarray,
    as_of: np.ndarray,
    value_tier: np.ndarray,
    policy_inputs: dict[str, np.ndarray],
    X: dict[str, np.ndarray],
    models: MatrixModels,
    policy: Policy,
    mode: ReasonMode,
    reason_k: int,
    num_threads: int,
    uplift: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The scoring rule on arrays: every column of :data:`SCORE_COLUMNS`, one value per row.

    Each offer's uplift comes from ``models.uplift`` (its matrix in ``X`` under the uplift model's name), or from
    ``uplift`` (per offer, one value per row), which wins; without either the policy's rule of thumb stands in
    (:func:`serving.runtime.policy.contact_values`).
    """
    n = len(customer_id)
    given = dict(uplift or {})
    modelled = {offer: model.predict(X[model.name], num_threads) for offer, model in models.uplift.items() if offer not in given}
    modelled.update(given)
    top = value_tier == policy.top_value_tier
    churn = np.clip(models.churn.predict(X["churn"], num_threads), 0.0, 1.0)
    upgrade = np.full(n, np.nan)
    if (~top).any():
        rows = np.flatnonzero(~top)
        upgrade[rows] = np.clip(models.upgrade.predict(X["upgrade"][rows], num_threads), 0.0, 1.0)
    clv = np.maximum(models.clv.predict(X["clv"], num_threads), 0.0)
    scores = {"customer_id": customer_id, "value_tier": value_tier, "churn_probability": churn, "upgrade_probability": upgrade,
              "clv_12m": clv, "value_at_risk": churn * clv, **policy_inputs}
    segments = np.asarray(segment_customers(scores, policy), dtype=object)
    chosen = recommend({**scores, "segment": segments, **_uplift_columns(modelled)}, policy)
    actions = chosen["recommended_action"]

    if mode == "none":
        explained = np.zeros(0, dtype=int)
    elif mode in ("actionable", "action"):
        explained = np.flatnonzero(actions != "none")
    else:
        explained = np.arange(n)
    per_model = {name: explained for name in ("churn", "upgrade", "clv")}
    if mode == "action":
        driver = np.array([ACTION_MODEL.get(a) for a in actions.tolist()], dtype=object)
        per_model = {name: explained[driver[explained] == name] for name in per_model}
    per_model["upgrade"] = per_model["upgrade"][~top[per_model["upgrade"]]]
    return {
        "customer_id": customer_id,
        "as_of": as_of,
        "value_tier": value_tier,
        "segment": segments.astype(str),
        "recommended_action": actions.astype(str),
        "expected_value_of_contact": chosen["expected_value_of_contact"],
        "churn_probability": churn,
        "upgrade_probability": upgrade,
        "clv_12m": clv,
        "value_at_risk": churn * clv,
        "recommended_offer": chosen["recommended_offer"].astype(str),
        "offer_uplift": chosen["offer_uplift"],
        "offer_incremental_value": chosen["offer_incremental_value"],
        **{f"{m.name}_reasons": _explain(m, X[m.name], per_model[m.name], reason_k, num_threads) for m in models},
        **{f"{m.name}_model_version": [m.version] * n for m in models},
    }


def score_customers(
    features: pd.DataFrame,
    models: ScoringModels,
    policy: Policy,
    *,
    reasons: bool | ReasonMode = "all",
    reason_k: int = 3,
    num_threads: int = 1,
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
    num_threads
        LightGBM threads (0: all cores).
    uplift
        Per offer (:data:`OFFERS`), a function of the feature frame giving each row's uplift, in place of
        ``models.uplift`` (the uplift models packed with the three); an offer with neither is valued by the
        policy's rule of thumb.

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
    matrices = matrix_models(models)
    X = _matrices(matrices, lambda m: m.encode_frame(frame))
    tier = frame["value_tier"].astype("object").where(frame["value_tier"].notna(), None).to_numpy(dtype=object)
    policy_inputs = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                     for c in POLICY_COLUMNS if c in frame.columns}
    columns = _score(frame["customer_id"].to_numpy(dtype="int64"),
                     pd.to_datetime(frame["as_of"]).astype("datetime64[us]").to_numpy(),
                     tier, policy_inputs, X, matrices, policy, mode, reason_k, num_threads,
                     uplift={offer: predict(frame) for offer, predict in (uplift or {}).items()})
    columns["value_tier"] = np.array([str(t) for t in tier.tolist()], dtype=object)
    return pd.DataFrame(columns).loc[:, list(SCORE_COLUMNS)].astype({"segment": "str", "recommended_action": "str", "value_tier": "str"})


def score_records(
    records: Sequence[Mapping[str, Any]],
    models: ScoringModels,
    policy: Policy,
    *,
    reasons: bool | ReasonMode = "action",
    reason_k: int = 3,
) -> list[dict[str, Any]]:
    """:func:`score_customers` for a few records (dicts, as a request or the snapshot has them), without pandas
    per column: one matrix per model, built once. Same numbers as the frame path (tests compare them).

    Each record holds ``customer_id``, ``as_of`` (a date, text ``YYYY-MM-DD`` or None), ``value_tier``, the models'
    features and optionally the policy inputs. Returns one dict per record with the keys of :data:`SCORE_COLUMNS`
    (``upgrade_probability`` None for the top tier).
    """
    mode = _reason_mode(reasons)
    if not records:
        return []
    matrices = matrix_models(models)
    X = _matrices(matrices, lambda m: m.encode_records(records))
    tier = np.array([r.get("value_tier") for r in records], dtype=object)
    policy_inputs = {c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in records], dtype="float64")
                     for c in POLICY_COLUMNS if any(c in r for r in records)}
    ids = np.array([int(r["customer_id"]) for r in records], dtype="int64")
    columns = _score(ids, np.array([r.get("as_of") for r in records], dtype=object), tier, policy_inputs, X, matrices,
                     policy, mode, reason_k, 1)
    out = []
    for i in range(len(records)):
        row = {name: columns[name][i] for name in SCORE_COLUMNS}
        for name in ("expected_value_of_contact", "churn_probability", "clv_12m", "value_at_risk", "offer_incremental_value"):
            row[name] = float(row[name])
        for name in ("upgrade_probability", "offer_uplift"):  # NaN: not applicable (top tier, no offer)
            value = float(row[name])
            row[name] = None if np.isnan(value) else value
        row["recommended_offer"] = str(row["recommended_offer"])
        row["customer_id"] = int(row["customer_id"])
        row["segment"], row["recommended_action"] = str(row["segment"]), str(row["recommended_action"])
        out.append(row)
    return out


def _matrices(matrices: MatrixModels, encode: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    """Each model's matrix by model name, encoded once per layout (the models usually share the feature set)."""
    by_layout: dict[tuple, np.ndarray] = {}
    out = {}
    for model in (*matrices, *matrices.uplift.values()):
        if model.layout not in by_layout:
            by_layout[model.layout] = encode(model)
        out[model.name] = by_layout[model.layout]
    return out


def _uplift_columns(uplift: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each offer's modelled uplift under its score column (:data:`serving.runtime.policy.UPLIFT_COLUMNS`)."""
    unknown = set(uplift) - set(OFFERS)
    if unknown:
        raise ValueError(f"uplift is keyed by offer ({', '.join(OFFERS)}), got {sorted(unknown)}")
    return {UPLIFT_COLUMNS[offer]: np.asarray(values, dtype="float64") for offer, values in uplift.items()}


def input_columns(models: ScoringModels) -> list[str]:
    """Columns :func:`score_customers` reads (identity, the models' features, the optional policy inputs)."""
    return list(dict.fromkeys([*IDENTITY_COLUMNS, *models.feature_names(), *POLICY_COLUMNS]))


def uplift_columns(features: pd.DataFrame, uplift: Mapping[str, UpliftModel]) -> dict[str, np.ndarray]:
    """Each offer's uplift from its uplift model (``ScoringModels.uplift``) for the rows of ``features``, under its
    score column (``retention_uplift``, ``upgrade_uplift``); offers without an uplift model are left out."""
    return _uplift_columns({offer: model.predict(model.encode_frame(features)) for offer, model in uplift.items()})
