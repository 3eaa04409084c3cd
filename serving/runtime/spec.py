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

from custbase.config import Paths
from serving.runtime.models import ModelRef, ScoringModels
from serving.runtime.policy import Policy

SPEC_ENV = "CUSTBASE_SERVING_SPEC"
SNAPSHOT_ENV = "CUSTBASE_SNAPSHOT"
SPEC_FILE = "bento_spec/serving_spec.json"
#: The configuration's default ``paths.online_snapshot`` (the one place it is written).
DEFAULT_SNAPSHOT = str(Paths.model_fields["online_snapshot"].default)


class FeatureSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str  # "numeric" or "categorical"
    categories: list[str] | None = None
    description: str | None = None
    #: Accepted range of a numeric value in a request (see :func:`value_range`); None: unbounded.
    minimum: float | None = None
    maximum: float | None = None


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    bento_tag: str = ""
    model_uri: str = ""
    version: str = ""
    #: SHA-256 of the model's files in the BentoML store, recorded at build; the service refuses a mismatch.
    sha256: str = ""


class ServingSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    features: list[FeatureSpec]
    models: dict[str, ModelSpec] = {}
    policy: Policy = Policy()
    feature_set: dict | None = None
    #: Where the build's configuration put the snapshot; informational: the service finds the snapshot through
    #: ``CUSTBASE_SNAPSHOT`` or the configuration at start (see :func:`serving.service.snapshot_path`).
    snapshot_path: str = DEFAULT_SNAPSHOT

    def refs(self) -> dict[str, ModelRef]:
        return {n: ModelRef(n, m.bento_tag, m.model_uri, m.version, m.sha256) for n, m in self.models.items() if m.bento_tag}


#: How far above the training range a request value may go, in multiples of the range's width (or of the
#: largest value): beyond the training range trees score like its edge, so only absurd magnitudes are refused.
RANGE_HEADROOM = 100.0


def value_range(models: ScoringModels) -> dict[str, tuple[float | None, float | None]]:
    """``{feature: (minimum, maximum)}`` a request may send, from the training ranges LightGBM stores per feature.

    A feature never negative in training refuses negatives (a negative age or balance is a data error);
    others may go one range-width below the training minimum. The maximum is the training maximum plus
    :data:`RANGE_HEADROOM` widths. Categorical features are not listed (their categories bound them).
    """
    out: dict[str, tuple[float | None, float | None]] = {}
    for model in models:
        infos = model.booster.dump_model(num_iteration=0).get("feature_infos", {})
        for name in model.feature_names:
            info = infos.get(name) or {}
            if name in (model.categories or {}) or "min_value" not in info or "max_value" not in info:
                continue
            low, high = float(info["min_value"]), float(info["max_value"])
            width = max(high - low, abs(high), abs(low), 1.0)
            lower = 0.0 if low >= 0 else low - width
            upper = high + RANGE_HEADROOM * width
            previous = out.get(name)
            out[name] = (lower, upper) if previous is None else (min(lower, previous[0]), max(upper, previous[1]))
    return out


def spec_from_models(models: ScoringModels, policy: Policy, *, feature_set: dict | None = None,
                     snapshot_path: str = DEFAULT_SNAPSHOT, bento_tags: dict[str, str] | None = None,
                     sha256: dict[str, str] | None = None) -> ServingSpec:
    """The spec of ``models``: the union of their features (descriptions from the feature set when published)."""
    from serving.runtime.scoring import feature_descriptions

    descriptions = feature_descriptions() or {}
    categories = models.categories()
    ranges = value_range(models)
    features = [
        FeatureSpec(name=name, kind="categorical" if name in categories else "numeric",
                    categories=list(categories[name]) if name in categories else None, description=descriptions.get(name),
                    minimum=ranges.get(name, (None, None))[0], maximum=ranges.get(name, (None, None))[1])
        for name in models.feature_names()
    ]
    tags = bento_tags or {}
    return ServingSpec(
        features=features,
        models={m.name: ModelSpec(bento_tag=tags.get(m.name, ""), model_uri=m.model_uri, version=str(m.version),
                                  sha256=(sha256 or {}).get(m.name, "")) for m in (*models, *models.uplift.values())},
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
        candidates += [Path(argument), Path(__file__).resolve().parents[2] / argument]
    for path in candidates:
        if path.exists():
            return ServingSpec.model_validate(json.loads(path.read_text()))
    if candidates:
        raise FileNotFoundError(f"serving spec not found at {', '.join(map(str, candidates))}")
    return None
