"""Do the campaign estimates tell the truth? Coverage and bias of the AIPW policy values on simulated banks.

``make campaign-coverage`` (a few minutes): for each seed, simulate a small bank, build its features, and value
fixed targeting strategies with :mod:`serving.policy_value` exactly as ``custbase campaign backtest`` does, on the
newest labeled months, for both offers. Each strategy-month is one cell; its truth is what the estimator estimates
(:func:`serving.policy_value.estimand_truth`: the true effect x the value the contact is priced at - the true
costs). Printed: the share of cells whose 95 % interval covers the truth, and the mean of (estimate - truth) in
standard errors (the standard error of that mean from the spread of the seeds' means, since the cells of one bank
share their randomized contacts).

The strategies need no trained model, so that the check is about the estimator: random, the most valuable customers,
the truly most at risk x value, the oracle, and the worst (the most negative true value: sleeping dogs). The value of
a retention success is the simulator's expected CLV, standing in for a CLV model (the estimator takes it as given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config, load_config
from features.build import build_customer_months
from features.contract import GROUND_TRUTH_TABLE
from features.feature_set import CUSTOMER_MONTH_V1, read_feature_table
from features.raw import find_table
from features.simulate import simulate_bank
from serving.backtest import build_evidence, offer_price
from serving.policy_value import Z95, PolicyEvidence, estimand_truth, policy_value
from training.uplift import get_uplift_spec, read_contacts

STRATEGIES = ("random", "top_value", "risk_x_value", "oracle", "worst")


def _truth(raw_dir: Path, config: Config) -> pd.DataFrame:
    names = config.labels.names
    truth = find_table(raw_dir, GROUND_TRUTH_TABLE).read_pandas()
    truth = truth.assign(_month=pd.to_datetime(truth["month"]).dt.to_period("M"))
    return truth.rename(columns={names.clv_oracle: "true_clv", f"churn_probability_{config.labels.churn_horizon_months}m": "true_churn"})


def _pick(strategy: str, month: pd.DataFrame, budget: int, rng) -> np.ndarray:
    n = len(month)
    if strategy == "random":
        return rng.choice(n, size=min(budget, n), replace=False)
    score = {"top_value": month["_value"] + month["_price"],
             "risk_x_value": month["true_churn"].fillna(0) * month["_value"],
             "oracle": month["_truth"], "worst": -month["_truth"]}[strategy].to_numpy(dtype="float64")
    return np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:budget]


def bank_cells(seed: int, config: Config, *, customers: int, months: int, test_months: int, budget_share: float,
               folder: Path) -> list[dict]:
    """Every strategy-month cell of one simulated bank, for both offers."""
    raw_dir, features_path = folder / f"bank-{seed}", folder / f"customer_months-{seed}.parquet"
    settings = config.simulation.model_copy(update={"customers": customers, "months": months, "seed": seed})
    simulate_bank(settings, raw_dir, config=config, progress=False)
    build_customer_months(raw_dir, features_path, config, validate=False, progress=False)
    frame, _ = read_feature_table(features_path)
    truth, contacts = _truth(raw_dir, config), read_contacts(raw_dir)
    policy, cells = config.policy, []
    for kind in ("retention", "upgrade"):
        spec = get_uplift_spec(f"{kind}-uplift")
        labeled = frame.loc[spec.base.eligible(frame, config)].assign(_month=lambda f: f["as_of"].dt.to_period("M"))
        wanted = sorted(labeled["_month"].unique())[-test_months:]
        population = labeled.loc[labeled["_month"].isin(wanted)].reset_index(drop=True)
        joined = population[["customer_id", "_month"]].merge(truth, on=["customer_id", "_month"], how="left")
        value = (joined["true_clv"].to_numpy(dtype="float64") if kind == "retention" else
                 population["value_tier"].astype("object").map(policy.upgrade_value_gain).to_numpy(dtype="float64", na_value=np.nan))
        price = offer_price(population, kind, config)
        contact = policy.retention_contact_cost if kind == "retention" else policy.upgrade_contact_cost
        population = population.assign(_value=np.nan_to_num(value), _price=price, true_churn=joined["true_churn"].to_numpy(),
                                       _truth=estimand_truth(joined[spec.oracle_column], value, joined[spec.offer_cost_column], contact))
        evidence = build_evidence(kind, population, value, price, labeled, contacts, config,
                                  feature_columns=list(CUSTOMER_MONTH_V1.columns))
        # the same estimator on the exploration sample alone (as if the bank kept no campaign holdouts)
        explore_only = PolicyEvidence(evidence.population.assign(on_campaign=False),
                                      evidence.contacts.loc[evidence.contacts["stratum"] == "exploration"].reset_index(drop=True))
        rng = np.random.default_rng(seed)
        months_of = population["_month"].to_numpy()
        for strategy in STRATEGIES:
            for month in wanted:
                positions = np.flatnonzero(months_of == month)
                picked = positions[_pick(strategy, population.iloc[positions], int(budget_share * len(positions)), rng)]
                mask = np.zeros(len(population), bool)
                mask[picked] = True
                estimate = policy_value(mask, evidence)
                before, before_se = ipw_exploration(mask, evidence, contact)
                explore = policy_value(mask, explore_only)
                cells.append({"seed": seed, "kind": kind, "strategy": strategy, "month": str(month),
                              "contacts": int(mask.sum()), "randomized_contacts": estimate.randomized_contacts,
                              "estimate": estimate.estimate, "standard_error": estimate.standard_error,
                              "explore_estimate": explore.estimate, "explore_standard_error": explore.standard_error,
                              "ipw_estimate": before, "ipw_standard_error": before_se,
                              "truth": float(population["_truth"].to_numpy()[mask].sum())})
    return cells


def ipw_exploration(mask: np.ndarray, evidence, contact: float) -> tuple[float, float]:
    """The estimator custbase had before the AIPW one, for comparison: the difference of the inverse-propensity
    weighted (Hajek) arm means of the gain over the exploration contacts of the chosen customers, minus the contact
    cost, times the contacts."""
    rows = evidence.contacts
    rows = rows.loc[mask[rows["row"].to_numpy()] & (rows["stratum"] == "exploration").to_numpy()]
    t = rows["treated"].to_numpy(dtype=bool)
    if t.sum() < 2 or (~t).sum() < 2:
        return float("nan"), float("nan")
    e, y = rows["propensity"].to_numpy(), rows["y"].to_numpy()
    means, variances = [], []
    for arm, weight in ((t, 1 / e), (~t, 1 / (1 - e))):
        k = weight[arm] / weight[arm].sum()
        means.append(float((k * y[arm]).sum()))
        variances.append(float((k**2 * (y[arm] - means[-1]) ** 2).sum()))
    n = int(mask.sum())
    return (means[0] - means[1] - contact) * n, float(np.sqrt(sum(variances))) * n


def summarize(cells: pd.DataFrame, prefix: str = "") -> dict:
    """Coverage of the 95 % intervals and the bias in standard errors, overall and per offer."""
    def one(part: pd.DataFrame) -> dict:
        part = part.loc[part[f"{prefix}estimate"].notna()]
        error = part[f"{prefix}estimate"] - part["truth"]
        part = part.assign(standard_error=part[f"{prefix}standard_error"])
        covered = (error.abs() <= Z95 * part["standard_error"]).mean()
        per_seed = error.groupby(part["seed"]).mean()
        se_of_mean = per_seed.std(ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else float("nan")
        return {"cells": int(len(part)), "coverage_95": round(float(covered), 3),
                "mean_error": round(float(error.mean()), 1), "mean_error_se": round(float(se_of_mean), 1),
                "bias_in_standard_errors": round(float(error.mean() / se_of_mean), 2) if se_of_mean > 0 else None,
                "rmse": round(float(np.sqrt((error**2).mean())), 1),
                "mean_z": round(float((error / part["standard_error"]).mean()), 3),
                "median_standard_error_over_abs_truth": round(float((part["standard_error"] / part["truth"].abs().clip(lower=1)).median()), 2)}
    return {"all": one(cells), **{kind: one(part) for kind, part in cells.groupby("kind")}}


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--customers", type=int, default=8000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--test-months", type=int, default=6)
    parser.add_argument("--budget-share", type=float, default=0.1, help="Share of each month's population a strategy contacts.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/campaign-coverage.json"))
    args = parser.parse_args(argv)
    config = load_config()
    started, cells = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="custbase-coverage-") as folder:
        for seed in range(1, args.seeds + 1):
            cells += bank_cells(seed, config, customers=args.customers, months=args.months, test_months=args.test_months,
                                budget_share=args.budget_share, folder=Path(folder))
            print(f"seed {seed}: {len(cells):,} cells so far ({time.perf_counter() - started:.0f} s)", flush=True)
    table = pd.DataFrame(cells)
    summary, before, explore = summarize(table), summarize(table, "ipw_"), summarize(table, "explore_")
    for label, figures in (("before (IPW, exploration only)", before), ("AIPW, exploration only", explore),
                           ("AIPW, every randomized contact", summary)):
        print(label)
        for name, s in figures.items():
            print(f"  {name:>9}: {s['cells']} strategy-months, 95% intervals cover the truth in {s['coverage_95']:.1%}; "
                  f"mean (estimate - truth) {s['mean_error']:+,.0f} (standard error {s['mean_error_se']:,.0f}: "
                  f"{_signed(s['bias_in_standard_errors'])} standard errors); root mean square error "
                  f"{s['rmse']:,.0f}; median standard error / |truth| {s['median_standard_error_over_abs_truth']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "summary": summary, "before_ipw": before, "aipw_exploration_only": explore,
                                    "seconds": round(time.perf_counter() - started, 1)}, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
