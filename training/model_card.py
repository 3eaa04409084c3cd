"""The Markdown model card logged with every training run.

:func:`render_model_card` is a pure function from a plain dictionary (built by training from what it
already logs) to Markdown text; training writes it with ``mlflow.log_text(text, "model_card.md")``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Metrics where lower is better; the ratio column still reads model / reference.
LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece", "decile_mape", "mae", "rmse"})


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _money(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return _fmt(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _months_text(months: Any) -> str:
    if months is None:
        return "-"
    if isinstance(months, str):
        return months
    months = [str(m)[:7] for m in months]
    if not months:
        return "-"
    if len(months) == 1:
        return months[0]
    # Two entries may be just the bounds; a longer list is every month of the split.
    return f"{months[0]} to {months[-1]}" + (f" ({len(months)} months)" if len(months) > 2 else "")


def _section_model(card: Mapping) -> list[str]:
    model = card.get("model") or {}
    name = model.get("name", "unnamed model")
    lines = [f"# Model card: {name}", ""]
    facts = [
        ("Task", model.get("task")),
        ("Registered model", model.get("registered_name")),
        ("Version", model.get("version")),
        ("MLflow run", model.get("run_id")),
        ("Algorithm", model.get("algorithm")),
        ("Trained at", model.get("trained_at")),
        ("Git commit", model.get("git_commit")),
    ]
    lines += [f"- **{k}**: {_fmt(v)}" for k, v in facts if v is not None]
    return lines + [""]


def _section_verdict(card: Mapping) -> list[str]:
    beats = card.get("beats_baseline")
    if beats is False:
        return ["> **WARNING: the model does NOT beat its baseline on the test months.** "
                "Do not promote it without understanding why.", ""]
    if beats is True:
        return ["> The model beats its baseline on the test months.", ""]
    return []


def _section_intended_use(card: Mapping) -> list[str]:
    use, out_of_scope = card.get("intended_use"), card.get("out_of_scope")
    lines = []
    if use:
        lines += ["## Intended use", "", str(use), ""]
    if out_of_scope:
        items = [out_of_scope] if isinstance(out_of_scope, str) else list(out_of_scope)
        lines += ["## Out-of-scope uses", ""] + [f"- {item}" for item in items] + [""]
    return lines


def _section_data(card: Mapping) -> list[str]:
    data = card.get("data")
    if not data:
        return []
    lines = ["## Data", ""]
    fs = data.get("feature_set")
    if isinstance(fs, Mapping):
        columns = fs.get("columns") or []
        n = fs.get("n_features", len(columns) if columns else None)
        lines.append(f"- **Feature set**: {fs.get('name', '-')} v{fs.get('version', '-')}"
                     + (f" ({n} features)" if n else ""))
    elif fs:
        lines.append(f"- **Feature set**: {fs}")
    rows = data.get("rows")
    if isinstance(rows, Mapping):
        lines.append("- **Rows**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in rows.items()))
    elif rows is not None:
        lines.append(f"- **Rows**: {_fmt(rows)}")
    if data.get("sample"):
        lines.append(f"- **Sample**: {data['sample']}")
    if data.get("as_of_min") or data.get("as_of_max"):
        lines.append(f"- **as_of range**: {data.get('as_of_min', '-')} to {data.get('as_of_max', '-')}")
    if data.get("fingerprint"):
        lines.append(f"- **Data fingerprint**: `{data['fingerprint']}`")
    if data.get("label"):
        horizon = f" (horizon {data['horizon_months']} months)" if data.get("horizon_months") else ""
        lines.append(f"- **Label**: `{data['label']}`{horizon}")
    if data.get("population"):
        lines.append(f"- **Population**: {data['population']}")
    return lines + [""]


def _section_splits(card: Mapping) -> list[str]:
    splits = card.get("splits")
    if not splits:
        return []
    rows = [(name.capitalize(), _months_text(splits.get(name)))
            for name in ("train", "validation", "test") if name in splits]
    lines = ["## Out-of-time splits", ""] + _table(["Split", "as_of months"], rows)
    if splits.get("strategy") not in (None, "full"):
        lines += ["", f"Split chosen for a short history ({splits['strategy']}): {splits.get('choice', '')}."]
    elif _gap_text(splits):
        lines += ["", _gap_text(splits)]
    return lines + [""]


def _gap_text(splits: Mapping) -> str:
    """What the gaps between splits are and what they guarantee, from the split's own figures."""
    horizon = splits.get("horizon_months", splits.get("gap_months"))
    first = splits.get("gap_train_validation", horizon)
    second = splits.get("gap_validation_test", horizon)
    if horizon is None:
        return ""
    if first is not None and first >= horizon and second is not None and second >= horizon:
        return (f"Gaps between splits: {first} and {second} months (at least the {horizon}-month label horizon), "
                "so no label windows overlap.")
    return (f"Gap train -> validation: {first} months, shortened from the {horizon}-month label horizon: label windows "
            f"of the last training months overlap validation's, so early stopping and calibration may be slightly "
            f"optimistic. Gap validation -> test: {second} months, so test labels overlap neither training's nor "
            f"validation's.")


