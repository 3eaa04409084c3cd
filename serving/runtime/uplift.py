"""How a trained uplift model turns its boosters into each customer's uplift: the one rule training, the backtest,
the batch job, the Spark job and the online service share.

The boosters are a meta-learner's parts (see :mod:`training.uplift`), keyed by role:

- ``control`` + ``shift`` (the log-odds shift learner): uplift = sigmoid(c + s) - sigmoid(c), with c the no-offer
  model's log-odds and s the offer's shift of them;
- ``treated`` + ``control`` (T-learner): the difference of the two arms' probabilities;
- ``effect_treated`` + ``effect_control`` (X-learner): the two effect models blended by ``propensity``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.special import expit

#: ``predict(booster, raw)``: the booster's predictions of the rows at hand (``raw``: log-odds, not probabilities).
Predict = Callable[[Any, bool], np.ndarray]

#: The registered model of each offer's uplift (``custbase-<name>`` in MLflow and the BentoML store).
UPLIFT_MODEL_NAMES: dict[str, str] = {"retention": "retention-uplift", "upgrade": "upgrade-uplift"}


def uplift_from(boosters: Mapping[str, Any], propensity: float, predict: Predict) -> np.ndarray:
    """Each row's uplift from the meta-learner ``boosters``, with ``predict`` giving one booster's predictions."""
    if "shift" in boosters:
        base = np.asarray(predict(boosters["control"], True), dtype="float64")
        return expit(base + np.asarray(predict(boosters["shift"], True), dtype="float64")) - expit(base)
    if "effect_treated" in boosters:
        return (propensity * np.asarray(predict(boosters["effect_control"], False), dtype="float64")
                + (1 - propensity) * np.asarray(predict(boosters["effect_treated"], False), dtype="float64"))
    if "treated" in boosters and "control" in boosters:
        return (np.asarray(predict(boosters["treated"], False), dtype="float64")
                - np.asarray(predict(boosters["control"], False), dtype="float64"))
    raise ValueError(f"not an uplift model: boosters {sorted(boosters)} (expected control + shift, treated + control, "
                     "or effect_treated + effect_control)")


def predict_uplift(boosters: Mapping[str, Any], X, propensity: float, *, num_threads: int = 0) -> np.ndarray:
    """Uplift of each row of the model matrix ``X`` (a prepared frame, or the codes matrix of numeric boosters)."""
    return uplift_from(boosters, propensity,
                       lambda booster, raw: booster.predict(X, raw_score=raw, **({"num_threads": num_threads} if num_threads else {})))
