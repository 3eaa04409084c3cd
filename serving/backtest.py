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
- ``estimate`` (any bank): the doubly robust (AIPW) value from the bank's randomized contacts
  (:mod:`serving.policy_value`: cross-fitted outcome models, every randomized contact of the offer with its known
  assignment probability, campaign lists standing for themselves and the exploration sample for everyone else), with
  ``standard_error``, the 95 % interval, and the paired differences against ``risk_x_value`` and ``random`` on the
  same contacts. It prices a contact at the value the strategy itself uses (retention: the CLV model's prediction),
  so on the simulated bank ``estimand_truth`` (the true effect x that value - the true costs) is what it estimates;
  ``true_incremental_value`` (the true CLV) differs from it by the CLV model's error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config
from serving.policy_value import (CAMPAIGN, EXPLORATION, Z95, OutcomeModels, PolicyEvidence, PolicyValue, residuals,
                                  estimand_truth, gain, model_terms, paired_difference, policy_value)
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


#: The strategies every other one is compared with, on the same randomized contacts.
BASELINES = ("risk_x_value", "random")


@dataclass
class BacktestResult:
    kind: str
    budget: int
    months: list[str]
    currency: str
    strategies: list[dict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "budget": self.budget, "months": self.months, "currency": self.currency,
                "strategies": self.strategies, "notes": self.notes}

    def figure(self, name: str, key: str = "true_incremental_value"):
        for s in self.strategies:
            if s["name"] == name:
                return s.get(key)
        return None

    def render(self) -> str:
        c = self.currency
        oracle = self.figure("oracle")
        width = max([16] + [len(s["name"]) + 2 for s in self.strategies])
        lines = [f"{self.kind} backtest, budget {self.budget:,} contacts per month, months {', '.join(self.months)} ({c}, net of contact and offer costs)",
                 f"  {'strategy':<{width}}{'contacts':>10}{'true value':>14}{'/ oracle':>10}"
                 f"{'estimate [95% interval] (randomized contacts)':>52}{'- risk x value [95%]':>30}"]
        for s in self.strategies:
            true = s["true_incremental_value"]
            ratio = f"{true / oracle:>10.2f}" if (true is not None and oracle) else f"{'-':>10}"
            true_text = f"{true:>14,.0f}" if true is not None else f"{'-':>14}"
            est = s.get("estimate")
            est_text = (f"{est:,.0f} [{s['ci_low']:,.0f}, {s['ci_high']:,.0f}] (n={s['randomized_contacts']})"
                        if est is not None else "-")
            diff = (s.get("differences") or {}).get("risk_x_value")
            diff_text = f"{diff['estimate']:+,.0f} [{diff['ci_low']:+,.0f}, {diff['ci_high']:+,.0f}]" if diff else ""
            lines.append(f"  {s['name']:<{width}}{s['contacts']:>10,}{true_text}{ratio}{est_text:>52}{diff_text:>30}")
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
    from training.uplift import champion_uplift_bundles, get_uplift_spec, read_contacts, with_uplift

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
    all_months = frame
    frame = frame.loc[frame["_month"].isin(wanted)].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"feature table {features_path} has no labeled {spec.base.label} rows in months {', '.join(months)}")

    scores = frame.copy()
    needed = (("churn", "churn_probability"), ("clv", "clv_12m_predicted")) if kind == "retention" else (("upgrade", "upgrade_probability"),)
    bundles = {}
    for model, column in needed:
        uri = champion_uri(model)
        if uri is None:
            raise ValueError(f"no champion {model} model: train and promote it first (custbase train {model}; custbase promote {model})")
        bundles[model] = load_bundle(uri)
        scores[column] = bundles[model].predict(frame)
    if kind == "retention":  # the label column gives way to the CLV model's prediction
        scores = scores.drop(columns=["clv_12m"]).rename(columns={"clv_12m_predicted": "clv_12m"})
    if kind not in uplift:
        notes.append(f"no champion {spec.name} model: uplift x value falls back to the policy's rule of thumb")
    scores = with_uplift(scores, uplift)
    value, price = contact_value(scores, kind, config), offer_price(scores, kind, config)
    truth = _ground_truth(raw_dir)
    if truth is not None:
        scores["true_incremental_value"] = true_incremental_value(scores, truth, kind, config)
        joined = scores[["customer_id", "_month"]].merge(truth, on=["customer_id", "_month"], how="left")
        scores["true_effect"] = joined[spec.oracle_column].to_numpy()
        scores["estimand_truth"] = estimand_truth(joined[spec.oracle_column], value, joined[spec.offer_cost_column],
                                                  _contact_cost(kind, config))

    try:
        evidence = build_evidence(kind, scores, value, price, all_months, read_contacts(raw_dir), config,
                                  feature_columns=bundles[spec.base_model].feature_columns, notes=notes)
    except FileNotFoundError:
        notes.append("no campaign_contacts table: no estimates from randomized contacts")
        evidence = None
    except ValueError as err:
        notes.append(f"no estimates from randomized contacts: {err}")
        evidence = None
    chosen, results = {}, []
    months_of = scores["_month"].to_numpy()
    for name in STRATEGIES:
        if name in TRUTH_STRATEGIES and truth is None:
            continue
        mask = np.zeros(len(scores), bool)
        for month in sorted(wanted):
            positions = np.flatnonzero(months_of == month)
            population = scores.iloc[positions].reset_index(drop=True)
            mask[positions[choose(population, name, kind, budget, config, seed=seed)]] = True
        chosen[name] = mask
        result = {"name": name, "contacts": int(mask.sum()),
                  "true_incremental_value": _total(scores, "true_incremental_value", mask) if truth is not None else None,
                  "estimand_truth": _total(scores, "estimand_truth", mask) if truth is not None else None}
        if evidence is not None:
            estimate = policy_value(mask, evidence)
            result.update(_figures(estimate), randomized_contacts=estimate.randomized_contacts,
                          model_only_contacts=estimate.model_only_contacts, _estimate=estimate)
            result["months"] = [{"month": str(m), **_figures(policy_value(mask & (months_of == m), evidence)),
                                 **({"estimand_truth": _total(scores, "estimand_truth", mask & (months_of == m)),
                                     "true_incremental_value": _total(scores, "true_incremental_value", mask & (months_of == m))}
                                    if truth is not None else {})}
                                for m in sorted(wanted)]
        results.append(result)
    if evidence is not None:
        by_name = {r["name"]: r for r in results}
        for r in results:
            r["differences"] = {base: _difference(r["_estimate"], by_name[base]["_estimate"])
                                for base in BASELINES if base in by_name and base != r["name"]}
        for r in results:
            r.pop("_estimate")
    return BacktestResult(kind, budget, [str(m) for m in sorted(wanted)], config.value_tiers.currency, results, notes)


