"""Backtest of targeting strategies at the same budget, on the newest labeled months.

Each month, each strategy picks at most ``budget`` customers of the offer's population:

==================  ==========================================================================================
``random``          ``budget`` customers at random (seeded)
``risk_top_n``      the highest churn probability (retention) or upgrade probability (upgrade)
``risk_x_value``    today's rule: churn probability x CLV (upgrade: propensity x value gain), among customers
                    whose rule-of-thumb expected value of contact is positive
``uplift_x_value``  expected incremental value from the uplift model (:func:`serving.runtime.campaign.offer_values`),
                    positive only
``true_uplift_x_value``  (simulated bank) the rule of ``uplift_x_value`` with the true effect in place of the
                    model's uplift (predicted CLV, planned take-up): what a perfect uplift model would earn, so the
                    gap to the oracle splits into the learner's part and the value and cost estimates' part
``oracle``          (simulated bank) the true effect x true value - contact cost - true offer cost, positive only
==================  ==========================================================================================

Two figures per strategy:

- ``true_incremental_value`` (simulated bank only): the sum over the chosen customers of the true effect x true
  value (retention: ``expected_clv_12m``; upgrade: the policy's value gain of the tier) - contact cost - the true
  expected offer cost, from ``ground_truth``;
- ``estimated_incremental_value`` (any bank): from the randomized contacts (exploration samples when the bank has
  them, else every randomized campaign) of the chosen customers, the difference of the inverse-propensity weighted
  means (Hajek) of treated and control of the value each contact yields (retention: minus the value lost by an
  exit, so that the 95 % who stay anyway add no noise; upgrade: the value gained by a tier step; minus the offer
  cost paid to treated acceptors), minus the contact cost, times the strategy's contacts. Noisy: few randomized
  contacts fall in any one list; the standard error is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config
from serving.runtime.campaign import offer_values

STRATEGIES: tuple[str, ...] = ("random", "risk_top_n", "risk_x_value", "uplift_x_value", "true_uplift_x_value", "oracle")
#: Strategies that need the simulator's ground truth.
TRUTH_STRATEGIES = ("true_uplift_x_value", "oracle")


def choose(population: pd.DataFrame, strategy: str, kind: str, budget: int, config: Config, *, seed: int = 0) -> np.ndarray:
    """Positions in ``population`` (one month) that ``strategy`` contacts at ``budget``.

    ``population`` needs the scores (``churn_probability``, ``upgrade_probability``, ``clv_12m``, ``value_tier``,
    ``aum_month_end``), ``*_uplift`` for ``uplift_x_value``, ``true_effect`` for ``true_uplift_x_value`` and
    ``true_incremental_value`` for ``oracle``.
    """
    policy = config.policy
    n = len(population)
    if strategy == "random":
        return np.random.default_rng(seed).choice(n, size=min(budget, n), replace=False)
    if strategy == "risk_top_n":
        score = population["churn_probability" if kind == "retention" else "upgrade_probability"].to_numpy(dtype="float64")
        return np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:budget]
    if strategy == "risk_x_value":
        rule = offer_values(population.drop(columns=[f"{kind}_uplift"], errors="ignore"), kind, policy)
        if kind == "retention":
            score = population["churn_probability"].to_numpy(dtype="float64") * population["clv_12m"].to_numpy(dtype="float64")
        else:
            score = population["upgrade_probability"].to_numpy(dtype="float64") * rule["value"].to_numpy()
        worth = (rule["uplift"] * rule["value"] - rule["contact_cost"]).to_numpy() > 0  # today's rule ignores the offer cost
        positions = np.flatnonzero(worth)
        return positions[np.argsort(-score[positions], kind="stable")][:budget]
    if strategy == "uplift_x_value":
        value = offer_values(population, kind, policy)["expected_incremental_value"].to_numpy()
    elif strategy == "true_uplift_x_value":
        perfect = population.assign(**{f"{kind}_uplift": population["true_effect"].to_numpy(dtype="float64")})
        value = offer_values(perfect, kind, policy)["expected_incremental_value"].to_numpy()
    elif strategy == "oracle":
        value = population["true_incremental_value"].to_numpy(dtype="float64")
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    positions = np.flatnonzero(np.nan_to_num(value, nan=-np.inf) > 0)
    return positions[np.argsort(-value[positions], kind="stable")][:budget]


def true_incremental_value(population: pd.DataFrame, truth: pd.DataFrame, kind: str, config: Config) -> np.ndarray:
    """True effect x true value - contact cost - true expected offer cost of a ``kind`` contact, per row."""
    policy = config.policy
    joined = population[["customer_id", "_month"]].merge(truth, on=["customer_id", "_month"], how="left")
    if kind == "retention":
        effect, value = joined["campaign_effect"], joined["expected_clv_12m"]
        cost = policy.retention_contact_cost + joined["retention_offer_cost"]
    else:
        effect = joined["upgrade_campaign_effect"]
        value = population["value_tier"].astype("object").map(policy.upgrade_value_gain).reset_index(drop=True)
        cost = policy.upgrade_contact_cost + joined["upgrade_offer_cost"]
    return (effect.to_numpy(dtype="float64") * value.to_numpy(dtype="float64") - cost.to_numpy(dtype="float64"))


def estimate_from_contacts(chosen_keys: pd.DataFrame, contacts: pd.DataFrame, kind: str, config: Config) -> tuple[float, float, int]:
    """Inverse-propensity estimate of the incremental value per contact among the randomized contacts of the chosen
    customers: (value per contact, its standard error, randomized contacts used).

    ``contacts`` are :func:`training.uplift.contact_rows` with ``_month``, ``gain`` (the value the row yields:
    retention ``(outcome - 1) x value``, upgrade ``outcome x value``, minus the offer cost paid by a treated acceptor)
    and ``propensity`` (treated share of the row's campaign).
    """
    policy = config.policy
    rows = contacts.merge(chosen_keys, on=["customer_id", "_month"], how="inner")
    w = rows["treated"].to_numpy(dtype=bool)
    if w.sum() < 2 or (~w).sum() < 2:
        return float("nan"), float("nan"), len(rows)
    e = rows["propensity"].to_numpy(dtype="float64")
    gain = rows["gain"].to_numpy(dtype="float64")
    means, variances = [], []
    for arm, weight in ((w, 1 / e), (~w, 1 / (1 - e))):
        g, k = gain[arm], weight[arm] / weight[arm].sum()
        mean = float((k * g).sum())
        means.append(mean)
        variances.append(float((k**2 * (g - mean) ** 2).sum()))
    contact = policy.retention_contact_cost if kind == "retention" else policy.upgrade_contact_cost
    return means[0] - means[1] - contact, float(np.sqrt(sum(variances))), len(rows)


@dataclass
class BacktestResult:
    kind: str
    budget: int
    months: list[str]
    currency: str
    strategies: list[dict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        keys = ("name", "contacts", "true_incremental_value", "estimated_incremental_value")
        return {"strategies": [{k: s[k] for k in keys} for s in self.strategies]}

    def figure(self, name: str, key: str = "true_incremental_value"):
        for s in self.strategies:
            if s["name"] == name:
                return s[key]
        return None

    def render(self) -> str:
        c = self.currency
        oracle = self.figure("oracle")
        width = max([16] + [len(s["name"]) + 2 for s in self.strategies])
        lines = [f"{self.kind} backtest, budget {self.budget:,} contacts per month, months {', '.join(self.months)} ({c}, net of contact and offer costs)",
                 f"  {'strategy':<{width}}{'contacts':>10}{'true value':>16}{'/ oracle':>10}{'estimated (randomized contacts)':>34}"]
        for s in self.strategies:
            true = s["true_incremental_value"]
            ratio = f"{true / oracle:>10.2f}" if (true is not None and oracle) else f"{'-':>10}"
            true_text = f"{true:>16,.0f}" if true is not None else f"{'-':>16}"
            est = s["estimated_incremental_value"]
            est_text = f"{est:,.0f} +/- {s['estimated_standard_error']:,.0f} (n={s['randomized_contacts']})" if est is not None else "-"
            lines.append(f"  {s['name']:<{width}}{s['contacts']:>10,}{true_text}{ratio}{est_text:>34}")
        baseline, uplift = self.figure("risk_x_value"), self.figure("uplift_x_value")
        if oracle is not None and baseline is not None and uplift is not None and oracle != baseline:
            lines.append(f"  uplift x value closes {(uplift - baseline) / (oracle - baseline):.0%} of the oracle's margin over risk x value "
                         f"({c} {oracle - baseline:,.0f})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _ground_truth(raw_dir: Path | None) -> pd.DataFrame | None:
    from features.contract import GROUND_TRUTH_TABLE
    from features.raw import find_table

    if raw_dir is None or not Path(raw_dir).is_dir():
        return None
    source = find_table(Path(raw_dir), GROUND_TRUTH_TABLE)
    if source is None:
        return None
    columns = ["customer_id", "month", "campaign_effect", "upgrade_campaign_effect", "expected_clv_12m",
               "retention_offer_cost", "upgrade_offer_cost"]
    try:
        truth = source.read_pandas(columns=columns)
    except (KeyError, ValueError):
        return None
    return truth.assign(_month=pd.to_datetime(truth["month"]).dt.to_period("M")).drop(columns="month")


def run_backtest(kind: str, config: Config, *, budget: int, features_path: Path, raw_dir: Path | None = None,
                 months: list[str] | None = None, seed: int = 0) -> BacktestResult:
    """Backtest every strategy on the newest labeled months (the uplift model's test months when it has them)."""
    from features.feature_set import read_feature_table
    from serving.runtime.bundle import load_bundle
    from training.registry import champion_uri
    from training.uplift import champion_uplift_bundles, contact_rows, get_uplift_spec, read_contacts, with_uplift

    if kind not in ("retention", "upgrade"):
        raise ValueError(f"backtest kind must be retention or upgrade, not {kind!r}")
    if budget <= 0:
        raise ValueError(f"budget must be a positive number of contacts, got {budget}")
    spec = get_uplift_spec(f"{kind}-uplift")
    frame, metadata = read_feature_table(features_path)
    raw_dir = Path(raw_dir or metadata.get("raw_dir") or config.paths.raw_dir)
    frame = frame.loc[spec.base.eligible(frame, config)].assign(_month=lambda f: f["as_of"].dt.to_period("M"))
    uplift = champion_uplift_bundles(config)
    notes = []
    if months is None:
        tested = (uplift.get(kind).metadata.get("test_months") if kind in uplift else None)
        labeled = sorted(frame["_month"].unique())
        months = tested or [str(m) for m in labeled[-config.training.test_months:]]
        if tested:
            notes.append("months: the uplift model's test months, never seen in its training or tuning")
    wanted = {pd.Period(m, "M") for m in months}
    frame = frame.loc[frame["_month"].isin(wanted)].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"feature table {features_path} has no labeled {spec.base.label} rows in months {', '.join(months)}")

    scores = frame.copy()
    needed = (("churn", "churn_probability"), ("clv", "clv_12m_predicted")) if kind == "retention" else (("upgrade", "upgrade_probability"),)
    for model, column in needed:
        uri = champion_uri(model)
        if uri is None:
            raise ValueError(f"no champion {model} model: train and promote it first (custbase train {model}; custbase promote {model})")
        scores[column] = load_bundle(uri).predict(frame)
    if kind == "retention":  # the label column gives way to the CLV model's prediction
        scores = scores.drop(columns=["clv_12m"]).rename(columns={"clv_12m_predicted": "clv_12m"})
    if kind not in uplift:
        notes.append(f"no champion {spec.name} model: uplift x value falls back to the policy's rule of thumb")
    scores = with_uplift(scores, uplift)
    truth = _ground_truth(raw_dir)
    if truth is not None:
        scores["true_incremental_value"] = true_incremental_value(scores, truth, kind, config)
        effect = "campaign_effect" if kind == "retention" else "upgrade_campaign_effect"
        scores["true_effect"] = scores[["customer_id", "_month"]].merge(truth, on=["customer_id", "_month"], how="left")[effect].to_numpy()

    contacts = _randomized_contacts(frame, raw_dir, spec, kind, scores, config, notes)
    results = []
    for name in STRATEGIES:
        if name in TRUTH_STRATEGIES and truth is None:
            continue
        chosen_keys, true_total, count = [], 0.0, 0
        for month, population in scores.groupby("_month", sort=True):
            population = population.reset_index(drop=True)
            picked = choose(population, name, kind, budget, config, seed=seed)
            count += len(picked)
            chosen_keys.append(population.iloc[picked][["customer_id", "_month"]])
            if truth is not None:
                true_total += float(np.nansum(population["true_incremental_value"].to_numpy()[picked]))
        keys = pd.concat(chosen_keys) if chosen_keys else pd.DataFrame(columns=["customer_id", "_month"])
        per_contact, se, n = estimate_from_contacts(keys, contacts, kind, config) if contacts is not None else (float("nan"),) * 2 + (0,)
        results.append({
            "name": name,
            "contacts": int(count),
            "true_incremental_value": round(true_total, 2) if truth is not None else None,
            "estimated_incremental_value": round(per_contact * count, 2) if np.isfinite(per_contact) else None,
            "estimated_standard_error": round(se * count, 2) if np.isfinite(se) else None,
            "randomized_contacts": n,
        })
    return BacktestResult(kind, budget, [str(m) for m in sorted(wanted)], config.value_tiers.currency, results, notes)


def _randomized_contacts(frame, raw_dir, spec, kind, scores, config, notes) -> pd.DataFrame | None:
    """The randomized contacts of the months, with the value of a success and the offer cost paid."""
    from training.uplift import contact_rows, read_contacts

    try:
        raw = read_contacts(raw_dir)
    except FileNotFoundError:
        notes.append("no campaign_contacts table: no estimates from randomized contacts")
        return None
    exploration = raw["campaign_id"].astype("str").str.endswith("-exploration")
    if exploration.any():
        raw = raw.loc[exploration]
        notes.append("estimates use the exploration samples (randomized across the base)")
    raw = raw.assign(propensity=raw.groupby("campaign_id")["treated"].transform("mean"))
    raw = raw.loc[(raw["propensity"] > 0) & (raw["propensity"] < 1)]
    try:
        rows = contact_rows(frame.drop(columns=["_month"]), raw, spec, config)
    except ValueError as err:
        notes.append(f"no estimates from randomized contacts: {err}")
        return None
    extra = raw[["customer_id", "campaign_id", "propensity", "responded"]]
    rows = rows.merge(extra, on=["customer_id", "campaign_id"], how="left")
    rows["_month"] = rows["as_of"].dt.to_period("M")
    priced = rows[["customer_id", "_month"]].merge(scores[["customer_id", "_month", "value_tier", "aum_month_end",
                                                           *(["clv_12m"] if kind == "retention" else [])]],
                                                   on=["customer_id", "_month"], how="left")
    policy = config.policy
    aum = priced["aum_month_end"].fillna(0).to_numpy(dtype="float64")
    if kind == "retention":
        value = priced["clv_12m"].to_numpy(dtype="float64")
        rate = policy.retention_offer_rate
    else:
        value = priced["value_tier"].astype("object").map(policy.upgrade_value_gain).to_numpy(dtype="float64", na_value=np.nan)
        rate = policy.upgrade_offer_rate
    outcome = rows["outcome"].to_numpy(dtype="float64")
    offer_paid = rows["treated"].to_numpy() * rows["responded"].astype("bool").to_numpy() * rate * aum
    rows["gain"] = (outcome - 1 if kind == "retention" else outcome) * np.nan_to_num(value) - offer_paid
    return rows


def write_backtest_json(result: BacktestResult, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
