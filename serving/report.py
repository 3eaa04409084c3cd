"""The customer-base report: one self-contained HTML page from the customer-month table and the latest scores.

Sections follow how managers of a tiered personal customer base read it: tier structure over time, the month's
tier migration, where value concentrates, how sticky each tier is, the value x risk matrix, value at risk and
expected CLV by tier, score distributions, the campaign lists, drift of the scoring run and the backtest. Each
chart carries a one-line reading computed from the data (what moved since the previous month).

Charts are matplotlib PNGs inlined as base64, so the page needs no network and no other file. The analysis
functions take frames and return frames; :func:`write_base_report` is the only one that reads files.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config
from serving.monitoring import subplots

#: The customer-month columns the report reads, in one place (a renamed column is changed here only).
COLUMNS = {
    "customer": "customer_id",
    "month": "as_of",
    "tier": "value_tier",
    "aum": "aum_month_end",
    "revenue": "net_revenue_12m",
    "products": "product_count",
    "months_since_salary": "months_since_last_salary",
    "digital_share": "digital_share_3m",
    "months_since_activity": "months_since_last_activity",
    "dormant": "is_dormant",
}
EXITED = "exited"
#: Churn probability bands and CLV quantile bands of the value x risk matrix.
CHURN_BANDS = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50, 1.0001)
VALUE_BANDS = 5


# --------------------------------------------------------------------------------------------- analysis


def month_key(values: pd.Series) -> pd.Series:
    """YYYY-MM of each date."""
    return pd.to_datetime(values).dt.to_period("M").astype("str")


def tier_structure(frame: pd.DataFrame, tiers: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers and AUM by month (rows) and value tier (columns, in tier order)."""
    c = COLUMNS
    month = month_key(frame[c["month"]])
    tier = frame[c["tier"]].astype("str")
    customers = pd.crosstab(month, tier).reindex(columns=list(tiers), fill_value=0)
    aum = frame.groupby([month, tier])[c["aum"]].sum().unstack(fill_value=0.0).reindex(columns=list(tiers), fill_value=0.0)
    customers.index.name = aum.index.name = "as_of"
    return customers, aum


def migration_matrix(before: pd.DataFrame, after: pd.DataFrame, tiers: tuple[str, ...]) -> pd.DataFrame:
    """Customers by tier in the earlier month (rows) and in the later one (columns; ``exited`` = no longer active)."""
    c = COLUMNS
    joined = before[[c["customer"], c["tier"]]].merge(after[[c["customer"], c["tier"]]], on=c["customer"], how="left",
                                                     suffixes=("_from", "_to"))
    to = joined[f"{c['tier']}_to"].astype("object").where(joined[f"{c['tier']}_to"].notna(), EXITED).astype("str")
    matrix = pd.crosstab(joined[f"{c['tier']}_from"].astype("str"), to)
    matrix = matrix.reindex(index=list(tiers), columns=[*tiers, EXITED], fill_value=0)
    matrix.index.name, matrix.columns.name = "from", "to"
    return matrix


def migration_summary(matrix: pd.DataFrame) -> dict[str, int]:
    """Upgrades (to a higher tier), downgrades, stayers and exits in a migration matrix."""
    tiers = list(matrix.index)
    rank = {t: i for i, t in enumerate(tiers)}
    out = {"upgrades": 0, "downgrades": 0, "stayed": 0, EXITED: int(matrix[EXITED].sum())}
    for source in tiers:
        for target in tiers:
            n = int(matrix.loc[source, target])
            key = "stayed" if source == target else "upgrades" if rank[target] > rank[source] else "downgrades"
            out[key] += n
    return out


