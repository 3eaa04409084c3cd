"""What a targeting strategy earns, estimated from the bank's own randomized contacts (doubly robust, AIPW).

The estimand
------------
A contact of customer i is worth ``tau_i = E[gain | contacted] - E[gain | not contacted] - contact cost``, where the
gain of a customer-month counts, in currency, what the offer is for and what it costs:

- retention: ``(stayed - 1) x value - paid``: minus the value lost by an exit (so the many who stay either way add
  no noise), minus the offer price paid to an acceptor;
- upgrade:   ``upgraded x value - paid``.

``value`` is known before the contact (retention: the customer's CLV as the bank prices it; upgrade: the policy's
value of one tier step) and ``paid = accepted x price``, the offer price of the customer (rate x AUM). The value of a
strategy that contacts the set S is the sum of ``tau_i`` over S. On the simulated bank its truth is the true effect x
the same value - the true expected offer cost - the contact cost (:func:`estimand_truth`).

The estimator
-------------
Outcome models, cross-fitted by customer (:class:`OutcomeModels`): ``p(x, t)`` the probability of success with and
without the offer, and ``q(x)`` the probability that a contacted customer accepts, learned on every randomized
contact of the offer (exploration samples, campaign lists and their holdouts, each with its own assignment
probability). They give every customer-month a model effect ``mu1 - mu0`` with ``mu1 = (p(x, 1) - r) value -
q(x) price`` and ``mu0 = (p(x, 0) - r) value`` (``r = 1`` for retention, 0 for upgrade), and every randomized
contact a correction ``T (y - mu1) / e - (1 - T)(y - mu0) / (1 - e)`` with its known propensity ``e`` (Robins,
Rotnitzky and Zhao 1994; the policy-value form as in Athey and Wager 2021, "Policy Learning With Observational
Data", Econometrica). Within each month's group of contacts the weights are normalized per arm (Hajek), so a
chance imbalance between the arms of a few dozen contacts adds no noise (:func:`group_correction`).

A strategy's value in one month is ``sum over S of (mu1 - mu0 - contact)`` plus the corrections of the randomized
contacts in S, weighted by the share of S each sample stands for:

- customers of S on a randomized campaign list (targeted by the bank's own rule): each stands for itself;
- the rest of S: the exploration sample drawn at random from everyone not on such a list stands for all of them,
  so its corrections are scaled by ``|rest of S| / |exploration contacts in S|``.

Without an exploration sample the rest of S gets the model's effect alone, and the result says how much of the
strategy that is. The standard error comes from the corrections' influence terms (the model term has none given the
cross-fitted models); a paired difference of two strategies subtracts their influence terms row by row, so the
customers both contact cancel out. The coverage of the 95 % intervals and the bias are checked on simulated banks
(``make campaign-coverage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from serving.runtime.evidence import Z95
#: Folds of the cross-fitting (by customer: no customer's own outcome ever informs its model effect).
FOLDS = 5
#: The outcome models: small, regularized boosters (a few thousand contacts a quarter).
OUTCOME_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
                  "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 10.0,
                  "verbosity": -1, "num_threads": 1, "seed": 0}
OUTCOME_ROUNDS = 150
#: Strata of a randomized contact: on a campaign list chosen by the bank's rule, or in a random exploration sample.
CAMPAIGN, EXPLORATION = "campaign", "exploration"


def customer_folds(customer_id, folds: int = FOLDS) -> np.ndarray:
    """A stable fold per customer (a hash of the id): the same on every run, engine and month."""
    ids = pd.Series(np.asarray(customer_id)).astype("str")
    return (pd.util.hash_pandas_object(ids, index=False).to_numpy() % np.uint64(folds)).astype("int64")


def _matrix(frame: pd.DataFrame, columns: list[str], categories: dict[str, list]) -> pd.DataFrame:
    out = {}
    for name in columns:
        values = frame[name]
        if name in categories:
            text = values.astype("object").astype("str").where(values.notna(), None)
            out[name] = pd.Categorical(text, categories=categories[name])
        else:
            out[name] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)


@dataclass
class OutcomeModels:
    """Cross-fitted outcome models of one offer: P(success | x, offered or not) and P(accept | x, offered).

    ``fit`` learns one pair per fold on the other folds' customers; ``predict`` scores each row with the pair that
    never saw its customer, so a randomized contact's model effect is out of sample, and any other customer-month
    is scored by the same rule.
    """

    feature_columns: list[str]
    folds: int = FOLDS
    rounds: int = OUTCOME_ROUNDS
    categories_: dict[str, list] = field(default_factory=dict)
    success_: list = field(default_factory=list)
    accept_: list = field(default_factory=list)

    def fit(self, rows: pd.DataFrame) -> "OutcomeModels":
        """``rows``: randomized contacts with the feature columns, ``customer_id``, ``treated``, ``success`` and
        ``accepted`` (0/1)."""
        for column in ("customer_id", "treated", "success", "accepted"):
            if column not in rows.columns:
                raise ValueError(f"the randomized contacts ({len(rows):,} rows) have no column {column}")
        self.categories_ = {c: sorted(rows[c].dropna().astype("str").unique()) for c in self.feature_columns
                            if not pd.api.types.is_numeric_dtype(rows[c]) or isinstance(rows[c].dtype, pd.CategoricalDtype)}
        X = _matrix(rows, self.feature_columns, self.categories_)
        treated = rows["treated"].to_numpy(dtype="float64")
        success = rows["success"].to_numpy(dtype="float64")
        accepted = rows["accepted"].to_numpy(dtype="float64")
        fold = customer_folds(rows["customer_id"], self.folds)
        self.success_, self.accept_ = [], []
        for k in range(self.folds):
            train = fold != k
            self.success_.append(self._fit(X.loc[train].assign(treated=treated[train]), success[train]))
            offered = train & (treated == 1)
            self.accept_.append(self._fit(X.loc[offered], accepted[offered]))
        return self

    def _fit(self, X: pd.DataFrame, y: np.ndarray):
        if len(y) == 0 or y.min() == y.max():
            return float(y.mean()) if len(y) else 0.0  # a constant: nothing to learn
        data = lgb.Dataset(X, y, categorical_feature=[c for c in X.columns if c in self.categories_], free_raw_data=False)
        return lgb.train(OUTCOME_PARAMS, data, num_boost_round=self.rounds)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``p0``, ``p1`` (success without / with the offer) and ``q`` (acceptance if offered), per row of ``frame``."""
        X = _matrix(frame, self.feature_columns, self.categories_)
        fold = customer_folds(frame["customer_id"], self.folds)
        out = np.zeros((len(frame), 3))
        for k in range(self.folds):
            rows = np.flatnonzero(fold == k)
            if not len(rows):
                continue
            part = X.iloc[rows]
            for column, arm in ((0, 0.0), (1, 1.0)):
                out[rows, column] = _predict(self.success_[k], part.assign(treated=arm))
            out[rows, 2] = _predict(self.accept_[k], part)
        return pd.DataFrame(out, columns=["p0", "p1", "q"], index=frame.index)


