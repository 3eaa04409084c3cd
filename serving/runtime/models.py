"""The models serving scores with, behind one small protocol.

Serving needs, per model, the feature order, the categories of each categorical column, a ``predict`` that
returns a calibrated probability (churn, upgrade) or a CLV in currency, and the LightGBM booster whose
``pred_contrib`` explains the score. :class:`ScoringModel` states that; :class:`BoosterModel` is the plain
implementation (tests, tools), :class:`BundleModel` adapts a trained ``serving.runtime.bundle.ModelBundle``.

Where the models come from is decided at the edge:

- in a bento: :func:`load_champions_from_bento` reads the three pinned BentoML models (imported from the
  MLflow ``champion`` versions by :func:`serving.bento.build_bento`);
- for tests and development: :func:`save_scoring_models` / :func:`load_scoring_models` (a pickle), or the
  environment hooks read by :func:`models_from_environment`.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.runtime.uplift import UPLIFT_MODEL_NAMES, uplift_from

MODEL_NAMES: tuple[str, ...] = ("churn", "upgrade", "clv")
#: Name of each model in the MLflow registry and in the BentoML model store (the three, then the optional uplift models).
REGISTERED_NAMES: dict[str, str] = {name: f"custbase-{name}" for name in (*MODEL_NAMES, *UPLIFT_MODEL_NAMES.values())}

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


def check_columns(frame: pd.DataFrame, model) -> None:
    """Raise :class:`ModelInputError` naming the model's feature columns ``frame`` lacks."""
    missing = [c for c in model.feature_names if c not in frame.columns]
    if missing:
        raise ModelInputError(
            f"the {model.name} model (version {model.version}) needs {len(missing)} feature column(s) absent from the "
            f"{len(frame)}-row frame: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; "
            "build the features with the model's feature set"
        )


def prepare_features(frame: pd.DataFrame, model: ScoringModel) -> pd.DataFrame:
    """The model's feature matrix for ``frame`` (a new frame; ``frame`` is untouched).

    Columns are ``model.feature_names`` in order; categorical columns get ``CategoricalDtype(model.categories[col])``
    (a category unseen in training becomes missing, as LightGBM would treat it); every other column is float.

    Raises
    ------
    ModelInputError
        When ``frame`` lacks any of the model's features; the message names them.
    """
    check_columns(frame, model)
    from serving.runtime.bundle import prepare_features as model_matrix

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
    """A :class:`ScoringModel` over a trained ``serving.runtime.bundle.ModelBundle`` (duck-typed).

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
    """The three models one scoring run uses, and the uplift model of each offer that has one.

    Iterating gives the three (churn, upgrade, clv); ``uplift`` maps an offer (``retention``, ``upgrade``) to its
    :class:`UpliftModel`. Without an uplift model an offer's value uses the policy's rule of thumb.
    """

    churn: ScoringModel
    upgrade: ScoringModel
    clv: ScoringModel
    uplift: Mapping[str, "UpliftModel"] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.churn, self.upgrade, self.clv))

    def versions(self) -> dict[str, str]:
        """``{"churn": "3", "upgrade": "2", "clv": "5", "retention-uplift": "1"}``."""
        return {**{m.name: str(m.version) for m in self}, **{u.name: str(u.version) for u in self.uplift.values()}}

    def uris(self) -> dict[str, str]:
        return {**{m.name: m.model_uri for m in self}, **{u.name: u.model_uri for u in self.uplift.values()}}

    def feature_names(self) -> list[str]:
        """Union of the models' features (the three, then the uplift models'), in first-seen order."""
        return list(dict.fromkeys(name for m in (*self, *self.uplift.values()) for name in m.feature_names))

    def categories(self) -> dict[str, list[str]]:
        """Each categorical feature's categories over all the models, in first-seen order: an uplift model learned
        from the contacts may know fewer of them, and a value unseen by one model scores as missing there."""
        merged: dict[str, list[str]] = {}
        for m in (*self, *self.uplift.values()):
            for column, values in m.categories.items():
                known = merged.setdefault(column, [])
                known.extend(v for v in values if v not in known)
        return merged


def check_models(models: ScoringModels) -> ScoringModels:
    """Refuse a set whose models are not churn, upgrade and clv in that order, or whose uplift models are not keyed
    by their own offer (a swapped model scores silently wrong)."""
    names = tuple(m.name for m in models)
    if names != MODEL_NAMES:
        raise ValueError(f"ScoringModels must hold the churn, upgrade and clv models in that order; got {names}")
    for offer, model in models.uplift.items():
        if offer not in UPLIFT_MODEL_NAMES or getattr(model, "offer", None) != offer:
            raise ValueError(f"ScoringModels.uplift[{offer!r}] must be the {offer} offer's uplift model "
                             f"(offers: {', '.join(UPLIFT_MODEL_NAMES)}); got {getattr(model, 'offer', type(model).__name__)!r}")
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
        raise FileNotFoundError(f"no scoring models at {path}: write them with serving.runtime.models.save_scoring_models")
    return check_models(pickle.loads(path.read_bytes()))


@dataclass(frozen=True)
class ModelRef:
    """One pinned champion: BentoML tag, MLflow URI, registry version and the SHA-256 of its files."""

    name: str
    bento_tag: str
    model_uri: str
    version: str
    sha256: str = ""


class ModelStoreError(RuntimeError):
    """A bento's model is missing from the BentoML store, or its files changed since the build."""


