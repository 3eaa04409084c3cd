"""Reason codes: the largest contributions to a customer's score, each said as a sentence.

Contributions come from ``booster.predict(X, pred_contrib=True)``, which for LightGBM gives exactly the
numbers of shap's TreeExplainer without importing shap. They are in the booster's raw-score space
(log-odds for a binary model, before any calibration; log of the mean for Tweedie): each row's
contributions plus its bias sum to ``booster.predict(X, raw_score=True)``.

The sentence of a feature comes from its definition: every column in ``features/definitions.py`` carries a
:class:`~features.definitions.Phrase` (``aum_change_ratio_3m = -0.45`` -> "AUM down 45% over 3 months"),
formatted here. A column the definitions do not know (a prepared dataset's) reads "<description>: <value>"
when a description is given, else "<name> = <value>". Scoring (:mod:`serving.runtime.scoring`) and the
training reports share these functions.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.definitions import Phrase
from features.feature_set import FEATURES

Phraser = Callable[[Any], str]

# --------------------------------------------------------------------------------------------- values


_NA = pd.NA


def _is_missing(value: Any) -> bool:
    return value is None or value is _NA or (isinstance(value, (float, np.floating)) and value != value)


def _number(value: float) -> str:
    """A number for a sentence: integers plainly, large values with thousands separators, else 3 digits."""
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _percent(ratio: Any) -> str:
    return f"{abs(float(ratio)) * 100:.0f}%"


def _months(n: Any) -> str:
    return f"{_number(n)} month" + ("" if float(n) == 1 else "s")


def _years(months: Any) -> str:
    years, rest = divmod(int(round(float(months))), 12)
    if years == 0:
        return _months(rest)
    text = f"{years} year" + ("" if years == 1 else "s")
    return text + (f" {_months(rest)}" if rest else "")


def _format_value(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return _number(value)
    return str(value)


#: The format specs a :class:`~features.definitions.Phrase` template may use (its docstring lists them).
FORMAT_SPECS: dict[str, Callable[[Any], str]] = {
    "": _format_value,
    "%": _percent,
    "abs": lambda v: _number(abs(float(v))),
    "months": _months,
    "years": _years,
    "text": lambda v: str(v).replace("_", " "),
}


def _compile(template: str) -> Callable[[Any], str]:
    """``template`` parsed once into a function of the value (reason codes phrase many values per feature)."""
    pieces = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        if field is not None and (field != "value" or spec not in FORMAT_SPECS):
            raise KeyError(f"reason template {template!r}: use {{value}} with a format spec among {sorted(FORMAT_SPECS)}")
        pieces.append((literal, None if field is None else FORMAT_SPECS[spec]))
    if len(pieces) == 1 and pieces[0][1] is None:
        text = pieces[0][0]
        return lambda v: text
    if len(pieces) <= 2 and pieces[0][1] is not None and (len(pieces) == 1 or pieces[1][1] is None):
        (head, fmt), tail = pieces[0], (pieces[1][0] if len(pieces) == 2 else "")
        return lambda v: head + fmt(v) + tail
    return lambda v: "".join([literal + (fmt(v) if fmt is not None else "") for literal, fmt in pieces])


@lru_cache(maxsize=4096)
def speaker(phrase: Phrase) -> Callable[[Any], str | None]:
    """``phrase`` as a function of the value: its sentence, or None for a missing value without a ``missing`` case.

    The function raises ValueError or TypeError when the value does not fit (text where a number is expected).
    """
    other = _compile(phrase.other)
    zero, one, negative = (None if t is None else _compile(t) for t in (phrase.zero, phrase.one, phrase.negative))
    missing = None if phrase.missing is None else _compile(phrase.missing)
    numeric = zero is not None or one is not None or negative is not None

    def speak(value: Any) -> str | None:
        if _is_missing(value):
            return None if missing is None else missing(value)
        if numeric:
            x = float(value)
            if x == 0 and zero is not None:
                return zero(value)
            if x == 1 and one is not None:
                return one(value)
            if x < 0 and negative is not None:
                return negative(value)
        return other(value)

    return speak


def say(phrase: Phrase, value: Any) -> str | None:
    """``phrase``'s sentence for ``value`` (see :func:`speaker`)."""
    return speaker(phrase)(value)


