"""The churn evaluation's slice of customers still active at as_of."""

import numpy as np
import pandas as pd

from training.train import _active_slice


def test_active_slice_scores_only_customers_active_at_as_of():
    # Rows 0-3 acted this month, rows 4-5 had gone quiet. The "model" ranks the quiet churner first and is
    # uninformative among the active rows (equal scores), so its active-slice ROC-AUC must be exactly 0.5.
    test = pd.DataFrame({"months_since_last_activity": [0, 0, 0, 0, 2, 2]})
    y = np.array([1, 0, 1, 0, 1, 0])
    model = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.0])
    baseline = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.5])
    out = _active_slice(test, y, model, baseline, oracle=None)
    assert out["rows"] == 4 and out["positives"] == 2
    assert out["roc_auc"] == 0.5 and out["baseline_roc_auc"] == 1.0
    assert "oracle_roc_auc" not in out


def test_no_slice_without_both_classes():
    test = pd.DataFrame({"months_since_last_activity": [0, 0, 3]})
    assert _active_slice(test, np.array([0, 0, 1]), np.zeros(3), np.zeros(3), oracle=None) == {}