def model_files_sha256(folder: Path) -> str:
    """SHA-256 over every file under ``folder`` (relative path and content, in sorted order)."""
    import hashlib

    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


ModelLoader = Callable[[Path, ModelRef], ScoringModel]


def load_mlflow_model_dir(path: Path, ref: ModelRef) -> ScoringModel:
    """A :class:`ScoringModel` from a downloaded MLflow model folder.

    A custbase training bundle (the pyfunc's ``data/bundle``, or ``bundle/`` of older models) is preferred; a
    plain ``mlflow.lightgbm`` model (``model.lgb``, uncalibrated) is the fallback.
    """
    from serving.runtime.bundle import ModelBundle, find_bundle_folder

    path = Path(path)
    folder = find_bundle_folder(path)
    if folder is not None:
        return BundleModel(ModelBundle.load(folder), version=ref.version, model_uri=ref.model_uri)
    booster_files = sorted(path.rglob("*.lgb"))
    if not booster_files:
        raise FileNotFoundError(f"{path} holds neither a custbase bundle nor a LightGBM model.lgb (model {ref.bento_tag})")
    booster = lgb.Booster(model_file=str(booster_files[0]))
    return BoosterModel(ref.name, ref.version, booster, model_uri=ref.model_uri)


def load_champions_from_bento(refs: Mapping[str, ModelRef], loader: ModelLoader | None = None) -> ScoringModels:
    """Load the pinned models from the BentoML model store (inside a bento: the bento's own models): the three,
    and the uplift model of each offer the bento packed (:func:`load_uplift_from_bento`).

    Parameters
    ----------
    refs
        ``{"churn": ModelRef(...), ...}``, as recorded by :func:`serving.bento.build_bento` in the serving spec.
    loader
        Turns the imported MLflow model folder into a :class:`ScoringModel`; :func:`load_mlflow_model_dir` by default.
    """
    loader = loader or load_mlflow_model_dir
    loaded = {}
    for name in MODEL_NAMES:
        if name not in refs:
            raise KeyError(f"the serving spec names no {name} model; rebuild the bento with `custbase build`")
        loaded[name] = loader(_stored_model_folder(refs[name]), refs[name])
    return check_models(ScoringModels(**loaded, uplift=load_uplift_from_bento(refs)))