def _predict(model, X: pd.DataFrame) -> np.ndarray:
    return np.full(len(X), model) if isinstance(model, float) else model.predict(X)


def model_terms(predicted: pd.DataFrame, value, price, *, retention: bool) -> tuple[np.ndarray, np.ndarray]:
    """``mu0`` and ``mu1``: the expected gain without and with the offer (before the contact cost)."""
    r = 1.0 if retention else 0.0
    v = np.nan_to_num(np.asarray(value, dtype="float64"))
    price = np.nan_to_num(np.asarray(price, dtype="float64"))
    mu0 = (predicted["p0"].to_numpy() - r) * v
    mu1 = (predicted["p1"].to_numpy() - r) * v - predicted["q"].to_numpy() * price
    return mu0, mu1


def gain(success, accepted, treated, value, price, *, retention: bool) -> np.ndarray:
    """The realized gain of a customer-month (see the module docstring): what the estimator averages."""
    r = 1.0 if retention else 0.0
    paid = np.asarray(treated, dtype="float64") * np.asarray(accepted, dtype="float64") * np.nan_to_num(np.asarray(price, dtype="float64"))
    return (np.asarray(success, dtype="float64") - r) * np.nan_to_num(np.asarray(value, dtype="float64")) - paid


def residuals(y, treated, mu0, mu1) -> np.ndarray:
    """Each contact's gain minus the model of the arm it was in."""
    t = np.asarray(treated, dtype=bool)
    return np.asarray(y, dtype="float64") - np.where(t, mu1, mu0)


@dataclass(frozen=True)
class PolicyValue:
    """A strategy's estimated incremental value (currency, net of contact and offer costs) and its uncertainty."""

    estimate: float
    standard_error: float
    contacts: int
    randomized_contacts: int
    model_only_contacts: int  # contacts no randomized sample stands for: model effect only
    influence: np.ndarray = field(repr=False)  # per randomized contact (positions of the contacts frame)

    @property
    def ci(self) -> tuple[float, float]:
        return self.estimate - Z95 * self.standard_error, self.estimate + Z95 * self.standard_error


