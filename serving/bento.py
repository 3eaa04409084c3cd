"""``custbase build``: the three pinned champion models (and the champion uplift models, when registered), the service,
the feature set and the policy, as one bento.

Builds offline: ``python.lock_packages`` is off (locking would query the package index), BentoML tracking is
off, and BentoML's home defaults to ``./bentoml_home`` in the project unless ``BENTOML_HOME`` is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from serving.runtime.models import (
    MODEL_NAMES,
    REGISTERED_NAMES,
    ModelRef,
    ScoringModels,
    check_models,
    load_mlflow_model_dir,
    load_uplift_model_dir,
    model_files_sha256,
)
from serving.runtime.uplift import UPLIFT_MODEL_NAMES
from serving.runtime.policy import Policy
from serving.runtime.spec import DEFAULT_SNAPSHOT, SPEC_FILE, spec_from_models, write_spec

BENTO_NAME = "custbase"
SERVICE = "serving.service:CustbaseScoring"
#: What the bento ships: the service needs the runtime layer, the features it reads and the configuration, never
#: training code (tests/test_architecture.py checks the imports).
PACKAGES = ("custbase", "features", "serving")
#: Runtime requirements of the bento, pinned to the versions installed here.
REQUIREMENTS = ("bentoml", "lightgbm", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "scikit-learn", "mlflow", "duckdb", "typer", "tqdm")


def configure_bentoml_home(home: Path | None = None) -> Path:
    """Point BentoML at the project's store (``BENTOML_HOME`` wins) and turn tracking off; call before using bentoml."""
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    path = Path(os.environ.get("BENTOML_HOME") or home or "bentoml_home").resolve()
    os.environ["BENTOML_HOME"] = str(path)
    for folder in ("", "tmp", "bentos", "models"):
        (path / folder).mkdir(parents=True, exist_ok=True)
    from bentoml._internal.configuration.containers import BentoMLContainer

    if BentoMLContainer.bentoml_home.get() != str(path):
        BentoMLContainer.bentoml_home.set(str(path))
        # The stores are memoised from the first home: forget them so they follow the new one in this process.
        from simple_di import providers

        for name in ("bento_store_dir", "model_store_dir", "env_store_dir", "bento_store", "model_store"):
            provider = getattr(BentoMLContainer, name, None)
            if isinstance(provider, providers.SingletonFactory):
                provider._cache = providers.sentinel
    return path


def _version_of(uri: str) -> str:
    found = re.fullmatch(r"models:/[^/@]+/(\d+)", uri)
    if not found:
        raise ValueError(f"model URI {uri!r} is not pinned: use models:/<name>/<version> (never @alias or latest)")
    return found[1]


def import_champion(name: str, uri: str) -> ModelRef:
    """Import one pinned MLflow model into the BentoML store (reused when already imported); labels record its URI."""
    import bentoml

    from mlflow import MlflowClient

    version = _version_of(uri)
    store_name = REGISTERED_NAMES[name]
    # Version numbers restart with every MLflow store (a team server, a wiped mlruns/), so a stored model is
    # reused only when the run that produced it is the same, not merely the same "models:/x/1".
    run_id = MlflowClient().get_model_version(store_name, version).run_id or ""
    try:
        stored_versions = bentoml.models.list(store_name)
    except bentoml.exceptions.NotFound:
        stored_versions = []
    for existing in stored_versions:
        labels = existing.info.labels
        if labels.get("mlflow_uri") == uri and labels.get("mlflow_run_id") == run_id:
            return ModelRef(name, str(existing.tag), uri, version)
    stored = bentoml.mlflow.import_model(
        store_name, model_uri=uri,
        labels={"mlflow_uri": uri, "mlflow_version": version, "mlflow_run_id": run_id, "model": name},
        signatures={"predict": {"batchable": True}},
    )
    return ModelRef(name, str(stored.tag), uri, version)


