"""The evaluation figures have the expected parts and save to PNG."""

import lightgbm as lgb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from training.plots import binary_figures, clv_figures, shap_figures


@pytest.fixture
def binary_case():
    rng = np.random.default_rng(5)
    p = rng.beta(1, 8, 2000)
    y = (rng.random(2000) < p).astype(int)
    return y, p


def _save_all(figures, folder):
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=60)
        plt.close(fig)
        assert path.stat().st_size > 1000, name


def test_binary_figures_parts(binary_case, tmp_path):
    y, p = binary_case
    baseline = np.clip(p + np.random.default_rng(6).normal(0, 0.1, len(p)), 0, 1)
    curve = [(share, 100 * share * (1 - share)) for share in np.linspace(0, 1, 11)]
    figures = binary_figures(y, p, p_uncalibrated=np.sqrt(p), baseline=baseline, title="custbase-churn v3, test 2025-07..2025-09",
                             profit_curves={"model": curve, "baseline": [(s_, v / 2) for s_, v in curve]})
    assert set(figures) == {"gain_lift", "roc_curve", "deciles", "calibration", "pr_curve", "profit_curve"}
    for figure in figures.values():  # every PNG names the model, version and test months
        assert figure.get_suptitle() == "custbase-churn v3, test 2025-07..2025-09"
    gain, lift = figures["gain_lift"].axes
    assert [line.get_label() for line in gain.lines] == ["model", "baseline", "random", "perfect"]
    roc_labels = [line.get_label() for line in figures["roc_curve"].axes[0].lines]
    assert roc_labels[0].startswith("model (ROC-AUC") and roc_labels[1].startswith("baseline (ROC-AUC")
    assert len(figures["deciles"].axes[0].patches) == 20  # predicted and observed for 10 deciles
    assert "best 25 contacting 50.0%" in figures["profit_curve"].axes[0].lines[0].get_label()  # 100 x 0.5 x 0.5
    assert len(lift.patches) == 10  # one bar per decile
    heights = [bar.get_height() for bar in lift.patches]
    assert heights[0] > 1 > heights[-1]  # informative scores: top decile above base rate, bottom below
    assert len(figures["calibration"].axes[0].lines) == 3  # before, after, diagonal
    assert len(figures["pr_curve"].axes[0].lines) == 2  # curve, base rate
    _save_all(figures, tmp_path)


def test_calibration_without_uncalibrated_has_one_curve(binary_case):
    y, p = binary_case
    figures = binary_figures(y, p)
    assert len(figures["calibration"].axes[0].lines) == 2
    for fig in figures.values():
        plt.close(fig)


def test_clv_figures_parts(tmp_path):
    rng = np.random.default_rng(2)
    y_pred = rng.gamma(1.5, 100, 1000)
    y_true = np.where(rng.random(1000) < 0.3, 0.0, y_pred * rng.lognormal(0, 0.5, 1000))
    figures = clv_figures(y_true, y_pred, baseline=y_pred + rng.normal(0, 50, 1000), title="custbase-clv v1")
    assert set(figures) == {"deciles", "lorenz"}
    assert figures["deciles"].axes[0].get_yscale() == "log"  # the low deciles stay visible
    assert len(figures["deciles"].axes[0].patches) == 20  # predicted and actual for 10 deciles
    predicted_bars = [bar.get_height() for bar in figures["deciles"].axes[0].patches[:10]]
    assert predicted_bars == sorted(predicted_bars, reverse=True)  # decile 1 = highest predictions
    assert [line.get_label() for line in figures["lorenz"].axes[0].lines] == ["model", "baseline", "perfect", "random"]
    _save_all(figures, tmp_path)


def test_shap_figures_parts(tmp_path):
    rng = np.random.default_rng(4)
    n = 600
    X = pd.DataFrame({
        "complaints_3m": rng.poisson(0.5, n).astype(float),
        "aum_change_ratio_3m": rng.normal(0, 0.3, n),
        "value_tier": pd.Categorical(rng.choice(["mass", "affluent"], n)),
    })
    y = ((X["complaints_3m"] > 0) ^ (rng.random(n) < 0.1)).astype(int)
    booster = lgb.train({"objective": "binary", "num_threads": 1, "verbose": -1}, lgb.Dataset(X, y), 20)
    figures = shap_figures(booster, X, max_rows=300)
    assert set(figures) == {"shap_summary", "shap_importance"}
    summary_ax = figures["shap_summary"].axes[0]
    assert len(summary_ax.collections) >= 3  # one point cloud per feature
    assert "300 rows" in summary_ax.get_title()
    importance_ax = figures["shap_importance"].axes[0]
    assert len(importance_ax.patches) == 3
    widest = max(importance_ax.patches, key=lambda bar: bar.get_width())
    labels = {round(t): label.get_text() for t, label in zip(importance_ax.get_yticks(), importance_ax.get_yticklabels())}
    assert labels[round(widest.get_y() + widest.get_height() / 2)] == "complaints_3m"  # the only real driver
    _save_all(figures, tmp_path)