def lorenz_curve(values) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of customers (x) and of the total (y), customers sorted from smallest to largest value."""
    v = np.sort(np.clip(np.asarray(values, dtype="float64"), 0, None))
    v = v[~np.isnan(v)]
    total = v.sum()
    x = np.linspace(0, 1, len(v) + 1)
    y = np.concatenate([[0.0], np.cumsum(v) / total]) if total > 0 else x
    return x, y


def top_share(values, share: float = 0.1) -> float:
    """Share of the (non-negative) total held by the top ``share`` of customers."""
    v = np.sort(np.clip(np.asarray(values, dtype="float64"), 0, None))[::-1]
    v = v[~np.isnan(v)]
    k = max(int(np.ceil(len(v) * share)), 1)
    return float(v[:k].sum() / v.sum()) if v.sum() > 0 else float("nan")


def stickiness(month: pd.DataFrame, tiers: tuple[str, ...]) -> pd.DataFrame:
    """Per tier: customers, products per customer, payroll share (salary credited in the as_of month), digital share
    of transactions, mean months since last activity, dormant share."""
    c = COLUMNS
    frame = pd.DataFrame({
        "tier": month[c["tier"]].astype("str"),
        "products_per_customer": month[c["products"]].astype("float64"),
        "payroll_share": (month[c["months_since_salary"]] == 0).astype("float64"),
        "digital_share": month[c["digital_share"]].astype("float64"),
        "months_since_last_activity": month[c["months_since_activity"]].astype("float64"),
        "dormant_share": month[c["dormant"]].astype("float64") if c["dormant"] in month else np.nan,
    })
    out = frame.groupby("tier").agg(customers=("tier", "size"), **{k: (k, "mean") for k in frame.columns if k != "tier"})
    return out.reindex(list(tiers)).dropna(how="all")


def value_risk_matrix(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers and value at risk by CLV quintile (rows, highest first) and churn-probability band (columns)."""
    clv = scores["clv_12m"].astype("float64")
    value_band = pd.qcut(clv.rank(method="first"), VALUE_BANDS, labels=[f"Q{i}" for i in range(1, VALUE_BANDS + 1)])
    edges = pd.Series(clv).groupby(value_band, observed=False).agg(["min", "max"])
    names = {q: f"{q} CLV {row['min']:,.0f}-{row['max']:,.0f}" for q, row in edges.iterrows()}
    labels = [f"{lo:.0%}-{min(hi, 1):.0%}" for lo, hi in zip(CHURN_BANDS[:-1], CHURN_BANDS[1:])]
    risk_band = pd.cut(scores["churn_probability"].astype("float64"), CHURN_BANDS, labels=labels, right=False)
    counts = pd.crosstab(value_band.map(names), risk_band).reindex(columns=labels, fill_value=0)
    risk = scores.groupby([value_band.map(names), risk_band], observed=False)["value_at_risk"].sum().unstack(fill_value=0.0)
    order = [names[q] for q in reversed(list(names))]
    return counts.reindex(order), risk.reindex(index=order, columns=labels, fill_value=0.0)


def by_tier(scores: pd.DataFrame, tiers: tuple[str, ...]) -> pd.DataFrame:
    """Per tier: customers, expected CLV (mean and total), value at risk (total), mean churn and upgrade probability."""
    out = scores.groupby(scores["value_tier"].astype("str")).agg(
        customers=("customer_id", "size"), clv_mean=("clv_12m", "mean"), clv_total=("clv_12m", "sum"),
        value_at_risk=("value_at_risk", "sum"), churn_probability=("churn_probability", "mean"),
        upgrade_probability=("upgrade_probability", "mean"))
    return out.reindex([t for t in tiers if t in out.index])


# --------------------------------------------------------------------------------------------- rendering helpers


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _change(now: float, before: float | None, *, pct: bool = False, money: bool = False) -> str:
    if before is None or (isinstance(before, float) and np.isnan(before)):
        return ""
    delta = now - before
    if pct:
        return f" ({delta * 100:+.1f} pt)"
    if money or abs(delta) >= 10 or float(delta).is_integer():
        return f" ({delta:+,.0f})"
    return f" ({delta:+,.2f})"