def _requirements() -> list[str]:
    pins = []
    for package in REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def build_bento(config, model_uris: dict[str, str], *, policy: Policy | None = None, feature_set: dict | None = None,
                snapshot_path: str | None = None, bentoml_home: Path | None = None, project_dir: Path | None = None) -> str:
    """Import the pinned champions (the three, and the uplift models given) and build the bento; returns its tag
    (``custbase:<version>``).

    Parameters
    ----------
    config
        The custbase Config (its ``policy`` field is used when ``policy`` is None and the field exists).
    model_uris
        ``{"churn": "models:/custbase-churn/3", "upgrade": ..., "clv": ...}``: pinned versions only; optionally
        ``"retention-uplift"`` / ``"upgrade-uplift"``, whose uplift then prices the offers in every score.
    feature_set
        The feature set spec (name, version, columns) packed with the bento.
    snapshot_path
        Recorded for information only: the service finds the snapshot through ``CUSTBASE_SNAPSHOT`` or the
        configuration where it starts, the same setting ``custbase score`` refreshes (no path baked at build).
    project_dir
        Source of the packages copied into the bento (the repository root by default).
    """
    configure_bentoml_home(bentoml_home)
    import bentoml

    missing = [n for n in MODEL_NAMES if n not in model_uris]
    if missing:
        raise ValueError(f"build_bento needs pinned URIs for {missing}")
    unknown = set(model_uris) - set(MODEL_NAMES) - set(UPLIFT_MODEL_NAMES.values())
    if unknown:
        raise ValueError(f"build_bento packs {', '.join(MODEL_NAMES)} and the uplift models {', '.join(UPLIFT_MODEL_NAMES.values())}; "
                         f"not {sorted(unknown)}")
    policy = policy or getattr(config, "policy", None) or Policy()
    refs = {name: import_champion(name, uri) for name, uri in model_uris.items()}
    loaded, uplift, digests = {}, {}, {}
    for name, ref in refs.items():
        folder = Path(bentoml.models.get(ref.bento_tag).path_of("mlflow_model"))
        digests[name] = model_files_sha256(folder)
        if name in MODEL_NAMES:
            loaded[name] = load_mlflow_model_dir(folder, ref)
        else:
            model = load_uplift_model_dir(folder, ref)
            uplift[model.offer] = model
    models = check_models(ScoringModels(**loaded, uplift=uplift))
    spec = spec_from_models(models, policy, feature_set=feature_set, snapshot_path=str(snapshot_path or DEFAULT_SNAPSHOT),
                            bento_tags={n: r.bento_tag for n, r in refs.items()}, sha256=digests)

    project = Path(project_dir or Path(__file__).resolve().parents[1])
    ctx = Path(tempfile.mkdtemp(prefix="bento-ctx-", dir=os.environ["BENTOML_HOME"]))
    try:
        for package in PACKAGES:
            if (project / package).is_dir():
                shutil.copytree(project / package, ctx / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        write_spec(spec, ctx / SPEC_FILE)
        (ctx / "bento_spec" / "policy.json").write_text(policy.model_dump_json(indent=2))
        (ctx / "bento_spec" / "feature_set.json").write_text(json.dumps(feature_set or {"columns": models.feature_names()}, indent=2))
        labels = {"project": "custbase"}
        for name, ref in refs.items():
            labels[f"{name}_mlflow_uri"] = ref.model_uri
            labels[f"{name}_version"] = ref.version
        bento = bentoml.build(
            SERVICE,
            name=BENTO_NAME,
            build_ctx=str(ctx),
            include=[*(f"{p}/**/*.py" for p in PACKAGES), "bento_spec/*.json"],
            labels=labels,
            description="custbase churn, upgrade and CLV scoring with segments, actions, offers priced by uplift and reasons",
            python={"packages": _requirements(), "lock_packages": False},
            models=[ref.bento_tag for ref in refs.values()],
            args={"serving_spec": SPEC_FILE},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return str(bento.tag)
