"""The Berka data end to end: import -> validate -> features and labels -> train churn (dormancy) -> score.

Runs only where the PKDD'99 files are (``../shared/data/berka`` next to the repository, or ``CUSTBASE_BERKA_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_importers import BERKA

from custbase.config import load_config

REPO = Path(__file__).resolve().parents[1]
BERKA_CONFIG = REPO / "features" / "importers" / "berka.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BERKA.is_dir(), reason=f"Berka data not found at {BERKA} (set CUSTBASE_BERKA_DIR to its folder)"),
]


def test_berka_import_features_train_and_score(tmp_path):
    from features.build import build_customer_months
    from features.feature_set import read_feature_table
    from features.importers import import_berka
    from features.validate import validate_raw
    from serving.runtime.models import BundleModel
    from serving.runtime.bundle import load_bundle
    from training.jobs import train_model

    base = load_config(BERKA_CONFIG)
    config = base.model_copy(update={
        "paths": base.paths.model_copy(update={"mlruns_dir": tmp_path / "mlruns"}),
        "training": base.training.model_copy(update={"num_threads": 1, "log_figures": False}),
    })
    raw = tmp_path / "berka"
    summary = import_berka(BERKA, raw, config)
    assert summary.ok
    assert validate_raw(raw, config).ok
    assert (raw / "coverage.parquet").exists()

    # The dense 1993-94 slice: coverage ends 1994-03-31, and a churn label reads H + k - 1 = 5 months after as_of
    # (an exit is dated at the first of its k quiet months), so churn labels exist for as_of 1993-01 .. 1993-10.
    built = build_customer_months(raw, tmp_path / "months.parquet", config, end="1994-03", progress=False)
    assert built.customers == 1_229
    assert str(built.as_of_max) == "1994-03-31"
    frame, _ = read_feature_table(tmp_path / "months.parquet")
    churn = frame.loc[frame.is_dormant == 0, "churn_3m"].dropna()
    assert frame.loc[frame.churn_3m.notna(), "as_of"].max().strftime("%Y-%m") == "1993-10"
    assert 0.01 < churn.mean() < 0.10  # berka.yaml's dormancy thresholds give positives, but few

    result = train_model("churn", config, features_path=tmp_path / "months.parquet", trials=2, progress=False)
    assert result.version == "1"
    assert [str(m) for m in result.split.test_months] == ["1993-09", "1993-10"]
    assert result.evaluation.test["roc_auc"] > 0.8

    # Score the latest month with the registered bundle, through the serving model wrapper.
    model = BundleModel(bundle=load_bundle(f"models:/custbase-churn/{result.version}"), version=result.version)
    latest = frame[frame.as_of == frame.as_of.max()]
    p = model.predict(latest)
    assert p.shape == (len(latest),) and np.all((p >= 0) & (p <= 1))
    assert p.std() > 0