def _contact_cost(kind: str, config: Config) -> float:
    return config.policy.retention_contact_cost if kind == "retention" else config.policy.upgrade_contact_cost


def contact_value(frame: pd.DataFrame, kind: str, config: Config) -> np.ndarray:
    """The value a success of a ``kind`` contact is priced at (retention: the CLV column, upgrade: the policy's
    value of a step up from the row's tier): the same value the strategies rank by."""
    if kind == "retention":
        return frame["clv_12m"].to_numpy(dtype="float64")
    return frame["value_tier"].astype("object").map(config.policy.upgrade_value_gain).to_numpy(dtype="float64", na_value=np.nan)


def offer_price(frame: pd.DataFrame, kind: str, config: Config) -> np.ndarray:
    """What the bank pays an acceptor of a ``kind`` offer: the offer's rate x the customer's AUM."""
    rate = config.policy.retention_offer_rate if kind == "retention" else config.policy.upgrade_offer_rate
    return rate * frame["aum_month_end"].fillna(0).to_numpy(dtype="float64")


def _total(frame: pd.DataFrame, column: str, mask: np.ndarray) -> float:
    return round(float(np.nansum(frame[column].to_numpy()[mask])), 2)


def _figures(estimate: PolicyValue) -> dict:
    low, high = estimate.ci
    return {"estimate": round(estimate.estimate, 2), "standard_error": round(estimate.standard_error, 2),
            "ci_low": round(low, 2), "ci_high": round(high, 2)}


