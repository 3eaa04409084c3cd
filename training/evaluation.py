"""Evaluation of the churn, upgrade-propensity and CLV models: metrics and retention profit.

Pure functions of arrays; no I/O. Training logs what they return to MLflow, the promotion gate compares
them between champion and challenger, and the model card renders them.

Ties in a score are treated as the expected value over a random order of the tied rows, so that a
constant predictor gets a lift of exactly 1 and a normalized Gini of exactly 0 whatever the row order.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] for the log-loss, so that one confident
#: mistake gives a large but finite loss.
EPSILON = 1e-15


class RetentionEconomicsLike(Protocol):
    """What :func:`retention_profit` reads from ``custbase.config.RetentionEconomics`` (duck typing)."""

    contact_cost: float
    incentive_cost: float
    acceptance_rate: float


# --------------------------------------------------------------------------------------------- helpers


def _as_float_arrays(*arrays, names: tuple[str, ...]) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    n = len(out[0])
    for name, a in zip(names, out):
        if len(a) != n:
            raise ValueError(
                f"{names[0]} has {n} rows but {name} has {len(a)}: pass arrays of the same length"
            )
        if np.isnan(a).any():
            raise ValueError(
                f"{name} holds {int(np.isnan(a).sum())} NaN of {n} rows: drop label-unavailable rows "
                "and impute missing scores before evaluating"
            )
    if n == 0:
        raise ValueError(f"{names[0]} is empty: there is nothing to evaluate")
    return out


def _check_binary(y_true: np.ndarray) -> None:
    bad = ~np.isin(y_true, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"y_true must be 0/1, found {int(bad.sum())} other values such as {y_true[bad][0]!r}")


def _rank_bins(score: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-frequency bin (0 = lowest scores) of each row; tied scores always share a bin.

    A row's bin is ``floor((average rank - 1) * n_bins / n)``: a large block of tied scores lands in the
    one bin of its average rank, so some bins can be empty.
    """
    ranks = stats.rankdata(score, method="average")
    return np.minimum(((ranks - 1.0) * n_bins / len(score)).astype(np.int64), n_bins - 1)