def _fmt_table(frame: pd.DataFrame, formats: dict[str, str] | None = None, default: str = "{:,.0f}") -> str:
    formats = formats or {}
    shown = frame.copy()
    for column in shown.columns:
        fmt = formats.get(str(column), default)
        if pd.api.types.is_numeric_dtype(shown[column]):
            shown[column] = [("" if pd.isna(v) else fmt.format(v)) for v in shown[column]]
    return shown.to_html(border=0, classes="data", escape=True)


@dataclass
class Section:
    """One section of the page: a title, the one-line reading, and a chart and/or a table (HTML)."""

    anchor: str
    title: str
    reading: str
    image: str | None = None
    table: str | None = None
    note: str | None = None

    def html(self) -> str:
        parts = [f'<section id="{self.anchor}"><h2>{html.escape(self.title)}</h2>',
                 f'<p class="reading">{html.escape(self.reading)}</p>']
        if self.image:
            parts.append(f'<img alt="{html.escape(self.title)}" src="data:image/png;base64,{self.image}">')
        if self.table:
            parts.append(f'<div class="table">{self.table}</div>')
        if self.note:
            parts.append(f'<p class="note">{html.escape(self.note)}</p>')
        return "\n".join(parts) + "</section>"


# --------------------------------------------------------------------------------------------- sections


