"""Evaluation figures logged as MLflow artifacts: gains and lift, ROC, deciles, profit, calibration, PR, SHAP.

Every function returns new matplotlib figures (Agg backend, no window) keyed by artifact name; the
caller saves them (``mlflow.log_figure(fig, f"{key}.png")``) and closes them with ``plt.close(fig)``.
``title`` (e.g. "custbase-churn v3, test 2025-07..2025-09") heads every figure, so a PNG on its own says
which model, version and test months it shows; ``baseline`` adds the baseline model's curve beside the model's.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import lightgbm as lgb  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402

from training.evaluation import _as_float_arrays, _check_binary, _rank_bins, _tie_averaged  # noqa: E402
from serving.runtime.reasons import contributions  # noqa: E402

MODEL_COLOR = "#1f77b4"
REFERENCE_COLOR = "#7f7f7f"
SECOND_COLOR = "#ff7f0e"
BASELINE_COLOR = "#2ca02c"


#: Curves are drawn through at most this many points: a million-row test set would otherwise make a
#: slow figure and a heavy PNG with no visible difference.
MAX_CURVE_POINTS = 2_001


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(arrays[0])
    if n <= MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.int64))
    return tuple(a[keep] for a in arrays)


def _gains(values: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of ``values`` captured against the share of rows, rows in descending ``score``."""
    ordered, _ = _tie_averaged(values, score)
    captured = np.r_[0.0, np.cumsum(ordered)] / ordered.sum()
    return _thin(np.linspace(0.0, 1.0, len(values) + 1), captured)