def load_uplift_from_bento(refs: Mapping[str, ModelRef]) -> dict[str, "UpliftModel"]:
    """The uplift model of each offer among ``refs`` (``retention-uplift``, ``upgrade-uplift``), from the BentoML
    store, by offer; the three scoring models are not loaded."""
    return {offer: load_uplift_model_dir(_stored_model_folder(refs[name]), refs[name])
            for offer, name in UPLIFT_MODEL_NAMES.items() if name in refs}


def load_uplift_model_dir(path: Path, ref: ModelRef) -> "UpliftModel":
    """The :class:`UpliftModel` of a downloaded MLflow uplift model folder (its custbase bundle)."""
    from serving.runtime.bundle import ModelBundle, find_bundle_folder

    folder = find_bundle_folder(Path(path))
    if folder is None:
        raise ModelStoreError(f"the {ref.name} model {ref.model_uri or ref.bento_tag} holds no custbase bundle: retrain it with "
                              f"`custbase train {ref.name}`, then rebuild the bento with `custbase build`")
    return uplift_model(ModelBundle.load(folder), ref.version, ref.model_uri)


def _stored_model_folder(ref: ModelRef) -> Path:
    """The MLflow model folder of ``ref`` in the BentoML store, checked against the SHA-256 recorded at build."""
    import bentoml

    name = ref.name
    try:
        stored = bentoml.models.get(ref.bento_tag)
    except bentoml.exceptions.NotFound:
        raise ModelStoreError(
            f"the {name} model {ref.bento_tag} of this bento is not in the BentoML store ({os.environ.get('BENTOML_HOME', 'bentoml_home')}): "
            "it was deleted; rebuild the bento with `custbase build`"
        ) from None
    folder = Path(stored.path_of("mlflow_model"))
    if ref.sha256:
        found = model_files_sha256(folder)
        if found != ref.sha256:
            raise ModelStoreError(
                f"the files of the {name} model {ref.bento_tag} changed since the bento was built (SHA-256 "
                f"{found[:12]}... recorded {ref.sha256[:12]}...): refusing to serve; rebuild with `custbase build`"
            )
    return folder


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
        f"{MODELS_PICKLE_ENV} (a pickle from serving.runtime.models.save_scoring_models) or {MODELS_FACTORY_ENV}"
    )


# --------------------------------------------------------------------------------------------- arrays



class _SingleRow:
    """LightGBM's single-row fast prediction for one booster: one customer in microseconds, not a millisecond.

    ``Booster.predict`` builds a predictor, checks and converts its input on every call: about 0.1 ms of Python
    for one row, which an online request pays once per model. The C API's ``...SingleRowFastInit`` prepares that
    once; each call then only runs the trees. Same trees, same iterations (the best iteration when training set
    one, as ``Booster.predict`` does), same output. The prepared configuration holds a buffer, so calls are
    serialised by a lock (uncontended on the service's event loop).
    """

    NORMAL, RAW, CONTRIB = 0, 1, 3

    def __init__(self, booster: lgb.Booster, predict_type: int) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._lib, self._check = _LIB, _safe_call
        self._config = ctypes.c_void_p()
        columns = booster.num_feature()
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(predict_type), ctypes.c_int(0), ctypes.c_int(iterations),
            ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
            ctypes.c_int32(columns), _c_str("num_threads=1"), ctypes.byref(self._config)))
        self._out = np.empty(columns + 1 if predict_type == self.CONTRIB else 1, dtype="float64")
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._length = ctypes.c_int64()
        self._lock = threading.Lock()

    def __call__(self, row: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(row, dtype="float64")
        with self._lock:
            self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._config, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(self._length), self._out_ptr))
            return self._out[: self._length.value].copy()

    def __del__(self) -> None:
        if getattr(self, "_config", None) is not None and self._config.value:
            self._lib.LGBM_FastConfigFree(self._config)