def _difference(a: PolicyValue, b: PolicyValue) -> dict:
    diff, se = paired_difference(a, b)
    return {"estimate": round(diff, 2), "standard_error": round(se, 2),
            "ci_low": round(diff - Z95 * se, 2), "ci_high": round(diff + Z95 * se, 2)}


def build_evidence(kind: str, population: pd.DataFrame, value, price, labeled: pd.DataFrame, contacts: pd.DataFrame,
                   config: Config, *, feature_columns: list[str], notes: list[str] | None = None) -> PolicyEvidence:
    """The AIPW evidence of the ``population`` months (:class:`serving.policy_value.PolicyEvidence`).

    ``population``: the eligible customer-months the strategies choose from (``customer_id``, ``_month``, the
    features), priced by ``value`` and ``price`` (arrays aligned with it). ``labeled``: every eligible, labeled
    customer-month (the outcome models learn from all randomized contacts of the offer, any month). ``contacts``:
    the raw ``campaign_contacts`` table.
    """
    from training.uplift import contact_rows, get_uplift_spec

    notes = notes if notes is not None else []
    spec = get_uplift_spec(f"{kind}-uplift")
    for column in ("campaign_id", "treated", "responded"):
        if column not in contacts.columns:
            raise ValueError(f"table campaign_contacts ({len(contacts):,} rows) has no column {column}")
    raw = contacts.assign(propensity=contacts.groupby("campaign_id")["treated"].transform("mean"))
    raw = raw.loc[(raw["propensity"] > 0) & (raw["propensity"] < 1)]
    raw = raw.assign(stratum=np.where(raw["campaign_id"].astype("str").str.endswith("-exploration"), EXPLORATION, CAMPAIGN))
    rows = contact_rows(labeled.drop(columns=["_month"], errors="ignore"), raw, spec, config)
    rows = rows.merge(raw[["customer_id", "campaign_id", "propensity", "responded", "stratum"]],
                      on=["customer_id", "campaign_id"], how="left")
    # one randomized contact per customer-month: a campaign list's row stands for its customer, so it wins
    rows = (rows.assign(_order=(rows["stratum"] != CAMPAIGN).astype(int)).sort_values(["_order", "campaign_id"], kind="stable")
            .drop_duplicates(["customer_id", "as_of"]).drop(columns="_order").reset_index(drop=True))
    rows["_month"] = rows["as_of"].dt.to_period("M")
    rows = rows.assign(success=rows["outcome"], accepted=rows["responded"].astype(bool).astype(int))
    models = OutcomeModels(feature_columns).fit(rows)
    retention = kind == "retention"
    mu0, mu1 = model_terms(models.predict(population), value, price, retention=retention)
    contact = _contact_cost(kind, config)
    keys = population[["customer_id", "_month"]].reset_index(drop=True).assign(row=lambda f: np.arange(len(f)))
    tested = rows.merge(keys, on=["customer_id", "_month"], how="inner")
    r = tested["row"].to_numpy()
    y = gain(tested["success"], tested["accepted"], tested["treated"], np.asarray(value)[r], np.asarray(price)[r], retention=retention)
    tested["y"] = y
    tested["r"] = residuals(y, tested["treated"], mu0[r], mu1[r])
    on_campaign = np.zeros(len(keys), bool)
    on_campaign[r[(tested["stratum"] == CAMPAIGN).to_numpy()]] = True
    if not (tested["stratum"] == EXPLORATION).any():
        notes.append("no exploration sample in these months: customers on no randomized campaign list are valued by the "
                     "outcome models alone (model_only_contacts)")
    notes.append(f"estimates: doubly robust (AIPW) on {len(tested):,} randomized contacts of these months "
                 f"({int(on_campaign.sum()):,} on campaign lists, the rest exploration); outcome models cross-fitted on "
                 f"{len(rows):,} randomized contacts of every labeled month")
    pop = keys.assign(tau_model=mu1 - mu0 - contact, on_campaign=on_campaign)
    return PolicyEvidence(pop, tested[["row", "_month", "stratum", "y", "r", "treated", "propensity"]].reset_index(drop=True))


def write_backtest_json(result: BacktestResult, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