def _decile_means(values: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per score decile, highest-scored decile first (NaN for an empty decile)."""
    bins = 9 - _rank_bins(score, 10)
    count = np.bincount(bins, minlength=10)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(bins, weights=values, minlength=10) / count, count


def _decile_bars(ax, values: np.ndarray, score: np.ndarray, *, predicted: str, actual: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and mean actual value per score decile as two sets of 10 bars (decile 1 = highest scores)."""
    mean_score, _ = _decile_means(score, score)
    mean_actual, _ = _decile_means(values, score)
    x = np.arange(1, 11)
    ax.bar(x - 0.2, np.nan_to_num(mean_score), width=0.4, color=MODEL_COLOR, label=predicted)
    ax.bar(x + 0.2, np.nan_to_num(mean_actual), width=0.4, color=SECOND_COLOR, label=actual)
    ax.set_xticks(x)
    return mean_score, mean_actual


def _baseline_array(baseline, n: int) -> np.ndarray | None:
    if baseline is None:
        return None
    (b,) = _as_float_arrays(baseline, names=("baseline",))
    if len(b) != n:
        raise ValueError(f"baseline has {len(b)} rows but y_true has {n}")
    return b


def _titled(figures: dict[str, Figure], title: str | None) -> dict[str, Figure]:
    """Put ``title`` above every figure (re-laid out so that it does not cover the axes)."""
    if title:
        for figure in figures.values():
            figure.suptitle(title, fontsize=10)
            figure.tight_layout()
    return figures


def profit_figure(curves: dict[str, list[tuple[float, float]]], *, ylabel: str, what: str,
                  best: dict[str, tuple[float, float]] | None = None) -> Figure:
    """Campaign profit against the share of customers contacted, one line per ``curves`` entry (model first).

    ``best`` gives the exact ``(share, profit)`` maximum of a curve (the curve itself is sampled at a grid of
    shares). The x axis stops at 4x the largest best share (at least 20%): beyond it every curve only falls.
    """
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = [MODEL_COLOR, BASELINE_COLOR, SECOND_COLOR]
    right = 0.2
    for (label, curve), color in zip(curves.items(), colors):
        share, profit = (np.asarray(v, dtype="float64") for v in zip(*curve))
        at = int(np.argmax(profit))
        best_share, best_profit = (best or {}).get(label, (share[at], profit[at]))
        right = max(right, 4 * best_share)
        ax.plot(share, profit, color=color, label=f"{label} (best {best_profit:,.0f} contacting {best_share:.1%})")
        ax.plot(best_share, best_profit, marker="o", color=color)
    right = min(1.0, right)
    shown = [p for curve in curves.values() for s_, p in curve if s_ <= right]
    ax.axhline(0.0, color=REFERENCE_COLOR, linestyle="--", linewidth=1)
    span = max(shown) - min(shown) if shown else 1.0
    ax.set(xlabel="share of customers contacted (highest score first)", ylabel=ylabel, xlim=(0, right),
           title=what + ("" if right >= 1 else f" (first {right:.0%} of customers)"))
    if shown:
        ax.set_ylim(min(shown) - 0.05 * span, max(shown) + 0.05 * span)
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def binary_figures(y_true, p, p_uncalibrated=None, *, baseline=None, title: str | None = None,
                   profit_curves: dict | None = None, profit_label: str = "expected profit",
                   profit_best: dict | None = None) -> dict[str, Figure]:
    """Figures of a binary model on its test rows.

    Parameters
    ----------
    baseline
        The baseline model's predictions on the same rows: its gains and ROC curves are drawn beside the model's.
    title
        Heads every figure (model, version, test months).
    profit_curves, profit_best
        ``{"model": [(share, profit), ...], "baseline": [...]}``: drawn as ``profit_curve``; optionally the exact
        ``{"model": (share, profit), ...}`` maxima.

    Returns
    -------
    dict
        ``gain_lift``: cumulative gains (model, baseline, random, perfect) and lift by score decile (10 bars);
        ``roc_curve``: ROC of model and baseline with their AUC; ``deciles``: mean predicted probability and
        observed rate per score decile; ``calibration``: reliability curve over 10 equal-frequency bins
        (calibrated, and uncalibrated when ``p_uncalibrated`` is given) against the diagonal; ``pr_curve``:
        precision-recall curve with the base rate; ``profit_curve`` when ``profit_curves`` are given.
    """
    y, p = _as_float_arrays(y_true, p, names=("y_true", "p"))
    _check_binary(y)
    base_rate = y.mean()
    b = _baseline_array(baseline, len(y))

    gain_lift, (ax_gain, ax_lift) = plt.subplots(1, 2, figsize=(11, 4.5))
    share, captured = _gains(y, p)
    ax_gain.plot(share, captured, color=MODEL_COLOR, label="model")
    if b is not None:
        share_b, captured_b = _gains(y, b)
        ax_gain.plot(share_b, captured_b, color=BASELINE_COLOR, label="baseline")
    ax_gain.plot([0, 1], [0, 1], color=REFERENCE_COLOR, linestyle="--", label="random")
    if base_rate > 0:
        ax_gain.plot([0, base_rate, 1], [0, 1, 1], color=REFERENCE_COLOR, linestyle=":", label="perfect")
    ax_gain.set(xlabel="share of customers contacted (highest score first)", ylabel="share of positives captured",
                title="Cumulative gains", xlim=(0, 1), ylim=(0, 1.02))
    ax_gain.legend(loc="lower right")
    rate, _ = _decile_means(y, p)
    lift = rate / base_rate if base_rate > 0 else np.full(10, np.nan)
    ax_lift.bar(np.arange(1, 11), np.nan_to_num(lift), color=MODEL_COLOR)
    ax_lift.axhline(1.0, color=REFERENCE_COLOR, linestyle="--")
    ax_lift.set(xlabel="score decile (1 = highest scores)", ylabel="lift (decile positive rate / base rate)",
                title="Lift by decile", xticks=np.arange(1, 11))
    gain_lift.tight_layout()

    calibration, ax_cal = plt.subplots(figsize=(5.5, 5))
    curves = [("calibrated", p, MODEL_COLOR)]
    if p_uncalibrated is not None:
        (p_raw,) = _as_float_arrays(p_uncalibrated, names=("p_uncalibrated",))
        if len(p_raw) != len(y):
            raise ValueError(f"p_uncalibrated has {len(p_raw)} rows but y_true has {len(y)}")
        curves = [("before calibration", p_raw, SECOND_COLOR), ("after calibration", p, MODEL_COLOR)]
    top = 0.0
    for label, probability, color in curves:
        bins = _rank_bins(probability, 10)
        count = np.bincount(bins, minlength=10)
        used = count > 0
        mean_p = np.bincount(bins, weights=probability, minlength=10)[used] / count[used]
        mean_y = np.bincount(bins, weights=y, minlength=10)[used] / count[used]
        ax_cal.plot(mean_p, mean_y, marker="o", color=color, label=label)
        top = max(top, mean_p.max(), mean_y.max())
    top = min(1.0, top * 1.05 + 1e-3)
    ax_cal.plot([0, top], [0, top], color=REFERENCE_COLOR, linestyle="--", label="perfectly calibrated")
    ax_cal.set(xlabel="mean predicted probability (10 equal-frequency bins)", ylabel="observed rate",
               title="Calibration", xlim=(0, top), ylim=(0, top))
    ax_cal.legend(loc="upper left")
    calibration.tight_layout()

    pr_curve, ax_pr = plt.subplots(figsize=(5.5, 5))
    if 0 < base_rate < 1:
        precision, recall, _ = precision_recall_curve(y, p)
        precision, recall = _thin(precision, recall)
        ax_pr.plot(recall, precision, color=MODEL_COLOR, label="model", drawstyle="steps-post")
    ax_pr.axhline(base_rate, color=REFERENCE_COLOR, linestyle="--", label=f"base rate {base_rate:.3f}")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_pr.legend(loc="upper right")
    pr_curve.tight_layout()

    roc, ax_roc = plt.subplots(figsize=(5.5, 5))
    for label, score, color in [("model", p, MODEL_COLOR)] + ([("baseline", b, BASELINE_COLOR)] if b is not None else []):
        fpr, tpr, _ = roc_curve(y, score)
        fpr, tpr = _thin(fpr, tpr)
        ax_roc.plot(fpr, tpr, color=color, label=f"{label} (ROC-AUC {roc_auc_score(y, score):.3f})")
    ax_roc.plot([0, 1], [0, 1], color=REFERENCE_COLOR, linestyle="--", label="random")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.legend(loc="lower right")
    roc.tight_layout()

    deciles, ax_dec = plt.subplots(figsize=(8, 4.5))
    _decile_bars(ax_dec, y, p, predicted="mean predicted probability", actual="observed rate")
    ax_dec.axhline(base_rate, color=REFERENCE_COLOR, linestyle="--", label=f"base rate {base_rate:.3f}")
    ax_dec.set(xlabel="score decile (1 = highest scores)", ylabel="rate", title="Predicted and observed rate by decile")
    ax_dec.legend(loc="upper right")
    deciles.tight_layout()

    figures = {"gain_lift": gain_lift, "roc_curve": roc, "deciles": deciles, "calibration": calibration, "pr_curve": pr_curve}
    if profit_curves:
        figures["profit_curve"] = profit_figure(profit_curves, ylabel=profit_label, what="Campaign profit by share contacted",
                                                best=profit_best)
    return _titled(figures, title)


def clv_figures(y_true, y_pred, *, baseline=None, title: str | None = None) -> dict[str, Figure]:
    """Figures of a CLV model on its test rows.

    Returns
    -------
    dict
        ``deciles``: mean predicted and mean actual value per prediction decile (two sets of 10 bars, log
        axis: the top decile is worth orders of magnitude more than the bottom ones);
        ``lorenz``: gains curve, the cumulative share of actual value captured by the model's order, by the
        baseline's (when given), by a perfect order and by a random one.
    """
    y, s = _as_float_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    b = _baseline_array(baseline, len(y))

    deciles, ax = plt.subplots(figsize=(8, 4.5))
    mean_pred, mean_actual = _decile_bars(ax, y, s, predicted="mean predicted", actual="mean actual")
    ax.set(xlabel="prediction decile (1 = highest predictions)", ylabel="mean value over the horizon (log scale)",
           title="CLV by prediction decile")
    if np.nanmax(np.r_[mean_pred, mean_actual, 0.0]) > 0:
        ax.set_yscale("log")  # bars at or below 0 are simply not drawn on a log axis
    ax.legend(loc="upper right")
    deciles.tight_layout()

    lorenz, ax_l = plt.subplots(figsize=(5.5, 5))
    if y.sum() > 0:
        share, captured = _gains(y, s)
        ax_l.plot(share, captured, color=MODEL_COLOR, label="model")
        if b is not None:
            share, captured = _gains(y, b)
            ax_l.plot(share, captured, color=BASELINE_COLOR, label="baseline")
        share, captured = _gains(y, y)
        ax_l.plot(share, captured, color=REFERENCE_COLOR, linestyle=":", label="perfect")
    ax_l.plot([0, 1], [0, 1], color=REFERENCE_COLOR, linestyle="--", label="random")
    ax_l.set(xlabel="share of customers (highest prediction first)", ylabel="share of total actual value",
             title="Value gains (Lorenz)", xlim=(0, 1), ylim=(0, 1.02))
    ax_l.legend(loc="lower right")
    lorenz.tight_layout()
    return _titled({"deciles": deciles, "lorenz": lorenz}, title)


def _numeric_view(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with categorical columns as their integer codes (NaN for missing), for colouring points."""
    out = {}
    for c in X.columns:
        col = X[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[c] = col.cat.codes.astype("float64").where(col.notna())
        else:
            out[c] = pd.to_numeric(col, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=X.index)


def shap_figures(booster: lgb.Booster, X: pd.DataFrame, max_rows: int = 2000, seed: int = 0,
                 max_display: int = 20, title: str | None = None) -> dict[str, Figure]:
    """SHAP summary figures of a LightGBM booster on a sample of rows.

    Contributions come from ``booster.predict(X, pred_contrib=True)`` (what shap's TreeExplainer computes
    for LightGBM); shap is used only to draw them. Values are in raw-score units (log-odds for binary).

    Returns
    -------
    dict
        ``shap_summary``: beeswarm of the ``max_display`` most important features (categorical features
        coloured by category code); ``shap_importance``: mean |SHAP| bar chart.
    """
    with warnings.catch_warnings():
        # shap's colour maps use matplotlib calls that are pending deprecation; nothing for us to act on.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap  # imported here: it costs ~2 s and only training draws these figures

    names = booster.feature_name()
    sample = X if len(X) <= max_rows else X.sample(n=max_rows, random_state=seed)
    sample = sample[names]
    contrib = contributions(booster, sample)
    explanation = shap.Explanation(
        values=contrib[:, :-1],
        base_values=contrib[:, -1],
        data=_numeric_view(sample).to_numpy(),
        feature_names=names,
    )
    summary = plt.figure(figsize=(9, 0.4 * min(max_display, len(names)) + 1.5))
    shap.plots.beeswarm(explanation, max_display=max_display, show=False, ax=summary.add_subplot(), plot_size=None)
    summary.axes[0].set_title(f"SHAP values (raw score), {len(sample):,} rows")
    summary.tight_layout()

    importance, ax = plt.subplots(figsize=(9, 0.4 * min(max_display, len(names)) + 1.5))
    shap.plots.bar(explanation, max_display=max_display, show=False, ax=ax)
    ax.set_title(f"Mean |SHAP| (raw score), {len(sample):,} rows")
    importance.tight_layout()
    return _titled({"shap_summary": summary, "shap_importance": importance}, title)