# --------------------------------------------------------------------------------------------- sentences

_ACRONYMS = {"aum": "AUM", "clv": "CLV", "atm": "ATM", "pos": "POS"}


def _humanize(name: str) -> str:
    text = " ".join(_ACRONYMS.get(w, w) for w in name.split("_"))
    return text[:1].upper() + text[1:]


def phraser(feature: str, descriptions: Mapping[str, str] | None = None) -> Phraser:
    """The sentence builder of one feature: its definition's reason phrase, else ``descriptions``, else ``feature = value``.

    A missing value reads as the phrase's ``missing`` case (``months_since_last_salary``: "No salary credit on
    record"), else "<humanised name>: missing" ("<description>: missing" for a column with no definition).
    A value the phrase cannot read (text where a number was expected) reads "<description>: <value>".
    """
    definition = FEATURES.get(feature)
    label = definition.description if definition is not None else (descriptions or {}).get(feature)
    if label:
        # "Complaints in the last 3 months." reads better before a colon without its full stop.
        label = label.strip().rstrip(".")

    def plain(v: Any) -> str:
        return f"{label}: {_format_value(v)}" if label else f"{feature} = {_format_value(v)}"

    if definition is None:
        missing = f"{label or _humanize(feature)}: missing"
        return lambda v: missing if _is_missing(v) else plain(v)
    speak = speaker(definition.reason)
    missing = f"{_humanize(feature)}: missing"

    def phrased(v: Any) -> str:
        try:
            text = speak(v)
        except (TypeError, ValueError):
            return plain(v)
        return missing if text is None else text

    return phrased


def sentence(feature: str, value: Any, descriptions: Mapping[str, str] | None = None) -> str:
    """One readable sentence for a feature and its value, e.g. ``("complaints_3m", 2)`` -> "2 complaints in the last 3 months"."""
    return phraser(feature, descriptions)(value)


# --------------------------------------------------------------------------------------------- contributions


def model_frame(booster: lgb.Booster, X: pd.DataFrame) -> pd.DataFrame:
    """``X`` restricted to the booster's features, in its order (a new frame; the caller's is untouched)."""
    names = booster.feature_name()
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise ValueError(
            f"the frame of {len(X)} rows lacks {len(missing)} of the model's {len(names)} features, "
            f"e.g. {missing[:5]}: build it with the model's feature set"
        )
    dtypes = X.dtypes  # one lookup: indexing column by column costs ~0.5 ms per column on a one-row frame
    text = [c for c in names if pd.api.types.is_string_dtype(dtypes[c]) and not isinstance(dtypes[c], pd.CategoricalDtype)]
    if text:
        raise ValueError(
            f"columns {text} are text; cast them to the same pandas category dtype used in training "
            "(LightGBM rejects str columns and would otherwise misread the codes)"
        )
    return X[names]


def contributions(booster: lgb.Booster, X: pd.DataFrame, num_threads: int | None = None) -> np.ndarray:
    """Per-row feature contributions (SHAP values) of a binary or regression LightGBM booster.

    Parameters
    ----------
    booster
        A single-output booster (binary or regression; multiclass is refused).
    X
        Rows to explain, with at least the booster's features; categorical features with the same pandas
        ``category`` dtypes as in training.
    num_threads
        LightGBM threads for the prediction; the booster's own setting when None.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n_features + 1)`` in the booster's feature order; the last column is the bias (the
        expected raw score). Rows sum to the raw score.
    """
    return _contributions(booster, model_frame(booster, X), num_threads)


def _contributions(booster: lgb.Booster, frame: pd.DataFrame, num_threads: int | None) -> np.ndarray:
    """:func:`contributions` of a frame already checked by :func:`model_frame`."""
    n_outputs = booster.num_model_per_iteration()
    if n_outputs != 1:
        raise ValueError(f"contributions needs a binary or regression booster; this one has {n_outputs} outputs per iteration")
    kwargs = {} if num_threads is None else {"num_threads": num_threads}
    if len(frame) == 0:
        return np.zeros((0, booster.num_feature() + 1))
    return np.asarray(booster.predict(frame, pred_contrib=True, **kwargs), dtype=np.float64)