def _section_metrics(card: Mapping) -> list[str]:
    metrics = card.get("metrics")
    if not metrics or not metrics.get("test"):
        return []
    test = metrics["test"]
    baseline = metrics.get("baseline") or {}
    oracle = metrics.get("oracle") or {}
    primary = card.get("primary_metric")
    header = ["Metric", "Model (test)"]
    if baseline:
        header.append(f"Baseline ({metrics.get('baseline_name', 'baseline')})")
    others = metrics.get("other_baselines") or {}
    header += [f"Baseline ({name})" for name in others]
    if oracle:
        header += ["Oracle", "Model / oracle"]
    rows = []
    for name, value in test.items():
        row: list[Any] = [f"**{name}**" if name == primary else name, value]
        if baseline:
            row.append(baseline.get(name))
        row += [figures.get(name) for figures in others.values()]
        if oracle:
            o = oracle.get(name)
            ratio = value / o if isinstance(o, (int, float)) and isinstance(value, (int, float)) and o else None
            row += [o, ratio]
        rows.append(row)
    lines = ["## Test metrics", ""] + _table(header, rows)
    notes = []
    if primary:
        notes.append(f"Primary metric: {primary}.")
    if LOWER_IS_BETTER & set(test):
        notes.append("Lower is better for " + ", ".join(sorted(LOWER_IS_BETTER & set(test))) + ".")
    if oracle and metrics.get("oracle_source") == "continuation":
        notes.append("Oracle: the expected outcome given each customer's true state at as_of, by Monte Carlo "
                     "continuation of the simulated bank.")
    elif oracle:
        notes.append("Oracle: the simulated bank's true probabilities / expected values (ground truth).")
    noise = metrics.get("oracle_noise")
    if noise and primary:
        notes.append(f"Model - oracle on {primary}: {noise['model_minus_oracle']:+.4f} (bootstrap standard error "
                     f"{noise['model_minus_oracle_se']:.4f}" + (f"; oracle extrapolated from {noise['replications']:.0f} "
                     "Monte Carlo replications" if "replications" in noise else "") + ").")
    return lines + ([""] + [" ".join(notes)] if notes else []) + [""]


def _section_calibration(card: Mapping) -> list[str]:
    cal = card.get("calibration")
    if not cal:
        return []
    before, after = cal.get("before") or {}, cal.get("after") or {}
    names = [n for n in ("brier", "ece", "log_loss") if n in before or n in after]
    lines = ["## Calibration", ""]
    if cal.get("method"):
        lines += [f"Method: {cal['method']}, fitted on the validation months.", ""]
    return lines + _table(["Metric", "Before", "After"], [(n, before.get(n), after.get(n)) for n in names]) + [""]


def _section_profit(card: Mapping) -> list[str]:
    profit = card.get("retention_profit")
    if not profit:
        return []
    lines = ["## Retention profit", ""]
    lines.append(f"- **Best expected profit**: {_money(profit.get('best_profit'))}"
                 + (f" ({_money(profit['best_profit_per_customer'])} per customer)" if "best_profit_per_customer" in profit else ""))
    if profit.get("contact_share") is not None:
        lines.append(f"- **Share of customers to contact**: {profit['contact_share']:.1%}"
                     + (f" ({_fmt(profit['contacts'])} customers)" if "contacts" in profit else ""))
    if profit.get("profit_contact_all") is not None:
        lines.append(f"- **Profit if every customer is contacted**: {_money(profit['profit_contact_all'])}")
    econ = profit.get("economics")
    if econ:
        lines.append("- **Economics**: " + ", ".join(f"{k} {_money(v)}" for k, v in dict(econ).items()))
    lines += ["", "Customers contacted in descending order of churn probability x CLV; a contacted churner accepts "
              "with the acceptance rate and is retained (CLV minus incentive), every contact costs the contact cost, "
              "and contacted non-churners who take the incentive cost it without any gain "
              "(see training.evaluation.retention_profit)."]
    return lines + [""]


def _section_drivers(card: Mapping) -> list[str]:
    drivers = card.get("top_drivers")
    if drivers is None or len(drivers) == 0:
        return []
    items = list(drivers.items()) if isinstance(drivers, Mapping) else [tuple(d) for d in drivers]
    descriptions = card.get("descriptions") or {}
    rows = [(i + 1, f"`{feature}`", importance, descriptions.get(feature, ""))
            for i, (feature, importance) in enumerate(items[: card.get("top_drivers_shown", 15)])]
    header = ["Rank", "Feature", "Mean abs. SHAP (raw score)"] + (["Meaning"] if descriptions else [])
    if not descriptions:
        rows = [r[:3] for r in rows]
    return ["## Top drivers (global importance)", ""] + _table(header, rows) + [""]


