"""Per-customer explanations of a LightGBM score: contributions (SHAP values) and reason codes.

Contributions come from ``booster.predict(X, pred_contrib=True)``, which for LightGBM gives exactly the
numbers of shap's TreeExplainer without importing shap. They are in the booster's raw-score space
(log-odds for a binary model, before any calibration; log of the mean for Tweedie): each row's
contributions plus its bias sum to ``booster.predict(X, raw_score=True)``.

Reason codes turn the largest contributions into readable sentences built from the feature's name and
value (``aum_change_ratio_3m = -0.45`` -> "AUM down 45% over 3 months"), following the naming conventions
of the customer-month table; serving calls :func:`reason_codes` for the customers it explains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.contract import CHANNELS, OFFERS, PRODUCTS, TRANSACTION_CATEGORIES

# --------------------------------------------------------------------------------------------- contributions


def _model_frame(booster: lgb.Booster, X: pd.DataFrame) -> pd.DataFrame:
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
    return _contributions(booster, _model_frame(booster, X), num_threads)


def _contributions(booster: lgb.Booster, frame: pd.DataFrame, num_threads: int | None) -> np.ndarray:
    """:func:`contributions` of a frame already checked by :func:`_model_frame`."""
    n_outputs = booster.num_model_per_iteration()
    if n_outputs != 1:
        raise ValueError(f"contributions needs a binary or regression booster; this one has {n_outputs} outputs per iteration")
    kwargs = {} if num_threads is None else {"num_threads": num_threads}
    if len(frame) == 0:
        return np.zeros((0, booster.num_feature() + 1))
    return np.asarray(booster.predict(frame, pred_contrib=True, **kwargs), dtype=np.float64)


def global_importance(contrib: np.ndarray, feature_names: Sequence[str]) -> pd.Series:
    """Mean absolute contribution of each feature (bias column dropped), largest first."""
    contrib = np.asarray(contrib)
    if contrib.shape[1] != len(feature_names) + 1:
        raise ValueError(
            f"contributions have {contrib.shape[1]} columns but {len(feature_names)} feature names were given; "
            "expected one more column (the bias)"
        )
    values = np.abs(contrib[:, :-1]).mean(axis=0) if len(contrib) else np.zeros(len(feature_names))
    return pd.Series(values, index=list(feature_names), name="mean_abs_contribution").sort_values(ascending=False)


# --------------------------------------------------------------------------------------------- sentences

_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<months>1|3|6|12)m$")

# Words for the contract's codes; a code added to the contract later reads as its name with spaces.
_PRODUCT_WORDS = {
    "current_deposit": "current account",
    "wealth_management": "wealth management product",
    "insurance": "insurance policy",
}
_PRODUCT_NOUN = {p: _PRODUCT_WORDS.get(p, p.replace("_", " ")) for p in PRODUCTS}
_CHANNEL_WORDS = {"atm": "ATM", "pos": "card-terminal (POS)"}
_CHANNEL_WORD = {c: _CHANNEL_WORDS.get(c, c.replace("_", " ")) for c in CHANNELS}
_CATEGORY_WORDS = {
    "salary": "salary credits",
    "transfer": "transfers",
    "card_spend": "card spending",
    "bill_payment": "bill payments",
    "cash": "cash transactions",
    "investment": "investment transactions",
    "loan_repayment": "loan repayments",
    "interest": "interest",
    "fee": "fees",
    "other": "other transactions",
}
_CATEGORY_NOUN = {c: _CATEGORY_WORDS.get(c, c.replace("_", " ")) for c in TRANSACTION_CATEGORIES}
_CATEGORY_NOUN |= {"in": "money in", "out": "money out"}
#: Event counts ``<stem>_<w>``: (singular, plural).
_COUNT_NOUNS = {
    "complaints": ("complaint", "complaints"),
    "logins": ("login", "logins"),
    "branch_visits": ("branch visit", "branch visits"),
    "call_center_calls": ("call-centre call", "call-centre calls"),
    "campaign_contacts": ("campaign contact", "campaign contacts"),
    "campaign_responses": ("campaign response", "campaign responses"),
    "products_opened": ("product opened", "products opened"),
    "products_closed": ("product closed", "products closed"),
    "txn_count": ("transaction", "transactions"),
}
#: What ``months_since_last_<event>`` is about.
_EVENT_NOUN = {
    "salary": "salary credit",
    "activity": "activity",
    "login": "login",
    "transaction": "transaction",
    "txn": "transaction",
    "complaint": "complaint",
    "campaign_contact": "campaign contact",
    "branch_visit": "branch visit",
    "product_opened": "product opened",
}
#: Money amounts (no window): label and an optional trailing phrase.
_AMOUNT_LABEL = {
    "aum_month_end": ("AUM", " at month end"),
    "liabilities_month_end": ("Liabilities", " at month end"),
}
#: Categorical and plain descriptive features: label for "<label>: <value>" sentences.
_LABEL = {
    "value_tier": "Value tier",
    "previous_value_tier": "Previous value tier",
    "gender": "Gender",
    "city_tier": "City tier",
    "income_band": "Income band",
    "value_tier_rank": "Value tier rank",
}
_ACRONYMS = {"aum": "AUM", "clv": "CLV", "atm": "ATM", "pos": "POS"}


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value: float) -> str:
    """A number for a sentence: integers plainly, large values with thousands separators, else 3 digits."""
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _percent(ratio: float) -> str:
    return f"{abs(ratio) * 100:.0f}%"


def _months(n: float) -> str:
    return f"{_number(n)} month" + ("" if float(n) == 1 else "s")


def _over(months: str) -> str:
    return "the last month" if months == "1" else f"the last {months} months"


def _count(n: float, singular: str, plural: str) -> str:
    if float(n) == 0:
        return f"No {plural}"
    return f"{_number(n)} {singular if float(n) == 1 else plural}"


def _humanize(name: str) -> str:
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _change_subject(stem: str) -> str:
    """What a ``<stem>_change_ratio_<w>`` feature measures the change of."""
    if stem.startswith("balance_") and stem[len("balance_"):] in _PRODUCT_NOUN:
        return _PRODUCT_NOUN[stem[len("balance_"):]].capitalize() + " balance"
    if stem.startswith("txn_count"):
        return "Transactions"
    if stem.startswith("txn_amount"):
        return "Transaction amount"
    return _humanize(stem)


Phraser = Callable[[Any], str]


def _pattern_phraser(feature: str) -> Phraser | None:
    """A sentence builder for a feature recognised by its name, or None."""
    window = _WINDOW.match(feature)
    stem, months = (window["stem"], window["months"]) if window else (feature, None)

    if months and stem.endswith("_change_ratio"):
        subject = _change_subject(stem[: -len("_change_ratio")])
        span = f"over {_months(months)}"

        def change(v: Any) -> str:
            v = float(v)
            if v == 0:
                return f"{subject} unchanged {span}"
            return f"{subject} {'up' if v > 0 else 'down'} {_percent(v)} {span}"

        return change

    if feature == "next_tier_progress":
        return lambda v: f"AUM at {_percent(float(v))} of the next value tier's threshold"

    if feature.startswith("months_since_last_"):
        event = feature[len("months_since_last_"):]
        noun = _EVENT_NOUN.get(event, event.replace("_", " "))

        def since(v: Any) -> str:
            if _is_missing(v):
                return f"No {noun} on record"
            if float(v) == 0:
                return f"Last {noun} this month"
            return f"No {noun} for {_months(v)}"

        return since

    if feature.startswith("holds_") and feature[len("holds_"):] in _PRODUCT_NOUN:
        noun = _PRODUCT_NOUN[feature[len("holds_"):]]
        return lambda v: f"Holds {_article(noun)}" if float(v) > 0 else f"Holds no {noun}"

    if feature.startswith("balance_") and feature[len("balance_"):] in _PRODUCT_NOUN:
        noun = _PRODUCT_NOUN[feature[len("balance_"):]].capitalize()
        return lambda v: f"No {noun.lower()} balance" if float(v) == 0 else f"{noun} balance of {_number(v)}"

    if months:
        over = _over(months)
        if stem.startswith("txn_count_") and stem[len("txn_count_"):] in _CHANNEL_WORD:
            channel = _CHANNEL_WORD[stem[len("txn_count_"):]]
            return lambda v: f"{_count(v, f'{channel} transaction', f'{channel} transactions')} in {over}"
        if stem.startswith("txn_amount_") and stem[len("txn_amount_"):] in _CATEGORY_NOUN:
            noun = _CATEGORY_NOUN[stem[len("txn_amount_"):]]
            return lambda v: f"No {noun} in {over}" if float(v) == 0 else f"{noun.capitalize()} of {_number(v)} in {over}"
        if stem == "txn_amount":
            return lambda v: f"Transactions of {_number(v)} in {over}"
        if stem == "customer_txn_count":
            return lambda v: f"{_count(v, 'customer-initiated transaction', 'customer-initiated transactions')} in {over}"
        if stem.startswith("campaign_contacts_") and stem[len("campaign_contacts_"):] in OFFERS:
            offer = stem[len("campaign_contacts_"):].replace("_", "-")
            return lambda v: f"{_count(v, f'{offer} offer', f'{offer} offers')} in {over}"
        if stem == "txn_net_flow":
            return lambda v: (
                f"Net inflow of {_number(v)} over {over}" if float(v) > 0
                else f"Net outflow of {_number(-float(v))} over {over}" if float(v) < 0
                else f"No net flow over {over}"
            )
        if stem == "active_months":
            return lambda v: f"Active in {_number(v)} of the last {_months(months)}"
        if stem in _COUNT_NOUNS:
            singular, plural = _COUNT_NOUNS[stem]
            return lambda v: f"{_count(v, singular, plural)} in {over}"
        if stem == "digital_share":
            span = _months(months)
            return lambda v: f"{_percent(v)} of transactions digital ({span})"
        if stem.startswith("salary_months"):
            return lambda v: f"Salary credited in {_number(v)} of the last {_months(months)}"
        if stem in ("aum_avg", "aum_average"):
            return lambda v: f"Average AUM of {_number(v)} over {_over(months)}"
        if stem == "aum_trend_slope":
            return lambda v: f"AUM trend of {_number(v)} per month over {_over(months)}"
        if stem == "aum_drawdown":
            # A drawdown is a fraction below the window's peak; values outside [0, 1] are shown as they are.
            return lambda v: (
                f"AUM {_percent(v)} below its {months}-month peak" if 0 <= float(v) <= 1
                else f"AUM drawdown of {_number(v)} over {_over(months)}"
            )
        if stem == "net_revenue":
            return lambda v: f"Net revenue of {_number(v)} in {_over(months)}"

    if feature in _AMOUNT_LABEL:
        label, tail = _AMOUNT_LABEL[feature]
        return lambda v: f"{label} of {_number(v)}{tail}"
    if feature == "age":
        return lambda v: f"Age {_number(v)}"
    if feature == "tenure_months":
        return lambda v: f"Customer for {_tenure(float(v))}" if float(v) >= 1 else "Onboarded this month"
    if feature == "months_in_value_tier":
        return lambda v: f"In current value tier for {_months(v)}"
    if feature == "product_count":
        return lambda v: f"Holds {_count(v, 'product', 'products').lower()}" if float(v) else "Holds no products"
    if feature == "is_dormant":
        return lambda v: "Dormant customer" if float(v) > 0 else "Not dormant"
    if feature == "previous_value_tier":
        return lambda v: "No value-tier change on record" if _is_missing(v) else f"Previous value tier: {str(v).replace('_', ' ')}"
    if feature in _LABEL:
        label = _LABEL[feature]
        return lambda v: f"{label}: {str(v).replace('_', ' ')}"
    return None


def _tenure(months: float) -> str:
    years, rest = divmod(int(round(months)), 12)
    if years == 0:
        return _months(rest)
    text = f"{years} year" + ("" if years == 1 else "s")
    return text + (f" {_months(rest)}" if rest else "")


def _format_value(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return _number(value)
    return str(value)


def phraser(feature: str, descriptions: Mapping[str, str] | None = None) -> Phraser:
    """The sentence builder for one feature: naming patterns, else ``descriptions``, else ``feature = value``.

    Missing values give "<humanised name>: missing" ("<description>: missing" for features no pattern
    covers) unless the pattern says more (a missing ``months_since_last_salary`` reads "No salary credit on
    record").
    """
    found = _pattern_phraser(feature)
    label = (descriptions or {}).get(feature)
    if label:
        # "Complaints in the last 3 months." reads better before a colon without its full stop.
        label = label.strip().rstrip(".")

    def fallback(v: Any) -> str:
        return f"{label}: {_format_value(v)}" if label else f"{feature} = {_format_value(v)}"

    if found is None:
        missing_label = label or _humanize(feature)
        return lambda v: f"{missing_label}: missing" if _is_missing(v) else fallback(v)
    handles_missing = feature.startswith("months_since_last_") or feature == "previous_value_tier"

    def phrase(v: Any) -> str:
        if _is_missing(v) and not handles_missing:
            return f"{_humanize(feature)}: missing"
        try:
            return found(v)
        except (TypeError, ValueError):
            # A value the pattern cannot read (text where a number was expected): say it plainly.
            return fallback(v)

    return phrase


def sentence(feature: str, value: Any, descriptions: Mapping[str, str] | None = None) -> str:
    """One readable sentence for a feature and its value, e.g. ``("complaints_3m", 2)`` -> "2 complaints in the last 3 months"."""
    return phraser(feature, descriptions)(value)


# --------------------------------------------------------------------------------------------- reason codes


@dataclass(frozen=True)
class Reason:
    """One driver of a customer's score: the feature, its value, its contribution (raw-score units) and a sentence."""

    feature: str
    value: Any
    contribution: float
    sentence: str


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: NumPy numbers to Python numbers, missing to None."""
    if _is_missing(value) or (isinstance(value, np.floating) and np.isnan(value)):
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
        Optional ``{feature: description}`` for features no naming pattern covers ("<description>: <value>").
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
    frame = _model_frame(booster, X)
    if contrib is None:
        contrib = _contributions(booster, frame, num_threads)
    contrib = np.asarray(contrib)
    if contrib.shape != (len(frame), len(names) + 1):
        raise ValueError(f"contrib has shape {contrib.shape}; expected {(len(frame), len(names) + 1)} for these rows")
    n = len(frame)
    if n == 0:
        return []
    signed = contrib[:, :-1] if direction == "increase" else -contrib[:, :-1]
    k_eff = min(k, len(names))
    # argpartition then a small sort: O(n f) instead of sorting every row fully.
    top = np.argpartition(-signed, k_eff - 1, axis=1)[:, :k_eff] if k_eff < len(names) else np.tile(np.arange(len(names)), (n, 1))
    top_values = np.take_along_axis(signed, top, axis=1)
    order = np.argsort(-top_values, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    keep = np.take_along_axis(top_values, order, axis=1) > 0

    rows, slots = np.nonzero(keep)
    features = top[rows, slots]
    phrasers: dict[int, Phraser] = {}
    columns: dict[int, np.ndarray] = {}
    values: list[Any] = [None] * len(rows)
    # Gather the values feature by feature (one vectorised take per feature) rather than cell by cell.
    for j in np.unique(features):
        at = np.flatnonzero(features == j)
        if j not in columns:
            columns[j] = frame.iloc[:, j].to_numpy(dtype=object, na_value=None)
            phrasers[j] = phraser(names[j], descriptions)
        picked = columns[j][rows[at]]
        for position, value in zip(at, picked):
            values[position] = value
    out: list[list[Reason]] = [[] for _ in range(n)]
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
