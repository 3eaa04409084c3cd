"""Everything serving needs to score with a trained model, as one object.

A :class:`ModelBundle` holds the feature order, the categories of each categorical column, the LightGBM
booster(s) (one, or two for the CLV hurdle model), and the probability calibrator. It is saved as a folder of
plain files (``bundle.json`` + one LightGBM text model per booster) inside the logged MLflow model (its pyfunc
data, ``data/bundle``: see :mod:`serving.runtime.pyfunc`), so ``load_bundle("models:/custbase-churn@champion")``
is all a scorer needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.runtime.calibration import Calibrator

BUNDLE_FOLDER = "bundle"
#: Where a logged MLflow model holds its bundle: the pyfunc's data folder, or (models logged before the pyfunc,
#: and the uplift models) a ``bundle`` folder beside a LightGBM flavour.
BUNDLE_PATHS: tuple[str, ...] = (f"data/{BUNDLE_FOLDER}", BUNDLE_FOLDER)
BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1


class BundleError(ValueError):
    """A bundle cannot be loaded, or a frame does not fit it."""


@dataclass
class ModelBundle:
    """A trained model ready to score customer-month rows.

    Attributes
    ----------
    model
        ``churn``, ``upgrade`` or ``clv``.
    kind
        ``binary`` (probability, calibrated), ``clv_tweedie`` (one Tweedie booster) or ``clv_hurdle``
        (``occurrence`` P(value > 0) times ``severity`` E[value | value > 0]).
    feature_columns
        Feature names in the booster's order.
    categories
        For each categorical column, its categories in training order (unseen values score as missing).
    boosters
        ``{"main": ...}`` or ``{"occurrence": ..., "severity": ...}``.
    calibrator
        Raw -> calibrated probability for binary models; None for CLV.
    metadata
        Feature set, label, split months, run id, ... (JSON values).
    """

    model: str
    kind: str
    feature_columns: list[str]
    categories: dict[str, list[str]]
    boosters: dict[str, lgb.Booster]
    calibrator: Calibrator | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def booster(self) -> lgb.Booster:
        """The booster to explain with reason codes: the single booster, or the hurdle model's occurrence part."""
        return self.boosters["main"] if "main" in self.boosters else self.boosters["occurrence"]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature matrix for ``frame``: columns in training order, categoricals with training categories."""
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise BundleError(
                f"the {self.model} model needs {len(missing)} feature columns absent from the {len(frame)}-row frame: "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; build features with the same feature set"
            )
        return prepare_features(frame, self.feature_columns, self.categories)

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated output: raw probability, or CLV."""
        X = self.prepare(frame)
        if self.kind == "clv_hurdle":
            return self.boosters["occurrence"].predict(X) * self.boosters["severity"].predict(X)
        return self.boosters["main"].predict(X)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability (binary) or predicted CLV (currency), one value per row of ``frame``."""
        raw = self.predict_raw(frame)
        return self.calibrator.transform(raw) if self.calibrator is not None else raw

    def save(self, folder: Path) -> Path:
        """Write the bundle as plain files into ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            (folder / f"{name}.lgb.txt").write_text(booster.model_to_string())
        spec = {
            "format": BUNDLE_FORMAT,
            "model": self.model,
            "kind": self.kind,
            "feature_columns": self.feature_columns,
            "categories": self.categories,
            "boosters": sorted(self.boosters),
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
            "metadata": self.metadata,
        }
        (folder / BUNDLE_FILE).write_text(json.dumps(spec, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> "ModelBundle":
        """Read a bundle folder written by :meth:`save`, or the MLflow model folder that holds one."""
        found = find_bundle_folder(folder)
        if found is None:
            raise BundleError(f"{folder} holds no {BUNDLE_FILE}: not a custbase model bundle")
        folder = found
        spec = json.loads((folder / BUNDLE_FILE).read_text())
        boosters = {name: lgb.Booster(model_str=(folder / f"{name}.lgb.txt").read_text()) for name in spec["boosters"]}
        calibrator = Calibrator.from_dict(spec["calibrator"]) if spec.get("calibrator") else None
        return cls(spec["model"], spec["kind"], spec["feature_columns"], spec["categories"], boosters, calibrator, spec.get("metadata", {}))


def find_bundle_folder(folder: Path) -> Path | None:
    """The bundle folder at ``folder`` or inside the MLflow model folder ``folder`` (:data:`BUNDLE_PATHS`), or None."""
    folder = Path(folder)
    for candidate in (folder, *(folder / path for path in BUNDLE_PATHS)):
        if (candidate / BUNDLE_FILE).exists():
            return candidate
    return None


def prepare_features(frame: pd.DataFrame, feature_columns: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """The model matrix: ``feature_columns`` in order, categorical ones with the training categories (a new frame).

    The one definition used by training, the logged model and serving. A category unseen in training becomes
    missing, as LightGBM treats it; every other column becomes float64.
    """
    columns: dict[str, pd.Series] = {}
    for name in feature_columns:
        values = frame[name]
        if name in categories:
            dtype = pd.CategoricalDtype(list(categories[name]))
            if values.dtype == dtype:  # already prepared (serving prepares once, then the bundle predicts)
                columns[name] = values
                continue
            # Compare as text: codes stored as numbers or as another categorical must match the training strings.
            text = values.astype("object").astype("str").where(values.notna(), None)
            columns[name] = pd.Series(pd.Categorical(text, dtype=dtype), index=frame.index)
        elif values.dtype == "float64":
            columns[name] = values
        else:
            columns[name] = pd.to_numeric(values, errors="raise").astype("float64")
    return pd.DataFrame(columns, index=frame.index)


def encode_categories(X: pd.DataFrame) -> pd.DataFrame:
    """A float64 copy of ``X`` with each category column replaced by its codes (-1 -> NaN)."""
    out = X.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].cat.codes.astype("float64").where(out[column].notna())
    return out.astype("float64")


def numeric_booster(booster: lgb.Booster) -> lgb.Booster:
    """A copy of ``booster`` that takes category codes instead of pandas categoricals (same trees).

    LightGBM stores the training frame's categories in the model and then insists on pandas ``category``
    columns; the copy forgets them, so a numeric frame from :func:`encode_categories` scores identically.
    """
    copy = lgb.Booster(model_str=booster.model_to_string())
    copy.pandas_categorical = None
    return copy


def load_bundle(model_uri: str | Path) -> ModelBundle:
    """Load a bundle from an MLflow model URI (``models:/custbase-churn@champion``, ``runs:/...``) or a local folder."""
    path = Path(str(model_uri))
    if path.exists():  # local: a local folder loads without touching MLflow
        return ModelBundle.load(path)
    import mlflow

    uri = str(model_uri).rstrip("/")
    error: Exception | None = None
    for inside in BUNDLE_PATHS:
        try:
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{inside}"))
        except (OSError, mlflow.exceptions.MlflowException) as err:  # not in this layout: try the next
            error = err
            continue
        if (path / BUNDLE_FILE).exists():
            return ModelBundle.load(path)
    raise BundleError(f"{model_uri} holds no custbase bundle (looked in {', '.join(BUNDLE_PATHS)}): {error}") from error
