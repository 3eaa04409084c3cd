"""The online scoring service (BentoML 1.4, new-style).

Endpoints (all POST, JSON; keys as in :mod:`serving.auth`):

- ``/score``: ``{"customers": [CustomerFeatures, ...]}`` -> ``[CustomerScore, ...]``. ``CustomerFeatures`` is
  generated from the served feature set: ``customer_id``, optional ``as_of``, and one field per model feature
  (numbers as ``float | null``, categorical codes as one of the training categories or ``null``), every feature
  required (send ``null`` when unknown) and unknown fields refused, so a misspelt feature is a 400 naming it.
  Adaptive batching merges concurrent requests (``list[Model]`` input; a DataFrame input hangs in 1.4.40).
- ``/score_customers``: ``{"customer_ids": [..]}`` -> one ``CustomerResult`` per id, from the online feature
  snapshot; an unknown id is an item with ``error`` set, never a 500.

Both run :func:`serving.scoring.score_customers`, as the batch jobs do. Without a serving spec (e.g. at
``bentoml build`` time) ``CustomerFeatures`` falls back to ``{customer_id, as_of, value_tier, features: {...}}``.
Run: ``bentoml serve serving.service:CustbaseScoring`` (models from a bento, or ``CUSTBASE_MODELS_PICKLE`` /
``CUSTBASE_MODELS_FACTORY`` in development).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Literal, Optional

import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from serving.auth import ApiKeyMiddleware
from serving.models import MODELS_FACTORY_ENV, MODELS_PICKLE_ENV, ScoringModels, models_from_environment
from serving.policy import Policy
from serving.scoring import SCORE_COLUMNS, score_customers
from serving.snapshot import OnlineFeatureSnapshot, SnapshotMissing
from serving.spec import SNAPSHOT_ENV, ServingSpec, find_spec, spec_from_models

REASONS_ENV = "CUSTBASE_SERVICE_REASONS"

_models_override: ScoringModels | None = None


def use_models(models: ScoringModels | None) -> None:
    """Test hook: make services created in this process use ``models`` (None restores the normal loading)."""
    global _models_override
    _models_override = models


def _load_spec() -> ServingSpec | None:
    spec = find_spec(getattr(bentoml.use_arguments(), "serving_spec", None))
    if spec is None and (os.environ.get(MODELS_PICKLE_ENV) or os.environ.get(MODELS_FACTORY_ENV)):
        spec = spec_from_models(models_from_environment(), Policy())
    return spec


SPEC = _load_spec()


def _feature_field(feature) -> tuple[Any, Any]:
    if feature.kind == "categorical" and feature.categories:
        kind = Optional[Literal[tuple(feature.categories)]]  # type: ignore[valid-type]
    else:
        kind = Optional[float]
    return kind, Field(..., description=feature.description or feature.name.replace("_", " "))


def customer_features_model(spec: ServingSpec | None) -> type[BaseModel]:
    """The request record of ``/score`` for the served feature set."""
    fields: dict[str, Any] = {
        "customer_id": (int, Field(..., description="The bank's customer identifier.")),
        "as_of": (Optional[dt.date], Field(None, description="Month end the features describe.")),
    }
    if spec is None:
        fields["value_tier"] = (str, Field(..., description="Value tier of the customer at as_of."))
        fields["features"] = (dict[str, float | str | None], Field(..., description="Feature name -> value."))
    else:
        for feature in spec.features:
            fields[feature.name] = _feature_field(feature)
        names = {f.name for f in spec.features}
        if "value_tier" not in names:
            fields["value_tier"] = (str, Field(..., description="Value tier of the customer at as_of."))
        for name, text in (("is_dormant", "1 if the customer is dormant (policy input)."),
                           ("months_quiet", "Consecutive quiet months up to as_of; > 0 is outside the churn population (policy input)."),
                           ("product_count", "Products held (policy input).")):
            if name not in names:
                fields[name] = (Optional[float], Field(None, description=text))
    return create_model("CustomerFeatures", __config__=ConfigDict(extra="forbid"), **fields)


CustomerFeatures = customer_features_model(SPEC)


class CustomerScore(BaseModel):
    """Scores, segment, action and reasons of one customer."""

    customer_id: int
    as_of: Optional[dt.date] = None
    value_tier: str
    segment: str
    recommended_action: str
    expected_value_of_contact: float
    churn_probability: float
    upgrade_probability: Optional[float] = Field(None, description="None for customers already in the top tier.")
    clv_12m: float
    value_at_risk: float = Field(..., description="churn_probability x clv_12m")
    recommended_offer: str = Field(..., description="Campaign offer worth most: retention, upgrade or none (serving.campaign).")
    offer_uplift: Optional[float] = Field(None, description="Change in the offer's success probability; None for none.")
    offer_incremental_value: float = Field(..., description="Expected incremental value of the offer, net of contact and offer costs.")
    churn_reasons: list[str]
    upgrade_reasons: list[str]
    clv_reasons: list[str]
    model_versions: dict[str, str]


class CustomerResult(BaseModel):
    """The score of one requested customer, or why there is none."""

    customer_id: int
    score: Optional[CustomerScore] = None
    error: Optional[str] = None


def _records_to_frame(records: list[BaseModel]) -> pd.DataFrame:
    rows = []
    for record in records:
        data = record.model_dump()
        data.update(data.pop("features", None) or {})
        rows.append(data)
    frame = pd.DataFrame(rows)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame


def _to_scores(frame: pd.DataFrame) -> list[CustomerScore]:
    out = []
    for row in frame.loc[:, list(SCORE_COLUMNS)].to_dict("records"):
        as_of = row["as_of"]
        upgrade = row["upgrade_probability"]
        out.append(
            CustomerScore(
                customer_id=int(row["customer_id"]),
                as_of=None if pd.isna(as_of) else pd.Timestamp(as_of).date(),
                value_tier=row["value_tier"],
                segment=row["segment"],
                recommended_action=row["recommended_action"],
                expected_value_of_contact=float(row["expected_value_of_contact"]),
                churn_probability=float(row["churn_probability"]),
                upgrade_probability=None if upgrade is None or np.isnan(upgrade) else float(upgrade),
                clv_12m=float(row["clv_12m"]),
                value_at_risk=float(row["value_at_risk"]),
                recommended_offer=str(row["recommended_offer"]),
                offer_uplift=None if pd.isna(row["offer_uplift"]) else float(row["offer_uplift"]),
                offer_incremental_value=float(row["offer_incremental_value"]),
                churn_reasons=list(row["churn_reasons"]),
                upgrade_reasons=list(row["upgrade_reasons"]),
                clv_reasons=list(row["clv_reasons"]),
                model_versions={n: str(row[f"{n}_model_version"]) for n in ("churn", "upgrade", "clv")},
            )
        )
    return out


@bentoml.service(name="custbase", traffic={"timeout": 30}, workers=1)
class CustbaseScoring:
    """Churn, upgrade and CLV scores with segment, recommended action and reasons."""

    def __init__(self) -> None:
        self.models = _models_override or models_from_environment(SPEC.refs() if SPEC else None)
        self.policy = SPEC.policy if SPEC else Policy()
        self.snapshot = OnlineFeatureSnapshot(os.environ.get(SNAPSHOT_ENV) or (SPEC.snapshot_path if SPEC else "data/online_features.sqlite"))
        self.reasons = os.environ.get(REASONS_ENV, "all")

    @bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=5_000)
    def score(self, customers: list[CustomerFeatures]) -> list[CustomerScore]:  # type: ignore[valid-type]
        """Score customer feature records (one or many)."""
        frame = _records_to_frame(customers)
        return _to_scores(score_customers(frame, self.models, self.policy, reasons=self.reasons))

    @bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=5_000)
    def score_customers(self, customer_ids: list[int]) -> list[CustomerResult]:
        """Score customers by id from the online feature snapshot; unknown ids come back as per-item errors."""
        try:
            features = self.snapshot.lookup(customer_ids)
        except SnapshotMissing as err:
            return [CustomerResult(customer_id=i, error=str(err)) for i in customer_ids]
        scored = {}
        if len(features):
            scores = score_customers(features, self.models, self.policy, reasons=self.reasons)
            scored = {s.customer_id: s for s in _to_scores(scores)}
        return [
            CustomerResult(customer_id=i, score=scored[i]) if i in scored
            else CustomerResult(customer_id=i, error=f"customer {i} is not in the online feature snapshot (not active at its as_of, or unknown)")
            for i in customer_ids
        ]


CustbaseScoring.add_asgi_middleware(ApiKeyMiddleware)