def _tie_averaged(values: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order rows by descending score and replace each value by the mean over its block of tied scores.

    Returns the ordered, tie-averaged values and the ordered scores. The averaging gives the expected
    cumulative sums over a random order of tied rows.
    """
    order = np.argsort(-score, kind="stable")
    s = score[order]
    v = values[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    means = np.add.reduceat(v, starts) / sizes
    return np.repeat(means, sizes), s


def _top_share_positives(y_true: np.ndarray, p: np.ndarray, share: float) -> tuple[float, int]:
    """Expected number of positives among the ``ceil(share * n)`` highest-scored rows, and that count."""
    n = len(p)
    k = max(1, int(np.ceil(share * n - 1e-9)))
    y_sorted, _ = _tie_averaged(y_true, p)
    return float(y_sorted[:k].sum()), k


# --------------------------------------------------------------------------------------------- binary


def expected_calibration_error(y_true, p, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-frequency bins of the predicted probability.

    ECE = sum over bins b of (n_b / n) x |mean(y_true in b) - mean(p in b)|. Equal-frequency bins (by rank
    of ``p``; tied probabilities share a bin) rather than equal-width ones, because churn and upgrade are
    rare events and equal-width bins would put almost every customer in the lowest bin.

    Parameters
    ----------
    y_true
        Observed outcomes, 0/1.
    p
        Predicted probabilities in [0, 1].
    n_bins
        Number of bins (10 by default).
    """
    y, p = _as_float_arrays(y_true, p, names=("y_true", "p"))
    _check_binary(y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    bins = _rank_bins(p, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, weights=p, minlength=n_bins))
    # sum_b (n_b / n) |mean_y - mean_p| = sum_b |sum_y - sum_p| / n
    return float(gap[count > 0].sum() / len(y))


def binary_metrics(y_true, p) -> dict[str, float]:
    """Ranking, top-of-list and probability-quality metrics of a binary classifier.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``top_decile_lift`` (positive rate among the 10%
        highest-scored rows divided by the overall positive rate), ``precision_top_5pct``,
        ``recall_top_5pct``, ``precision_top_10pct``, ``recall_top_10pct`` (the top ``ceil(share x n)``
        rows; ties at the cut-off count with their expected share), ``brier``, ``log_loss`` (probabilities
        clipped to [1e-15, 1 - 1e-15]) and ``ece`` (see :func:`expected_calibration_error`, 10
        equal-frequency bins). ROC-AUC and PR-AUC are NaN when ``y_true`` holds only one class.
    """
    y, p = _as_float_arrays(y_true, p, names=("y_true", "p"))
    _check_binary(y)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p must be probabilities in [0, 1]; found min {p.min():.4g}, max {p.max():.4g}")
    positives = y.sum()
    both_classes = 0 < positives < len(y)
    out: dict[str, float] = {
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both_classes else float("nan"),
    }
    base_rate = positives / len(y)
    hits, k = _top_share_positives(y, p, 0.10)
    out["top_decile_lift"] = float(hits / k / base_rate) if positives > 0 else float("nan")
    for share, label in ((0.05, "5pct"), (0.10, "10pct")):
        hits, k = _top_share_positives(y, p, share)
        out[f"precision_top_{label}"] = hits / k
        out[f"recall_top_{label}"] = float(hits / positives) if positives > 0 else float("nan")
    out["brier"] = float(np.mean((p - y) ** 2))
    pc = np.clip(p, EPSILON, 1 - EPSILON)
    out["log_loss"] = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    out["ece"] = expected_calibration_error(y, p)
    return out


# --------------------------------------------------------------------------------------------- CLV


def _gini(actual_sorted: np.ndarray, weight_sorted: np.ndarray | None = None) -> float:
    """Gini of values already ordered by descending score: mean Lorenz ordinate minus the diagonal's.

    ``weight_sorted``: row weights in the same order (a row of weight w stands for w customers). NaN when the
    values sum to zero or less (no Lorenz curve).
    """
    if weight_sorted is None:
        n = len(actual_sorted)
        total = actual_sorted.sum()
        return float(np.cumsum(actual_sorted).sum() / total / n - (n + 1) / (2 * n)) if total > 0 else float("nan")
    # A row of weight w counts as w rows in a row: its own cumulative sums climb within it (hence (w + 1) / 2).
    w, v = weight_sorted, weight_sorted * actual_sorted
    value, people = v.sum(), w.sum()
    if value <= 0:
        return float("nan")
    lorenz = np.sum(w * (np.cumsum(v) - v) + v * (w + 1) / 2) / value
    diagonal = np.sum(w * (np.cumsum(w) - w) + w * (w + 1) / 2) / people
    return float((lorenz - diagonal) / people)


def normalized_gini(y_true, y_pred) -> float:
    """Gini of ``y_true`` ordered by ``y_pred``, divided by the Gini of ``y_true`` ordered by itself.

    1 = the model orders customers exactly as their realised value does, 0 = no better than random (a
    constant predictor gives exactly 0, since tied predictions are averaged), -1 = exactly reversed.
    NaN when ``y_true`` is constant (for example all zero): there is no ordering to recover.
    """
    y, s = _as_float_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    if (y < 0).any():
        raise ValueError(f"y_true holds {int((y < 0).sum())} negative values: normalized Gini needs values >= 0")
    if y.sum() == 0 or np.all(y == y[0]):
        return float("nan")
    model, _ = _tie_averaged(y, s)
    perfect, _ = _tie_averaged(y, y)
    return _gini(model) / _gini(perfect)


class GiniFeval:
    """LightGBM ``feval``: normalized Gini of one validation set, evaluated at every boosting round.

    The perfect ordering's Gini is computed once; ties in the predictions are broken by row order, which is what
    makes it cheap (the reported metrics use :func:`normalized_gini`, which averages over ties).
    """

    def __init__(self, y: np.ndarray, weight: np.ndarray | None = None):
        self.y = np.asarray(y, dtype="float64")
        self.weight = None if weight is None else np.asarray(weight, dtype="float64")
        self.perfect = self._gini(np.argsort(-self.y, kind="stable"))

    def _gini(self, order: np.ndarray) -> float:
        return _gini(self.y[order], None if self.weight is None else self.weight[order])

    def __call__(self, preds: np.ndarray, data) -> tuple[str, float, bool]:
        value = self._gini(np.argsort(-preds, kind="stable")) / self.perfect
        return "normalized_gini", (value if np.isfinite(value) else 0.0), True


def decile_mape(y_true, y_pred, n_bins: int = 10) -> float:
    """Mean over prediction deciles of |mean predicted - mean actual| / mean actual.

    Deciles are equal-frequency bins of ``y_pred`` (tied predictions share a bin, so a large tied block
    can leave a decile empty). Deciles that are empty or whose mean actual value is 0 are skipped (the
    ratio is undefined there); NaN if every decile is skipped.
    """
    y, s = _as_float_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    bins = _rank_bins(s, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    mean_actual = np.bincount(bins, weights=y, minlength=n_bins) / np.maximum(count, 1)
    mean_pred = np.bincount(bins, weights=s, minlength=n_bins) / np.maximum(count, 1)
    used = (count > 0) & (mean_actual != 0)
    if not used.any():
        return float("nan")
    return float(np.mean(np.abs(mean_pred[used] - mean_actual[used]) / np.abs(mean_actual[used])))


def clv_metrics(y_true, y_pred) -> dict[str, float]:
    """Ranking and accuracy metrics of a customer-lifetime-value model.

    Returns
    -------
    dict
        ``normalized_gini`` (:func:`normalized_gini`), ``decile_mape`` (:func:`decile_mape`; deciles with
        mean actual 0 are skipped), ``spearman`` (rank correlation; NaN if either side is constant),
        ``mae`` and ``rmse``.
    """
    y, s = _as_float_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    constant = np.all(y == y[0]) or np.all(s == s[0])
    return {
        "normalized_gini": normalized_gini(y, s),
        "decile_mape": decile_mape(y, s),
        "spearman": float("nan") if constant else float(stats.spearmanr(y, s).statistic),
        "mae": float(np.mean(np.abs(s - y))),
        "rmse": float(np.sqrt(np.mean((s - y) ** 2))),
    }


def metrics_of(spec, y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The metric set of ``spec``'s kind (``spec.kind``: ``"binary"`` or CLV)."""
    return binary_metrics(y, prediction) if spec.kind == "binary" else clv_metrics(y, prediction)


def paired_difference_se(metric, y_true, a, b, *, n_boot: int = 200, seed: int = 0) -> float:
    """Bootstrap standard error of ``metric(y, a) - metric(y, b)``, the rows resampled with replacement.

    The noise with which two scores of the same rows (a model and its oracle) can be told apart; resamples on
    which the metric is undefined (NaN) are skipped. NaN when fewer than two resamples give a value.
    """
    y, x, z = _as_float_arrays(y_true, a, b, names=("y_true", "a", "b"))
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        difference = metric(y[rows], x[rows]) - metric(y[rows], z[rows])
        if not np.isnan(difference):
            differences.append(difference)
    return float(np.std(differences, ddof=1)) if len(differences) >= 2 else float("nan")


# --------------------------------------------------------------------------------------------- retention


def retention_profit(churn_probability, clv_12m, churned, economics: RetentionEconomicsLike, *, n_points: int = 101) -> dict:
    """Profit of a retention campaign as a function of the share of customers contacted, and its maximum.

    An expected-maximum-profit measure in the spirit of Verbraken et al. (2013, EMP for customer churn),
    with each customer's own CLV instead of one constant. Customers are contacted in descending order of
    expected loss ``churn_probability x clv_12m``. With contact cost ``f``, incentive cost ``d``,
    acceptance rate ``a`` (of churners offered the incentive) and ``a_nc`` the share of contacted
    non-churners who take the incentive (``economics.non_churner_acceptance_rate`` if the object has it,
    otherwise 1, Verbraken's assumption that a non-churner never refuses a free incentive), a contacted
    customer ``i`` yields in expectation::

        profit_i = churned_i x a x (clv_i - d)  -  (1 - churned_i) x a_nc x d  -  f

    (a churner who accepts is retained: the bank keeps ``clv_i`` and pays ``d``; one who refuses is lost
    as without the campaign; a non-churner who accepts is pure deadweight ``d``; every contact costs
    ``f``). The profit of contacting the first ``k`` customers is ``sum_{j <= k} profit_j``; the curve runs
    over ``k = 0..n`` and the best profit is its maximum (0 at ``k = 0``: contacting nobody is allowed).

    Parameters
    ----------
    churn_probability
        The model's calibrated churn probability per customer.
    clv_12m
        The value the bank keeps if the customer stays: the *predicted* CLV (or a proxy such as trailing
        12-month net revenue). Not the realised ``clv_12m`` label of a churner, which is near zero
        precisely because the customer left.
    churned
        Observed churn, 0/1.
    economics
        ``custbase.config.RetentionEconomics`` or any object with ``contact_cost``, ``incentive_cost``
        and ``acceptance_rate``.
    n_points
        Number of evenly spaced shares in the returned ``profit_curve`` (the maximum is exact regardless).

    Returns
    -------
    dict
        ``best_profit`` (currency, total over the customers given), ``best_profit_per_customer``,
        ``contact_share`` and ``contacts`` at the maximum, ``profit_contact_all``, ``n_customers`` and
        ``profit_curve``: a list of ``(share, profit)`` at ``n_points`` shares from 0 to 1.
    """
    p, clv, y = _as_float_arrays(churn_probability, clv_12m, churned, names=("churn_probability", "clv_12m", "churned"))
    _check_binary(y)
    f = float(economics.contact_cost)
    d = float(economics.incentive_cost)
    a = float(economics.acceptance_rate)
    a_nc = float(getattr(economics, "non_churner_acceptance_rate", 1.0))
    for name, value in (("acceptance_rate", a), ("non_churner_acceptance_rate", a_nc)):
        if not 0 <= value <= 1:
            raise ValueError(f"retention economics {name} must be in [0, 1], got {value}")
    if f < 0 or d < 0:
        raise ValueError(f"retention economics costs must be >= 0, got contact_cost={f}, incentive_cost={d}")
    order = np.argsort(-(p * clv), kind="stable")
    profit_each = y[order] * a * (clv[order] - d) - (1 - y[order]) * a_nc * d - f
    cumulative = np.r_[0.0, np.cumsum(profit_each)]
    n = len(p)
    best_k = int(np.argmax(cumulative))
    shares = np.linspace(0.0, 1.0, n_points)
    ks = np.rint(shares * n).astype(np.int64)
    return {
        "best_profit": float(cumulative[best_k]),
        "best_profit_per_customer": float(cumulative[best_k] / n),
        "contact_share": best_k / n,
        "contacts": best_k,
        "profit_contact_all": float(cumulative[-1]),
        "n_customers": n,
        "profit_curve": [(float(s), float(cumulative[k])) for s, k in zip(shares, ks)],
    }


def offer_profit_curve(score, value_if_positive, positive, contact_cost: float, *, n_points: int = 101) -> list[tuple[float, float]]:
    """Profit of an offer campaign against the share of customers contacted, highest ``score`` first.

    A contacted customer yields ``positive_i x value_if_positive_i - contact_cost`` (for the upgrade offer:
    the observed upgrade times the policy's acceptance rate and value gain of the tier step), so the curve is
    the realised profit on the test months of contacting the top share. Returns ``(share, profit)`` pairs.
    """
    s, value, y = _as_float_arrays(score, value_if_positive, positive, names=("score", "value_if_positive", "positive"))
    _check_binary(y)
    order = np.argsort(-s, kind="stable")
    cumulative = np.r_[0.0, np.cumsum(y[order] * np.nan_to_num(value[order]) - float(contact_cost))]
    shares = np.linspace(0.0, 1.0, n_points)
    ks = np.rint(shares * len(s)).astype(np.int64)
    return [(float(share), float(cumulative[k])) for share, k in zip(shares, ks)]