#: Single-row predictors by booster and prediction type, built on first use and gone with their booster.
_SINGLE_ROW: "weakref.WeakKeyDictionary[lgb.Booster, dict[int, _SingleRow]]" = weakref.WeakKeyDictionary()


def _single_row(booster: lgb.Booster, predict_type: int) -> _SingleRow:
    by_type = _SINGLE_ROW.setdefault(booster, {})
    if predict_type not in by_type:
        by_type[predict_type] = _SingleRow(booster, predict_type)
    return by_type[predict_type]


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """A model's feature layout, and how rows become its matrix.

    The matrix has the model's features in order, numbers as float64 and each categorical as its code in the
    training categories (NaN when missing or unseen): exactly what LightGBM makes of a pandas ``category``
    frame, so boosters that take codes (:func:`serving.runtime.bundle.numeric_booster`) predict and explain
    identically to the originals. :class:`MatrixModel` and the uplift models build on it.
    """

    name: str
    version: str
    feature_names: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def codes(self) -> dict[str, dict[str, int]]:
        return self._codes  # type: ignore[attr-defined]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_codes", {c: {v: i for i, v in enumerate(cats)} for c, cats in self.categories.items()})
        object.__setattr__(self, "_categorical", np.array([n in self.categories for n in self.feature_names], dtype=bool))
        object.__setattr__(self, "_layout", (tuple(self.feature_names), tuple(sorted((c, tuple(v)) for c, v in self.categories.items()))))

    @property
    def layout(self) -> tuple:
        """Features and categories: two models with the same layout have the same matrix for the same rows."""
        return self._layout  # type: ignore[attr-defined]

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The model matrix of ``frame`` (vectorised; the batch path and large requests)."""
        check_columns(frame, self)
        X = np.empty((len(frame), len(self.feature_names)), dtype="float64")
        numeric = [j for j, name in enumerate(self.feature_names) if name not in self.categories]
        names = [self.feature_names[j] for j in numeric]
        dtypes = frame.dtypes
        if names and all(pd.api.types.is_numeric_dtype(dtypes[n]) or pd.api.types.is_bool_dtype(dtypes[n]) for n in names):
            # One block copy for the numbers (per-column pandas work dominated large batches).
            X[:, numeric] = frame.loc[:, names].to_numpy(dtype="float64", na_value=np.nan)
            done = set(numeric)
        else:
            done = set()
        for j, name in enumerate(self.feature_names):
            if j in done:
                continue
            values = frame[name]
            if name in self.categories:
                categories = list(self.categories[name])
                if isinstance(values.dtype, pd.CategoricalDtype) and list(values.cat.categories) == categories:
                    codes = values.cat.codes.to_numpy()
                else:
                    # As training's prepare_features: compare as text, unseen -> missing.
                    text = values.astype("object").astype("str").where(values.notna(), None)
                    codes = pd.Categorical(text, categories=categories).codes
                X[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                X[:, j] = pd.to_numeric(values, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
        return X

    def encode_records(self, records: list[Mapping[str, Any]]) -> np.ndarray:
        """The model matrix of a few records (dicts), with no pandas: the per-request path.

        Numbers become float (None -> NaN); categoricals their code (compared as text, unseen -> NaN), as
        :meth:`encode_frame` does, so both give the same matrix.
        """
        X = np.empty((len(records), len(self.feature_names)), dtype="float64")
        codes = self.codes
        for i, record in enumerate(records):
            row = X[i]
            for j, name in enumerate(self.feature_names):
                value = record.get(name)
                if value is None:
                    row[j] = np.nan
                elif name in codes:
                    code = codes[name].get(str(value))
                    row[j] = np.nan if code is None else code
                else:
                    row[j] = float(value)
        return X

    def value(self, X: np.ndarray, i: int, j: int) -> Any:
        """The feature value behind cell ``(i, j)`` as the customer's record has it (category text, float or None)."""
        v = X[i, j]
        if np.isnan(v):
            return None
        if self._categorical[j]:  # type: ignore[attr-defined]
            return self.categories[self.feature_names[j]][int(v)]
        return float(v)

    def to_frame(self, X: np.ndarray) -> pd.DataFrame:
        """The pandas model matrix of ``X`` (categoricals as ``category``): for models without exposed boosters."""
        columns = {}
        for j, name in enumerate(self.feature_names):
            if name in self.categories:
                codes = np.where(np.isnan(X[:, j]), -1, X[:, j]).astype("int64")
                columns[name] = pd.Categorical.from_codes(codes, categories=list(self.categories[name]))
            else:
                columns[name] = X[:, j]
        return pd.DataFrame(columns)


