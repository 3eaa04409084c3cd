"""The registered model as a plain MLflow pyfunc: customer-month rows in, scores out.

Any MLflow client scores a custbase model without custbase installed::

    import mlflow
    model = mlflow.pyfunc.load_model("models:/custbase-churn@champion")
    model.predict(customer_months)   # a frame as `custbase features` writes it; one score per row

The logged model is MLflow's "custom loader module" form of a pyfunc (no pickle, no code run at load but this
module): its ``MLmodel`` names ``loader_module: serving.runtime.pyfunc`` and ``data: data/bundle``; the folder holds

- ``data/bundle/``: the :class:`~serving.runtime.bundle.ModelBundle` (``bundle.json`` and the LightGBM text
  models): preparation, category encoding and calibration travel as data;
- ``code/serving/``: :data:`CODE_FILES`, the whole import closure of this module inside custbase (numpy, pandas,
  lightgbm and scikit-learn come from ``requirements.txt``). MLflow puts ``code/`` first on ``sys.path`` before
  importing the loader module.

custbase's own loaders (:func:`serving.runtime.bundle.load_bundle`, the bento) read the same ``data/bundle``.
The input signature lists the model's feature columns with the types of the customer-month table (see
:func:`input_schema`); MLflow drops other columns (``customer_id``, ``as_of``, labels) before ``predict``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from serving.runtime.bundle import ModelBundle

LOADER_MODULE = "serving.runtime.pyfunc"
#: Files a logged model carries as its code (relative to the repository root): this module's import closure
#: inside custbase. A test imports the loader from these files alone and checks nothing else is needed.
CODE_FILES: tuple[str, ...] = (
    "serving/__init__.py",
    "serving/runtime/__init__.py",
    "serving/runtime/bundle.py",
    "serving/runtime/calibration.py",
    "serving/runtime/pyfunc.py",
)
#: MLflow column type of each feature-set dtype (``features.feature_set.FEATURE_DTYPES``).
MLFLOW_TYPES: dict[str, str] = {"int64": "long", "float64": "double", "str": "string"}

BINARY_KINDS = ("binary",)
CLV_KINDS = ("clv_tweedie", "clv_hurdle")


class BundlePyfunc:
    """The object ``mlflow.pyfunc.load_model`` wraps: a :class:`ModelBundle` whose ``predict`` MLflow calls."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Calibrated probability (churn, upgrade) or CLV in currency (clv) per row: the bundle's own ``predict``."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return np.asarray(self.bundle.predict(frame), dtype="float64")

    def get_raw_model(self) -> ModelBundle:
        """The bundle (``PyFuncModel.get_raw_model()``)."""
        return self.bundle


def _load_pyfunc(data_path: str) -> BundlePyfunc:
    """MLflow's entry point for a loader-module pyfunc: ``data_path`` is the model's ``data/bundle`` folder."""
    return BundlePyfunc(ModelBundle.load(Path(data_path)))


def scorable(bundle: ModelBundle) -> bool:
    """True when :meth:`ModelBundle.predict` scores this kind (churn, upgrade, CLV; not the uplift learners)."""
    return bundle.kind in BINARY_KINDS + CLV_KINDS


def write_code(folder: Path, project_root: Path | None = None) -> Path:
    """Copy :data:`CODE_FILES` into ``folder`` (as ``folder/serving/...``); returns ``folder/serving`` for ``code_paths``."""
    root = Path(project_root or Path(__file__).resolve().parents[2])
    for name in CODE_FILES:
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, target)
    return Path(folder) / "serving"


def column_types(bundle: ModelBundle, table_dtypes: Mapping[str, object], declared: Mapping[str, str]) -> dict[str, str]:
    """MLflow type of each feature column: the feature set's declaration, else the training table's dtype.

    Parameters
    ----------
    table_dtypes
        Column -> pandas dtype of the table the model was trained on (as its reader returns it).
    declared
        Column -> ``int64`` / ``float64`` / ``str`` of the model's feature set (empty for a table of another set).

    A declared integer the training table held as float (it had missing values: pandas has no missing int)
    becomes ``double``, so the table the model learned from is always accepted. MLflow refuses int64 for a
    ``double`` column and floats for a ``long`` one, so an int column must stay int in the tables scored.
    """
    types = {}
    for name in bundle.feature_columns:
        dtype = table_dtypes.get(name)
        kind = MLFLOW_TYPES.get(declared.get(name, "")) or _observed_type(dtype, name in bundle.categories)
        if kind == "long" and dtype is not None and pd.api.types.is_float_dtype(dtype):
            kind = "double"
        types[name] = kind
    return types


def _observed_type(dtype, categorical: bool) -> str:
    if dtype is None:
        return "string" if categorical else "double"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    return "string"


def model_signature(types: Mapping[str, str]):
    """The ``ModelSignature``: one required column per feature (in model order), one unnamed double out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in types.items()]), outputs=Schema([ColSpec("double")]))