def _section_params(card: Mapping) -> list[str]:
    params = card.get("hyperparameters")
    if not params:
        return []
    return ["## Hyperparameters", ""] + _table(["Parameter", "Value"], sorted(params.items())) + [""]


def _section_limitations(card: Mapping) -> list[str]:
    limits = card.get("limitations")
    if not limits:
        return []
    items = [limits] if isinstance(limits, str) else list(limits)
    return ["## Limitations", ""] + [f"- {item}" for item in items] + [""]


def fairness_section(card: Mapping) -> list[str]:
    """Markdown lines of the model card's fairness section (none when the card has no ``fairness`` entry)."""
    fairness = card.get("fairness")
    if not fairness:
        return []
    table = fairness["table"]
    flagged = [r for r in table if r.get("flag")]
    lines = ["## Fairness and segments (test months)", ""]
    used = fairness.get("protected_in_features") or []
    if fairness.get("excluded"):
        lines.append("Protected attributes are excluded from the features (`fairness.exclude_protected_attributes`).")
    elif used:
        lines.append(f"The model uses protected attributes as features: {', '.join(used)} "
                     "(set `fairness.exclude_protected_attributes: true` to exclude them).")
    lines += ["", f"> **{len(flagged)} group(s) lag**: " + "; ".join(f"{r['attribute']}={r['group']}: {r['flag']}" for r in flagged)
              if flagged else "> No group lags the overall ROC-AUC or calibration beyond the thresholds.", ""]
    rows = [(r["attribute"], r["group"], int(r["rows"]), int(r["positives"]), r["rate"], r["mean_prediction"], r["roc_auc"],
             r["ece"], r.get("flag") or "") for r in table]
    lines += _table(["Attribute", "Group", "Rows", "Positives", "Rate", "Mean prediction", "ROC-AUC", "ECE", "Flag"], rows)
    t = fairness.get("thresholds") or {}
    lines += ["", f"Flag: ROC-AUC more than {t.get('roc_auc_gap')} (and two standard errors) below overall, or mean "
              f"prediction more than {t.get('calibration_gap')} (and two standard errors) off the group's rate, in groups "
              f"of at least {t.get('min_group_rows')} rows."]
    return lines + [""]


def render_model_card(card: Mapping[str, Any]) -> str:
    """Render a Markdown model card. Every section is optional: a missing or empty one is left out.

    Expected keys of ``card``:

    - ``model``: ``{"name", "task", "registered_name", "version", "run_id", "algorithm", "trained_at",
      "git_commit"}`` (any subset).
    - ``beats_baseline``: bool; False prints a loud warning at the top.
    - ``data``: ``{"feature_set": {"name", "version", "columns" or "n_features"}, "rows": int or
      {"train": n, "validation": n, "test": n}, "as_of_min", "as_of_max", "fingerprint", "population"}``.
    - ``intended_use``: str (what the output is used for); ``out_of_scope``: str or list of str.
    - ``splits``: ``{"train": [months], "validation": [...], "test": [...], "horizon_months": int,
      "gap_train_validation": int, "gap_validation_test": int}`` (``gap_months`` alone: both gaps).
    - ``metrics``: ``{"test": {metric: value}, "baseline": {...}, "baseline_name": str, "oracle": {...}}``;
      the table has a row per test metric and adds the ratio model / oracle.
    - ``primary_metric``: str, shown in bold.
    - ``calibration``: ``{"method": str, "before": {"brier", "ece", "log_loss"}, "after": {...}}``.
    - ``retention_profit``: the dict of :func:`training.evaluation.retention_profit` (the curve is not
      printed) plus optionally ``"economics": {field: value}``.
    - ``top_drivers``: ``{feature: mean |SHAP|}`` or a list of ``(feature, importance)``, largest first;
      ``descriptions``: ``{feature: meaning}``; ``top_drivers_shown``: how many rows (15).
    - ``hyperparameters``: ``{name: value}``.
    - ``limitations``: str or list of str.
    - ``fairness``: :func:`training.fairness.fairness_card` (metrics by age band, gender, value tier with flags).
    """
    lines: list[str] = []
    for section in (_section_model, _section_verdict, _section_intended_use, _section_data, _section_splits,
                    _section_metrics, _section_calibration, _section_profit, fairness_section, _section_drivers, _section_params,
                    _section_limitations):
        lines += section(card)
    return "\n".join(lines).rstrip() + "\n"