@dataclass(frozen=True, eq=False)
class MatrixModel(FeatureMatrix):
    """One model as arrays: what the per-request fast path and the batch job score with (its matrix:
    :class:`FeatureMatrix`).

    Attributes
    ----------
    boosters
        ``(booster,)`` or, for the CLV hurdle model, ``(occurrence, severity)`` whose predictions multiply.
    explained
        The booster whose ``pred_contrib`` gives the reason codes.
    calibrate
        Raw -> calibrated probability on arrays, or None.
    fallback
        A model that does not expose its boosters scores through its own ``predict`` on a frame (slow path).
    """

    boosters: tuple[lgb.Booster, ...] = ()
    explained: lgb.Booster | None = None
    calibrate: Callable[[np.ndarray], np.ndarray] | None = None
    fallback: ScoringModel | None = None

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Calibrated probability or CLV for the rows of the model matrix ``X``."""
        if len(X) == 0:
            return np.zeros(0)
        if self.fallback is not None:
            return np.asarray(self.fallback.predict(self.to_frame(X)), dtype="float64")
        if len(X) == 1:  # the online path: one customer
            raw = _single_row(self.boosters[0], _SingleRow.NORMAL)(X[0])
            for other in self.boosters[1:]:
                raw = raw * _single_row(other, _SingleRow.NORMAL)(X[0])
        else:
            raw = self.boosters[0].predict(X, num_threads=num_threads)
            for other in self.boosters[1:]:
                raw = raw * other.predict(X, num_threads=num_threads)
        raw = np.asarray(raw, dtype="float64")
        return raw if self.calibrate is None else np.asarray(self.calibrate(raw), dtype="float64")

    def contributions(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """``pred_contrib`` of the explained booster: shape ``(n, features + 1)``, the last column the bias."""
        if len(X) == 0:
            return np.zeros((0, len(self.feature_names) + 1))
        if len(X) == 1:
            return _single_row(self.explained, _SingleRow.CONTRIB)(X[0]).reshape(1, -1)
        return np.asarray(self.explained.predict(X, pred_contrib=True, num_threads=num_threads), dtype="float64")


@dataclass(frozen=True, eq=False)
class UpliftModel(FeatureMatrix):
    """One offer's uplift model as arrays (:func:`serving.runtime.uplift.uplift_from` on boosters that take codes).

    ``name`` is the registered name without ``custbase-`` (``retention-uplift``), ``offer`` the offer it prices,
    ``boosters`` the meta-learner's parts by role, ``propensity`` the X-learner's blend weight.
    """

    offer: str = ""
    boosters: Mapping[str, lgb.Booster] = field(default_factory=dict)
    propensity: float = 0.5
    model_uri: str = ""

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Uplift of each row of the model matrix ``X`` (one row: LightGBM's single-row fast path)."""
        if len(X) == 0:
            return np.zeros(0)
        if len(X) == 1:
            row = X[0]
            return uplift_from(self.boosters, self.propensity,
                               lambda booster, raw: _single_row(booster, _SingleRow.RAW if raw else _SingleRow.NORMAL)(row))
        return uplift_from(self.boosters, self.propensity,
                           lambda booster, raw: booster.predict(X, raw_score=raw, num_threads=num_threads))