def section_tiers(frame: pd.DataFrame, tiers: tuple[str, ...], as_of: str, previous: str | None, currency: str) -> Section:
    customers, aum = tier_structure(frame, tiers)
    fig, axes = subplots(1, 2, figsize=(11, 3.6))
    axes[0].stackplot(range(len(customers)), customers.T.to_numpy(), labels=list(tiers), alpha=0.85)
    axes[0].set_title("Customers by value tier")
    axes[1].stackplot(range(len(aum)), (aum / 1e6).T.to_numpy(), labels=list(tiers), alpha=0.85)
    axes[1].set_title(f"AUM by value tier (million {currency})")
    step = max(len(customers) // 12, 1)
    for ax in axes:
        ax.set_xticks(range(0, len(customers), step), customers.index[::step], rotation=60, fontsize=7)
        ax.axvline(list(customers.index).index(as_of), color="k", lw=0.8, ls=":")
    axes[0].legend(loc="upper left", fontsize=8)
    now, before = customers.loc[as_of], customers.loc[previous] if previous else None
    share_now = aum.loc[as_of] / aum.loc[as_of].sum()
    share_before = aum.loc[previous] / aum.loc[previous].sum() if previous else None
    top = tiers[-2:]
    moves = ", ".join(f"{t} {int(now[t]):,}{_change(float(now[t]), float(before[t]) if before is not None else None)}" for t in tiers)
    reading = (f"{as_of}: {int(now.sum()):,} active customers{_change(float(now.sum()), float(before.sum()) if before is not None else None)}"
               f" - {moves}; the top two tiers hold {share_now[list(top)].sum():.1%} of AUM"
               f"{_change(float(share_now[list(top)].sum()), float(share_before[list(top)].sum()) if share_before is not None else None, pct=True)}"
               f"{' vs ' + previous if previous else ''}.")
    table = pd.DataFrame({"customers": now, "customer_share": now / now.sum(), "aum": aum.loc[as_of], "aum_share": share_now})
    return Section("tiers", "Tier structure over time", reading, _png(fig),
                   _fmt_table(table, {"customer_share": "{:.1%}", "aum_share": "{:.1%}"}))


def section_migration(before: pd.DataFrame, after: pd.DataFrame, tiers: tuple[str, ...], previous: str, as_of: str,
                      earlier: pd.DataFrame | None = None) -> Section:
    matrix = migration_matrix(before, after, tiers)
    rates = matrix.div(matrix.sum(axis=1).replace(0, np.nan), axis=0)
    summary = migration_summary(matrix)
    fig, ax = subplots(figsize=(7, 3.6))
    ax.imshow(rates.fillna(0).to_numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(rates.shape[0]):
        for j in range(rates.shape[1]):
            n = int(matrix.iloc[i, j])
            ax.text(j, i, f"{n:,}\n{rates.iloc[i, j]:.1%}" if n else "0", ha="center", va="center", fontsize=8,
                    color="white" if (rates.iloc[i, j] or 0) > 0.6 else "black")
    ax.set_xticks(range(rates.shape[1]), rates.columns, rotation=30, fontsize=8)
    ax.set_yticks(range(rates.shape[0]), rates.index, fontsize=8)
    ax.set(xlabel=f"tier at {as_of}", ylabel=f"tier at {previous}", title=f"Tier migration {previous} -> {as_of} (count, row rate)")
    prior = ""
    if earlier is not None:
        last = migration_summary(migration_matrix(earlier, before, tiers))
        prior = (f" (previous month: {last['upgrades']:,} up, {last['downgrades']:,} down, {last[EXITED]:,} exited)")
    joined = int((~after[COLUMNS["customer"]].isin(before[COLUMNS["customer"]])).sum())
    reading = (f"{previous} -> {as_of}: {summary['upgrades']:,} customers moved up a tier, {summary['downgrades']:,} moved "
               f"down, {summary[EXITED]:,} left the active base and {joined:,} joined it{prior}; "
               f"{summary['stayed'] / max(matrix.to_numpy().sum(), 1):.1%} kept their tier.")
    table = _fmt_table(matrix.astype("int64"))
    return Section("migration", "Month-over-month tier migration", reading, _png(fig), table)


def section_concentration(month: pd.DataFrame, before: pd.DataFrame | None, as_of: str, previous: str | None) -> Section:
    c = COLUMNS
    fig, ax = subplots(figsize=(5.2, 4))
    for column, label in ((c["aum"], "AUM"), (c["revenue"], "net revenue 12m")):
        x, y = lorenz_curve(month[column])
        ax.plot(x, y, label=f"{label} (top 10%: {top_share(month[column]):.1%})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8, label="equal")
    ax.set(xlabel="share of customers (smallest first)", ylabel="share of total", title=f"Value concentration at {as_of}")
    ax.legend(fontsize=8)
    aum_now, rev_now = top_share(month[c["aum"]]), top_share(month[c["revenue"]])
    aum_before = top_share(before[c["aum"]]) if before is not None else None
    rev_before = top_share(before[c["revenue"]]) if before is not None else None
    reading = (f"The top decile of customers holds {aum_now:.1%} of AUM{_change(aum_now, aum_before, pct=True)} and "
               f"brings {rev_now:.1%} of 12-month net revenue{_change(rev_now, rev_before, pct=True)}"
               f"{' vs ' + previous if previous else ''}.")
    return Section("concentration", "Value concentration", reading, _png(fig))


def section_stickiness(month: pd.DataFrame, before: pd.DataFrame | None, tiers: tuple[str, ...], as_of: str,
                       previous: str | None) -> Section:
    now = stickiness(month, tiers)
    then = stickiness(before, tiers) if before is not None else None
    measures = ["products_per_customer", "payroll_share", "digital_share", "months_since_last_activity"]
    fig, axes = subplots(1, 4, figsize=(12, 3))
    for ax, measure in zip(axes, measures):
        ax.bar(range(len(now)), now[measure], color="#4472c4")
        if then is not None:
            ax.scatter(range(len(now)), then.reindex(now.index)[measure], color="k", marker="_", s=200, label=previous)
        ax.set_xticks(range(len(now)), now.index, rotation=30, fontsize=8)
        ax.set_title(measure.replace("_", " "), fontsize=9)
    if then is not None:
        axes[0].legend(fontsize=7)
    changes = []
    if then is not None:
        delta = (now[measures] - then.reindex(now.index)[measures])
        scale = then[measures].abs().mean().replace(0, np.nan)
        tier, measure = (delta / scale).abs().stack().idxmax()
        changes.append(f"largest move since {previous}: {measure.replace('_', ' ')} of {tier} "
                       f"{then.loc[tier, measure]:.2f} -> {now.loc[tier, measure]:.2f}")
    stickiest = now["products_per_customer"].idxmax()
    reading = (f"{stickiest} customers are the stickiest ({now.loc[stickiest, 'products_per_customer']:.1f} products, "
               f"{now.loc[stickiest, 'payroll_share']:.0%} with payroll); "
               + ("; ".join(changes) if changes else "no previous month to compare") + ".")
    table = _fmt_table(now, {m: "{:.2f}" for m in now.columns if m != "customers"} | {
        "payroll_share": "{:.1%}", "digital_share": "{:.1%}", "dormant_share": "{:.1%}"})
    return Section("stickiness", "Stickiness by tier", reading, _png(fig), table,
                   "Bars: the as_of month; dashes: the previous month. Payroll: salary credited in the month.")


def section_value_risk(scores: pd.DataFrame, currency: str) -> Section:
    counts, risk = value_risk_matrix(scores)
    fig, ax = subplots(figsize=(8, 3.8))
    image = ax.imshow(risk.to_numpy() / 1e3, cmap="Reds", aspect="auto")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts.iloc[i, j]):,}\n{risk.iloc[i, j] / 1e3:,.0f}k", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(counts.shape[1]), counts.columns, fontsize=8)
    ax.set_yticks(range(counts.shape[0]), counts.index, fontsize=8)
    ax.set(xlabel="churn probability band", title=f"Value x risk: customers and value at risk (thousand {currency})")
    fig.colorbar(image, ax=ax, label=f"value at risk (k {currency})")
    hot = risk.stack().idxmax()
    total = float(scores["value_at_risk"].sum())
    reading = (f"{float(risk.loc[hot]) / total:.0%} of the {total:,.0f} {currency} value at risk sits in one cell: {hot[0]} "
               f"with churn probability {hot[1]} ({int(counts.loc[hot]):,} customers).")
    return Section("value-risk", "Value x risk matrix", reading, _png(fig))


def section_tier_value(scores: pd.DataFrame, tiers: tuple[str, ...], currency: str) -> Section:
    table = by_tier(scores, tiers)
    fig, axes = subplots(1, 2, figsize=(10, 3.2))
    axes[0].bar(table.index, table["value_at_risk"] / 1e3, color="#c00000")
    axes[0].set_title(f"Value at risk by tier (k {currency})")
    axes[1].bar(table.index, table["clv_mean"], color="#548235")
    axes[1].set_title(f"Expected 12-month CLV per customer ({currency})")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    share = table["value_at_risk"] / table["value_at_risk"].sum()
    worst = share.idxmax()
    reading = (f"{worst} carries {share[worst]:.0%} of value at risk ({table.loc[worst, 'value_at_risk']:,.0f} {currency}) with "
               f"{table.loc[worst, 'customers']:,} customers; expected CLV per customer ranges from "
               f"{table['clv_mean'].min():,.0f} ({table['clv_mean'].idxmin()}) to {table['clv_mean'].max():,.0f} "
               f"({table['clv_mean'].idxmax()}).")
    return Section("tier-value", "Value at risk and expected CLV by tier", reading, _png(fig),
                   _fmt_table(table, {"churn_probability": "{:.1%}", "upgrade_probability": "{:.1%}"}))


def section_scores(scores: pd.DataFrame, previous_scores: pd.DataFrame | None, policy) -> Section:
    fig, axes = subplots(1, 2, figsize=(10, 3))
    for ax, column, threshold in ((axes[0], "churn_probability", policy.at_risk_churn_probability),
                                  (axes[1], "upgrade_probability", policy.growth_upgrade_probability)):
        values = scores[column].dropna()
        ax.hist(values, bins=40, color="#5b9bd5", label="now")
        if previous_scores is not None:
            ax.hist(previous_scores[column].dropna(), bins=40, histtype="step", color="k", label="previous month")
        ax.axvline(threshold, color="r", ls="--", lw=0.8, label=f"policy threshold {threshold:.0%}")
        ax.set(yscale="log", title=column.replace("_", " "), xlabel="probability")
        ax.legend(fontsize=7)
    at_risk = float((scores["churn_probability"] >= policy.at_risk_churn_probability).mean())
    growth = float((scores["upgrade_probability"] >= policy.growth_upgrade_probability).mean())
    moved = ""
    if previous_scores is not None:
        before = float((previous_scores["churn_probability"] >= policy.at_risk_churn_probability).mean())
        moved = f" ({(at_risk - before) * 100:+.1f} pt vs the previous scoring)"
    else:
        moved = " (no earlier scoring run to compare)"
    reading = (f"Mean churn probability {scores['churn_probability'].mean():.1%}, {at_risk:.1%} of customers at risk"
               f"{moved}; {growth:.1%} show growth potential (upgrade probability >= {policy.growth_upgrade_probability:.0%}).")
    return Section("scores", "Churn and upgrade score distributions", reading, _png(fig))


def section_campaigns(campaigns: dict[str, pd.DataFrame]) -> Section:
    if not campaigns:
        return Section("campaigns", "Campaign lists", "No campaign lists yet: run `custbase campaign retention|upgrade`.")
    rows = []
    for kind, frame in campaigns.items():
        contacted = ~frame["holdout"].astype(bool) if "holdout" in frame.columns else pd.Series(True, index=frame.index)
        rows.append({"campaign": kind, "customers": len(frame), "contacts": int(contacted.sum()),
                     "holdout": int((~contacted).sum()),
                     "expected_value": frame.loc[contacted, "expected_incremental_value"].sum(),
                     "mean_value": frame.loc[contacted, "expected_incremental_value"].mean(),
                     "expected_cost": (frame.loc[contacted, "contact_cost"] + frame.loc[contacted, "offer_cost"]).sum(),
                     **{f"tier_{t}": int(n) for t, n in frame["value_tier"].value_counts().items()}})
    table = pd.DataFrame(rows).set_index("campaign").fillna(0)
    best = table["expected_value"].idxmax()
    reading = ("; ".join(f"{k}: {int(r.contacts):,} contacts and {int(r.holdout):,} held out, expected incremental value {r.expected_value:,.0f}" for k, r in table.iterrows())
               + f"; the {best} list is worth most.")
    return Section("campaigns", "Campaign lists", reading, table=_fmt_table(table))


def section_drift(drift, top_features: int) -> Section:
    if drift is None:
        return Section("drift", "Drift of the scoring run", "No drift check with these scores: score again with "
                       "`custbase score` (every run writes one).")
    shifted = drift.shifted()
    table = drift.table
    shown = pd.concat([table.loc[table["kind"] == "score"],
                       table.loc[table["kind"] == "feature"].groupby("model", sort=False).head(top_features),
                       shifted.groupby("model", sort=False).head(top_features)]).drop_duplicates(subset=["model", "column"])
    hidden = len(shifted) - len(shifted.merge(shown[["model", "column"]], on=["model", "column"]))
    shown = shown.sort_values(["model", "kind", "psi"], ascending=[True, False, False]).set_index(["model", "column"])
    if len(shifted):
        per_model = []
        for model, group in shifted.groupby("model", sort=False):
            names = ", ".join(f"{r.column} {r.psi:.2f}" for r in group.head(5).itertuples())
            per_model.append(f"{model} {len(group)} ({names}{', ...' if len(group) > 5 else ''})")
        reading = (f"DRIFT at {drift.as_of}: features or scores moved from the champions' training data "
                   f"(PSI >= {drift.psi_warn:g}) - " + "; ".join(per_model) + ".")
    else:
        reading = (f"No drift at {drift.as_of}: every profiled feature and score has PSI below {drift.psi_warn:g} "
                   f"(largest {table['psi'].max():.3f}, {table.loc[table['psi'].idxmax(), 'column']}).") if len(table) else \
            "No model carries a reference profile; retrain to enable drift checks."
    note = (f"PSI against each champion's training rows (own population); >= {drift.psi_warn:g} moderate, >= "
            f"{drift.psi_alert:g} major. Shown: the score, the {top_features} most important features of each model, "
            f"and its {top_features} most shifted columns" + (f" ({hidden} more shifted columns in _drift.json)." if hidden else "."))
    if "baseline" in table and table["baseline"].notna().any():
        note += " Compared with: " + "; ".join(f"{m}: {b}" for m, b in table.groupby("model", sort=False)["baseline"].first().items()) + "."
    if drift.models_without_profile:
        note += f" No reference profile: {', '.join(drift.models_without_profile)}."
    styled = shown[["kind", "importance_rank", "psi", "status", "rows"]]
    table_html = _fmt_table(styled, {"psi": "{:.3f}", "importance_rank": "{:.0f}"})
    for status in ("moderate", "major"):
        table_html = table_html.replace(f"<td>{status}</td>", f'<td class="{status}">{status}</td>')
    return Section("drift", "Drift of the scoring run", reading, table=table_html, note=note)


def section_backtest(backtest: pd.DataFrame | None, figure_png: bytes | None) -> Section:
    if backtest is None or backtest.empty:
        return Section("backtest", "Backtest of matured months",
                       "No backtest yet: run `custbase monitor backtest` once label horizons have closed.")
    parts = []
    for model, group in backtest.groupby("model", sort=False):
        last = group.iloc[-1]
        parts.append(f"{model} {last['as_of']}: realized {last['realized']:.4g} vs predicted {last['predicted']:.4g}, "
                     f"{last['discrimination_metric']} {last['discrimination']:.3f}")
    reading = "Newest matured month - " + "; ".join(parts) + "."
    image = base64.b64encode(figure_png).decode("ascii") if figure_png else None
    return Section("backtest", "Backtest of matured months", reading, image,
                   note="Each month scored with the champion of its time; grey months lie in that champion's training "
                        "or validation split, so they are not out-of-time evidence.")


# --------------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:2px solid #4472c4;padding-bottom:4px;margin-top:36px}
.meta{color:#666;font-size:13px} .reading{font-size:15px;background:#f3f6fb;border-left:4px solid #4472c4;padding:8px 12px}
img{max-width:100%;display:block;margin:8px 0} table.data{border-collapse:collapse;font-size:12px;margin:8px 0}
table.data th,table.data td{border:1px solid #ddd;padding:3px 8px;text-align:right} .note{color:#666;font-size:12px}
.alert{background:#fde9e7;border:1px solid #c00000;padding:10px 14px;font-weight:600;color:#900}
td.moderate{background:#fff2cc} td.major{background:#f4b6b0} nav a{margin-right:12px;font-size:13px}
"""


def render_page(title: str, meta: str, sections: list[Section], alerts: list[str]) -> str:
    """The HTML page: a title, alerts, a table of contents, and the sections."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    alert_html = "".join(f'<p class="alert">{html.escape(a)}</p>' for a in alerts)
    body = "\n".join(s.html() for s in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p>"
            f"{alert_html}<nav>{nav}</nav>{body}</body></html>")


def base_report_html(
    config: Config,
    frame: pd.DataFrame,
    *,
    as_of: str | None = None,
    scores: pd.DataFrame | None = None,
    previous_scores: pd.DataFrame | None = None,
    campaigns: dict[str, pd.DataFrame] | None = None,
    drift=None,
    backtest: pd.DataFrame | None = None,
    backtest_png: bytes | None = None,
) -> str:
    """The base report as an HTML string (pure: every input is a frame or value).

    Parameters
    ----------
    frame
        The customer-month table (at least the :data:`COLUMNS`); not modified.
    as_of
        Month to report (YYYY-MM); the newest month of ``frame`` when None.
    scores
        The latest score frame (``serving.batch.read_scores``); the score sections say so when absent.
    """
    tiers = tuple(config.value_tiers.names)
    currency = config.value_tiers.currency
    missing = [c for c in COLUMNS.values() if c not in frame.columns]
    if missing:
        raise ValueError(f"the customer-month table lacks {', '.join(missing)}: the base report needs {', '.join(COLUMNS.values())}")
    months = month_key(frame[COLUMNS["month"]])
    present = sorted(months.unique())
    as_of = as_of or present[-1]
    if as_of not in present:
        raise ValueError(f"the customer-month table has no rows at {as_of} (months {present[0]} to {present[-1]})")
    history = frame.loc[(months <= as_of).to_numpy()]
    hist_months = months[(months <= as_of).to_numpy()]
    position = present.index(as_of)
    previous = present[position - 1] if position > 0 else None
    earlier = present[position - 2] if position > 1 else None
    month = history.loc[(hist_months == as_of).to_numpy()]
    before = history.loc[(hist_months == previous).to_numpy()] if previous else None

    sections = [section_tiers(history, tiers, as_of, previous, currency)]
    if previous:
        sections.append(section_migration(before, month, tiers, previous, as_of,
                                          history.loc[(hist_months == earlier).to_numpy()] if earlier else None))
    sections += [section_concentration(month, before, as_of, previous),
                 section_stickiness(month, before, tiers, as_of, previous)]
    alerts = []
    if scores is not None and len(scores):
        scored_month = str(pd.Timestamp(scores["as_of"].iloc[0]).to_period("M"))
        if scored_month != as_of:
            alerts.append(f"The scores are of {scored_month}, not {as_of}: score sections describe {scored_month}.")
        sections += [section_value_risk(scores, currency), section_tier_value(scores, tiers, currency),
                     section_scores(scores, previous_scores, config.policy)]
    else:
        sections.append(Section("scores", "Scores", "No scores found: run `custbase score --as-of ...` to add the value x "
                                "risk matrix, value at risk, CLV by tier and score distributions."))
    sections += [section_campaigns(campaigns or {}), section_drift(drift, config.monitoring.top_features),
                 section_backtest(backtest, backtest_png)]
    if drift is not None and len(drift.shifted()):
        alerts.insert(0, sections[-2].reading)
    meta = (f"as_of {as_of} | {len(month):,} active customers | {len(present)} months of history ({present[0]} to "
            f"{present[-1]}) | generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return render_page(f"Customer base report {as_of}", meta, sections, alerts)


def write_base_report(config: Config, *, as_of: str | None, out: Path, features_path: Path, scores_dir: Path) -> Path:
    """Read the customer-month table, scores, campaign lists, drift and backtest; write the HTML page atomically."""
    from features.feature_set import read_feature_table
    from serving.batch import SUCCESS_FILE, read_scores
    from serving.monitoring import BACKTEST_FIGURE, BACKTEST_FILE, read_drift

    columns = list(dict.fromkeys(COLUMNS.values()))
    frame, _ = read_feature_table(Path(features_path), columns=columns)
    scores_dir = Path(scores_dir)
    scores = read_scores(scores_dir) if (scores_dir / SUCCESS_FILE).exists() else None
    campaigns = {}
    for kind in ("retention", "upgrade"):
        path = Path(config.paths.campaigns_dir) / f"{kind}.csv"
        if path.exists():
            campaigns[kind] = pd.read_csv(path)
    monitoring_dir = Path(config.paths.data_dir) / "monitoring"
    backtest = pd.read_csv(monitoring_dir / BACKTEST_FILE, dtype={"as_of": "str", "model_version": "str"}) \
        if (monitoring_dir / BACKTEST_FILE).exists() else None
    figure = (monitoring_dir / BACKTEST_FIGURE).read_bytes() if (monitoring_dir / BACKTEST_FIGURE).exists() else None
    page = base_report_html(config, frame, as_of=as_of, scores=scores, campaigns=campaigns,
                            drift=read_drift(scores_dir) if scores is not None else None, backtest=backtest,
                            backtest_png=figure)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