# --------------------------------------------------------------------------------------------- reason codes


@dataclass(frozen=True)
class Reason:
    """One driver of a customer's score: the feature, its value, its contribution (raw-score units) and a sentence."""

    feature: str
    value: Any
    contribution: float
    sentence: str


def top_drivers(signed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The up-to-``k`` largest positive entries of each row of ``signed`` (rows x features, no bias column).

    Returns ``(rows, features)``: parallel index arrays, row by row, each row's drivers largest first. A row
    with fewer than ``k`` positive entries gets fewer.
    """
    n, f = signed.shape
    if n == 0 or f == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    k_eff = min(k, f)
    # argpartition then a small sort: O(n f) instead of sorting every row fully.
    top = np.argpartition(-signed, k_eff - 1, axis=1)[:, :k_eff] if k_eff < f else np.tile(np.arange(f), (n, 1))
    top_values = np.take_along_axis(signed, top, axis=1)
    order = np.argsort(-top_values, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    keep = np.take_along_axis(top_values, order, axis=1) > 0
    rows, slots = np.nonzero(keep)
    return rows, top[rows, slots]


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: NumPy numbers to Python numbers, missing to None."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def reason_codes(
    booster: lgb.Booster,
    X: pd.DataFrame,
    k: int = 3,
    descriptions: Mapping[str, str] | None = None,
    direction: Literal["increase", "decrease"] = "increase",
    contrib: np.ndarray | None = None,
    num_threads: int | None = None,
) -> list[list[Reason]]:
    """The top-``k`` drivers of each row's score, each with a readable sentence.

    Parameters
    ----------
    booster
        A binary or regression LightGBM booster.
    X
        Rows to explain (see :func:`contributions`).
    k
        Reasons per row at most.
    descriptions
        Optional ``{feature: description}`` for columns without a definition ("<description>: <value>").
    direction
        ``"increase"``: the features pushing the score up most (positive contributions, largest first);
        ``"decrease"``: those pushing it down most (negative contributions, most negative first). A row
        with fewer than ``k`` features pushing that way gets fewer reasons.
    contrib
        Precomputed :func:`contributions` for ``X`` (to avoid a second ``pred_contrib`` pass).
    num_threads
        LightGBM threads for ``pred_contrib`` when ``contrib`` is not given; the booster's setting when None.

    Returns
    -------
    list of list of Reason
        One list per row of ``X``, in row order.
    """
    if direction not in ("increase", "decrease"):
        raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    names = booster.feature_name()
    frame = model_frame(booster, X)
    if contrib is None:
        contrib = _contributions(booster, frame, num_threads)
    contrib = np.asarray(contrib)
    if contrib.shape != (len(frame), len(names) + 1):
        raise ValueError(f"contrib has shape {contrib.shape}; expected {(len(frame), len(names) + 1)} for these rows")
    if len(frame) == 0:
        return []
    rows, features = top_drivers(contrib[:, :-1] if direction == "increase" else -contrib[:, :-1], k)
    phrasers: dict[int, Phraser] = {}
    values: list[Any] = [None] * len(rows)
    # Gather the values feature by feature (one vectorised take per feature) rather than cell by cell.
    for j in np.unique(features):
        at = np.flatnonzero(features == j)
        phrasers[j] = phraser(names[j], descriptions)
        picked = frame.iloc[:, j].to_numpy(dtype=object, na_value=None)[rows[at]]
        for position, value in zip(at, picked):
            values[position] = value
    out: list[list[Reason]] = [[] for _ in range(len(frame))]
    cache: dict[tuple[int, Any], str] = {}
    for i, j, value, c in zip(rows.tolist(), features.tolist(), values, contrib[rows, features].tolist()):
        value = _plain(value)
        key = (j, value)
        text = cache.get(key)
        if text is None:
            text = phrasers[j](value)
            cache[key] = text
        out[i].append(Reason(feature=names[j], value=value, contribution=c, sentence=text))
    return out
