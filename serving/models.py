"""The models serving scores with, behind one small protocol.

Serving needs, per model, the feature order, the categories of each categorical column, a ``predict`` that
returns a calibrated probability (churn, upgrade) or a CLV in currency, and the LightGBM booster whose
``pred_contrib`` explains the score. :class:`ScoringModel` states that; :class:`BoosterModel` is the plain
implementation (tests, tools), :class:`BundleModel` adapts a trained ``training.model_bundle.ModelBundle``.

Where the models come from is decided at the edge:

- in a bento: :func:`load_champions_from_bento` reads the three pinned BentoML models (imported from the
  MLflow ``champion`` versions by :func:`serving.bento.build_bento`);
- for tests and development: :func:`save_scoring_models` / :func:`load_scoring_models` (a pickle), or the
  environment hooks read by :func:`models_from_environment`.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightgbm as lgb
import numpy as np
import pandas as pd

MODEL_NAMES: tuple[str, ...] = ("churn", "upgrade", "clv")
#: Name of each model in the MLflow registry and in the BentoML model store.
REGISTERED_NAMES: dict[str, str] = {name: f"custbase-{name}" for name in MODEL_NAMES}

#: Environment hooks (development and tests): a pickle written by :func:`save_scoring_models`, or
#: ``module:function`` returning :class:`ScoringModels`.
MODELS_PICKLE_ENV = "CUSTBASE_MODELS_PICKLE"
MODELS_FACTORY_ENV = "CUSTBASE_MODELS_FACTORY"


class ModelInputError(ValueError):
    """A feature frame does not fit a model (missing columns)."""


@runtime_checkable
class ScoringModel(Protocol):
    """What scoring needs of one trained model."""

    name: str
    version: str
    model_uri: str
    feature_names: list[str]
    categories: dict[str, list[str]]
    booster: lgb.Booster

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability (churn, upgrade) or CLV in currency (clv), one per row of ``X``."""
        ...


def prepare_features(frame: pd.DataFrame, model: ScoringModel) -> pd.DataFrame:
    """The model's feature matrix for ``frame`` (a new frame; ``frame`` is untouched).

    Columns are ``model.feature_names`` in order; categorical columns get ``CategoricalDtype(model.categories[col])``
    (a category unseen in training becomes missing, as LightGBM would treat it); every other column is float.

    Raises
    ------
    ModelInputError
        When ``frame`` lacks any of the model's features; the message names them.
    """
    missing = [c for c in model.feature_names if c not in frame.columns]
    if missing:
        raise ModelInputError(
            f"the {model.name} model (version {model.version}) needs {len(missing)} feature column(s) absent from the "
            f"{len(frame)}-row frame: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; "
            "build the features with the model's feature set"
        )
    from training.model_bundle import prepare_features as model_matrix

    return model_matrix(frame, list(model.feature_names), dict(model.categories))


def _categories_of(booster: lgb.Booster) -> dict[str, list[str]]:
    """Categories LightGBM stored with a booster trained on pandas ``category`` columns (numeric features have no values)."""
    stored = getattr(booster, "pandas_categorical", None) or []
    if not stored:
        return {}
    infos = booster.dump_model(num_iteration=0).get("feature_infos", {})
    names = [n for n in booster.feature_name() if infos.get(n, {}).get("values")]
    return {name: [str(v) for v in values] for name, values in zip(names, stored)}


@dataclass(eq=False)
class BoosterModel:
    """A :class:`ScoringModel` made of one LightGBM booster and an optional calibrator.

    Parameters
    ----------
    name
        ``churn``, ``upgrade`` or ``clv``.
    version
        The model's registry version (a string).
    booster
        The trained booster; binary models return a probability, the CLV model a value.
    feature_names
        Feature order; the booster's own when empty.
    categories
        Categorical column -> categories in training order; read from the booster when None.
    calibrator
        Raw probability -> calibrated probability: an object with ``transform`` or ``predict``, or a callable.
    model_uri
        Where the model came from (e.g. ``models:/custbase-churn/3``).
    """

    name: str
    version: str
    booster: lgb.Booster
    feature_names: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] | None = None
    calibrator: Any = None
    model_uri: str = ""

    def __post_init__(self) -> None:
        if not self.feature_names:
            self.feature_names = list(self.booster.feature_name())
        if self.categories is None:
            self.categories = _categories_of(self.booster)
        self.version = str(self.version)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raw = np.asarray(self.booster.predict(X, num_threads=1), dtype="float64")
        if self.calibrator is None:
            return raw
        for method in ("transform", "predict"):
            if hasattr(self.calibrator, method):
                return np.asarray(getattr(self.calibrator, method)(raw), dtype="float64")
        return np.asarray(self.calibrator(raw), dtype="float64")


@dataclass(eq=False)
class BundleModel:
    """A :class:`ScoringModel` over a trained ``training.model_bundle.ModelBundle`` (duck-typed).

    The bundle prepares its own matrix and applies its calibrator; for the CLV hurdle model the explained
    booster is the bundle's ``booster`` (its occurrence part).
    """

    bundle: Any
    version: str
    model_uri: str = ""

    @property
    def name(self) -> str:
        return self.bundle.model

    @property
    def feature_names(self) -> list[str]:
        return list(self.bundle.feature_columns)

    @property
    def categories(self) -> dict[str, list[str]]:
        return dict(self.bundle.categories)

    @property
    def booster(self) -> lgb.Booster:
        return self.bundle.booster

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.bundle.predict(X), dtype="float64")