@dataclass(frozen=True)
class PolicyEvidence:
    """What :func:`policy_value` needs, prepared once per backtest: the population and the randomized contacts.

    ``population``: one row per eligible customer-month with ``customer_id``, ``_month``, ``tau_model`` (model effect
    minus contact cost) and ``on_campaign`` (on a randomized campaign list that month). ``contacts``: one row per
    randomized contact of those months with ``row`` (its position in ``population``), ``stratum``, ``treated``,
    ``propensity`` and ``r`` (:func:`residuals`).
    """

    population: pd.DataFrame
    contacts: pd.DataFrame


def policy_value(chosen: np.ndarray, evidence: PolicyEvidence) -> PolicyValue:
    """The AIPW value of contacting the population rows where ``chosen`` is true (one or more months)."""
    population, contacts = evidence.population, evidence.contacts
    chosen = np.asarray(chosen, dtype=bool)
    total = float(population["tau_model"].to_numpy()[chosen].sum())
    influence = np.zeros(len(contacts))
    variance, randomized, model_only = 0.0, 0, 0
    picked = chosen[contacts["row"].to_numpy()]
    months = population["_month"].to_numpy()
    on_campaign = population["on_campaign"].to_numpy(dtype=bool)
    residual, treated = contacts["r"].to_numpy(), contacts["treated"].to_numpy(dtype=bool)
    propensity = contacts["propensity"].to_numpy(dtype="float64")
    for month in np.unique(months[chosen]):
        in_month = chosen & (months == month)
        for stratum, members in ((CAMPAIGN, in_month & on_campaign), (EXPLORATION, in_month & ~on_campaign)):
            size = int(members.sum())
            rows = np.flatnonzero(picked & (contacts["_month"].to_numpy() == month) & (contacts["stratum"].to_numpy() == stratum))
            if size == 0:
                continue
            if len(rows) == 0:
                model_only += size
                continue
            correction, influence[rows] = group_correction(residual[rows], treated[rows], propensity[rows], size)
            total += correction
            randomized += len(rows)
            if len(rows) > 1:
                variance += float((influence[rows] ** 2).sum()) * len(rows) / (len(rows) - 1)
    return PolicyValue(total, float(np.sqrt(variance)), int(chosen.sum()), randomized, model_only, influence)


def group_correction(residual, treated, propensity, size: int) -> tuple[float, np.ndarray]:
    """The correction of one month's randomized contacts that stand for ``size`` customers, and its influence terms.

    ``residual``: each contact's gain minus its own arm's model (``y - mu1`` treated, ``y - mu0`` control). With at
    least two contacts in each arm, the inverse-propensity weights are normalized within each arm (Hajek): the
    difference of the arms' weighted mean residuals, times ``size``, so that the chance imbalance of a few dozen
    contacts between the arms adds no noise. Otherwise the plain AIPW terms (Horvitz-Thompson), scaled to ``size``.
    """
    r = np.asarray(residual, dtype="float64")
    t = np.asarray(treated, dtype=bool)
    e = np.asarray(propensity, dtype="float64")
    if t.sum() >= 2 and (~t).sum() >= 2:
        w1, w0 = np.where(t, 1 / e, 0.0), np.where(t, 0.0, 1 / (1 - e))
        m1, m0 = (w1 * r).sum() / w1.sum(), (w0 * r).sum() / w0.sum()
        return size * float(m1 - m0), size * (w1 * (r - m1) / w1.sum() - w0 * (r - m0) / w0.sum())
    c = np.where(t, r / e, -r / (1 - e))
    scale = size / len(r)
    return scale * float(c.sum()), scale * (c - c.mean())


def paired_difference(a: PolicyValue, b: PolicyValue) -> tuple[float, float]:
    """Estimate and standard error of ``a - b``: the same randomized contacts, so what both contact cancels."""
    return a.estimate - b.estimate, float(np.sqrt(((a.influence - b.influence) ** 2).sum()))


def estimand_truth(true_effect, value, true_offer_cost, contact_cost: float) -> np.ndarray:
    """(Simulated bank) what :func:`policy_value` estimates, per customer-month: true effect x the same value the
    estimator prices with - the true expected offer cost - the contact cost."""
    return (np.asarray(true_effect, dtype="float64") * np.nan_to_num(np.asarray(value, dtype="float64"))
            - np.asarray(true_offer_cost, dtype="float64") - contact_cost)
