"""The serving spec: what a bento (or a development service) serves, as one JSON file.

It records the pinned models (BentoML tag, MLflow URI, version), the feature set the request schema is
generated from (names, kinds, categories, descriptions), the policy, and where the online feature snapshot is.
:func:`serving.bento.build_bento` writes it into the bento; the service reads it at import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from serving.models import ModelRef, ScoringModels
from serving.policy import Policy

SPEC_ENV = "CUSTBASE_SERVING_SPEC"
SNAPSHOT_ENV = "CUSTBASE_SNAPSHOT"
SPEC_FILE = "bento_spec/serving_spec.json"
DEFAULT_SNAPSHOT = "data/online_features.sqlite"


class FeatureSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str  # "numeric" or "categorical"
    categories: list[str] | None = None
    description: str | None = None


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    bento_tag: str = ""
    model_uri: str = ""
    version: str = ""


class ServingSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    features: list[FeatureSpec]
    models: dict[str, ModelSpec] = {}
    policy: Policy = Policy()
    feature_set: dict | None = None
    snapshot_path: str = DEFAULT_SNAPSHOT

    def refs(self) -> dict[str, ModelRef]:
        return {n: ModelRef(n, m.bento_tag, m.model_uri, m.version) for n, m in self.models.items() if m.bento_tag}


def spec_from_models(models: ScoringModels, policy: Policy, *, feature_set: dict | None = None,
                     snapshot_path: str = DEFAULT_SNAPSHOT, bento_tags: dict[str, str] | None = None) -> ServingSpec:
    """The spec of ``models``: the union of their features (descriptions from the feature set when published)."""
    from serving.scoring import feature_descriptions

    descriptions = feature_descriptions() or {}
    categories = models.categories()
    features = [
        FeatureSpec(name=name, kind="categorical" if name in categories else "numeric",
                    categories=list(categories[name]) if name in categories else None, description=descriptions.get(name))
        for name in models.feature_names()
    ]
    tags = bento_tags or {}
    return ServingSpec(
        features=features,
        models={m.name: ModelSpec(bento_tag=tags.get(m.name, ""), model_uri=m.model_uri, version=str(m.version)) for m in models},
        policy=policy,
        feature_set=feature_set,
        snapshot_path=snapshot_path,
    )


def write_spec(spec: ServingSpec, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.model_dump_json(indent=2))
    return path


def find_spec(argument: str | None = None) -> ServingSpec | None:
    """The spec named by ``CUSTBASE_SERVING_SPEC``, else by the bento argument (relative to the bento's source)."""
    candidates = []
    if os.environ.get(SPEC_ENV):
        candidates.append(Path(os.environ[SPEC_ENV]))
    elif argument:
        candidates += [Path(argument), Path(__file__).resolve().parents[1] / argument]
    for path in candidates:
        if path.exists():
            return ServingSpec.model_validate(json.loads(path.read_text()))
    if candidates:
        raise FileNotFoundError(f"serving spec not found at {', '.join(map(str, candidates))}")
    return None