@dataclass(frozen=True)
class ScoringModels:
    """The three models one scoring run uses."""

    churn: ScoringModel
    upgrade: ScoringModel
    clv: ScoringModel

    def __iter__(self):
        return iter((self.churn, self.upgrade, self.clv))

    def versions(self) -> dict[str, str]:
        """``{"churn": "3", "upgrade": "2", "clv": "5"}``."""
        return {m.name: str(m.version) for m in self}

    def uris(self) -> dict[str, str]:
        return {m.name: m.model_uri for m in self}

    def feature_names(self) -> list[str]:
        """Union of the three models' features, in first-seen order."""
        return list(dict.fromkeys(name for m in self for name in m.feature_names))

    def categories(self) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        for m in self:
            merged.update(m.categories)
        return merged


def check_models(models: ScoringModels) -> ScoringModels:
    """Refuse a set whose models are not churn, upgrade and clv in that order (a swapped model scores silently wrong)."""
    names = tuple(m.name for m in models)
    if names != MODEL_NAMES:
        raise ValueError(f"ScoringModels must hold the churn, upgrade and clv models in that order; got {names}")
    return models


# --------------------------------------------------------------------------------------------- loading


def save_scoring_models(models: ScoringModels, path: Path) -> Path:
    """Pickle ``models`` (boosters pickle as their model text) for development, tests and Spark."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(pickle.dumps(models))
    os.replace(tmp, path)
    return path


def load_scoring_models(path: Path) -> ScoringModels:
    """Read models written by :func:`save_scoring_models` (trusted local files only: this unpickles)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no scoring models at {path}: write them with serving.models.save_scoring_models")
    return check_models(pickle.loads(path.read_bytes()))


@dataclass(frozen=True)
class ModelRef:
    """One pinned champion: BentoML tag, MLflow URI and registry version."""

    name: str
    bento_tag: str
    model_uri: str
    version: str


ModelLoader = Callable[[Path, ModelRef], ScoringModel]


def load_mlflow_model_dir(path: Path, ref: ModelRef) -> ScoringModel:
    """A :class:`ScoringModel` from a downloaded MLflow model folder.

    A custbase training bundle (``bundle/bundle.json``) is preferred; a plain ``mlflow.lightgbm`` model
    (``model.lgb``, uncalibrated) is the fallback.
    """
    path = Path(path)
    if (path / "bundle" / "bundle.json").exists() or (path / "bundle.json").exists():
        from training.model_bundle import ModelBundle

        return BundleModel(ModelBundle.load(path), version=ref.version, model_uri=ref.model_uri)
    booster_files = sorted(path.rglob("*.lgb"))
    if not booster_files:
        raise FileNotFoundError(f"{path} holds neither a custbase bundle nor a LightGBM model.lgb (model {ref.bento_tag})")
    booster = lgb.Booster(model_file=str(booster_files[0]))
    return BoosterModel(ref.name, ref.version, booster, model_uri=ref.model_uri)


def load_champions_from_bento(refs: Mapping[str, ModelRef], loader: ModelLoader | None = None) -> ScoringModels:
    """Load the three pinned models from the BentoML model store (inside a bento: the bento's own models).

    Parameters
    ----------
    refs
        ``{"churn": ModelRef(...), ...}``, as recorded by :func:`serving.bento.build_bento` in the serving spec.
    loader
        Turns the imported MLflow model folder into a :class:`ScoringModel`; :func:`load_mlflow_model_dir` by default.
    """
    import bentoml

    loader = loader or load_mlflow_model_dir
    loaded = {}
    for name in MODEL_NAMES:
        if name not in refs:
            raise KeyError(f"the serving spec names no {name} model; rebuild the bento with `custbase build`")
        ref = refs[name]
        stored = bentoml.models.get(ref.bento_tag)
        loaded[name] = loader(Path(stored.path_of("mlflow_model")), ref)
    return check_models(ScoringModels(**loaded))


def models_from_environment(refs: Mapping[str, ModelRef] | None = None) -> ScoringModels:
    """The models a service process should use.

    ``CUSTBASE_MODELS_PICKLE`` (a file from :func:`save_scoring_models`) wins, then ``CUSTBASE_MODELS_FACTORY``
    (``package.module:function`` returning :class:`ScoringModels`), then the bento's pinned ``refs``.
    """
    if os.environ.get(MODELS_PICKLE_ENV):
        return load_scoring_models(Path(os.environ[MODELS_PICKLE_ENV]))
    if os.environ.get(MODELS_FACTORY_ENV):
        module_name, _, attr = os.environ[MODELS_FACTORY_ENV].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return check_models(factory())
    if refs:
        return load_champions_from_bento(refs)
    raise RuntimeError(
        "no models to serve: run a bento built by `custbase build`, or set "
        f"{MODELS_PICKLE_ENV} (a pickle from serving.models.save_scoring_models) or {MODELS_FACTORY_ENV}"
    )