def uplift_model(bundle, version: str, model_uri: str = "") -> UpliftModel:
    """The :class:`UpliftModel` of a trained uplift ``serving.runtime.bundle.ModelBundle`` (``kind`` ``uplift_*``)."""
    offer = bundle.metadata.get("offer")
    if not str(bundle.kind).startswith("uplift_") or offer not in UPLIFT_MODEL_NAMES:
        raise ValueError(f"model {bundle.model!r} (kind {bundle.kind!r}) is not an uplift model of an offer "
                         f"({', '.join(UPLIFT_MODEL_NAMES)})")
    names = list(bundle.feature_columns)
    return UpliftModel(
        name=UPLIFT_MODEL_NAMES[offer], version=str(version), feature_names=tuple(names),
        categories={c: tuple(str(v) for v in cats) for c, cats in bundle.categories.items()},
        offer=offer, boosters={role: _codes_booster(b, names) for role, b in bundle.boosters.items()},
        propensity=float(bundle.metadata.get("propensity", 0.5)), model_uri=model_uri,
    )


def _codes_booster(booster: lgb.Booster, feature_names: list[str]) -> lgb.Booster:
    if list(booster.feature_name()) != list(feature_names):
        raise ModelInputError(f"booster features {booster.feature_name()[:5]} ... are not in the model's feature order {feature_names[:5]} ...")
    from serving.runtime.bundle import numeric_booster

    return numeric_booster(booster)


def matrix_model(model: ScoringModel) -> MatrixModel:
    """The array form of ``model`` (boosters copied once to take category codes)."""
    names = list(model.feature_names)
    categories = {c: tuple(str(v) for v in cats) for c, cats in (model.categories or {}).items()}
    common = dict(name=model.name, version=str(model.version), feature_names=tuple(names), categories=categories)
    if isinstance(model, BundleModel):
        bundle = model.bundle
        parts = [bundle.boosters[k] for k in (("main",) if "main" in bundle.boosters else ("occurrence", "severity"))]
        boosters = tuple(_codes_booster(b, names) for b in parts)
        calibrate = bundle.calibrator.transform if bundle.calibrator is not None else None
        return MatrixModel(**common, boosters=boosters, explained=boosters[0], calibrate=calibrate)
    if isinstance(model, BoosterModel):
        booster = _codes_booster(model.booster, names)
        calibrate = None
        if model.calibrator is not None:
            calibrate = next((getattr(model.calibrator, m) for m in ("transform", "predict") if hasattr(model.calibrator, m)), model.calibrator)
        return MatrixModel(**common, boosters=(booster,), explained=booster, calibrate=calibrate)
    explained = _codes_booster(model.booster, names)
    return MatrixModel(**common, boosters=(explained,), explained=explained, fallback=model)


@dataclass(frozen=True, eq=False)
class MatrixModels:
    """The three :class:`MatrixModel` of one :class:`ScoringModels`, and its uplift models by offer."""

    churn: MatrixModel
    upgrade: MatrixModel
    clv: MatrixModel
    uplift: Mapping[str, UpliftModel] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.churn, self.upgrade, self.clv))


_MATRIX_CACHE: dict[int, tuple[ScoringModels, MatrixModels]] = {}


def matrix_models(models: ScoringModels) -> MatrixModels:
    """The array form of ``models``, built once per :class:`ScoringModels` object (booster copies cost ~10 ms)."""
    cached = _MATRIX_CACHE.get(id(models))
    if cached is not None and cached[0] is models:
        return cached[1]
    built = MatrixModels(*(matrix_model(m) for m in models), uplift=dict(models.uplift))
    if len(_MATRIX_CACHE) >= 8:
        _MATRIX_CACHE.clear()
    _MATRIX_CACHE[id(models)] = (models, built)
    return built
