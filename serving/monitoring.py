"""Monitoring: drift of every scoring run against the champions' training data, and the backtest of matured months.

**Drift** (:func:`monitor_scoring_run`, called at the end of every ``custbase score``): each model's features and
score at the scored month are compared with the reference profile stored with the model at training time
(``training.drift``), on the model's own population (churn: customers not dormant; upgrade: below the top tier;
CLV: everyone). The table is written beside the scores as ``_drift.json`` (pyarrow's dataset reader skips files
starting with ``_``), logged to MLflow (experiment ``custbase-monitoring``) and every feature or score whose PSI
reaches ``monitoring.psi_warn`` is printed as a warning naming it.

**Backtest** (:func:`backtest`, ``custbase monitor backtest``): the months whose label horizons have closed are
scored with the champion of that time (from the registry's audit log: the newest champion trained only on months
before the scored one; the first champion otherwise, and the month is marked with its split role so an in-sample
month is not read as out-of-time evidence), and realized outcomes are set against predictions per month.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from custbase.config import Config, Monitoring
from features.definitions import WINDOWS

DRIFT_FILE = "_drift.json"
#: The longest fixed look-back window of a feature; a model trained on months with less history before them saw
#: truncated windows.
LONGEST_WINDOW_MONTHS = max(WINDOWS)
WARNED_COLUMNS = 12  # columns named per model in a printed warning, largest PSI first (all are in _drift.json)
MONITORING_EXPERIMENT = "custbase-monitoring"
#: The score column of each model in a score frame.
SCORE_OF: dict[str, str] = {"churn": "churn_probability", "upgrade": "upgrade_probability", "clv": "clv_12m"}
BACKTEST_FILE = "backtest.csv"
BACKTEST_FIGURE = "backtest.png"


def model_population(frame: pd.DataFrame, model: str, config: Config) -> np.ndarray:
    """Rows of ``model``'s population (its spec's eligibility rule without the label condition): at scoring time the
    outcome is unknown, so the label is taken as known for the test."""
    from training.spec import get_spec

    spec = get_spec(model, config.labels)
    return np.asarray(spec.eligible(frame.assign(**{spec.label: 0.0}), config), dtype=bool)


def drift_status(value: float, settings: Monitoring) -> str:
    """``stable`` below ``psi_warn``, ``moderate`` below ``psi_alert``, else ``major``."""
    if value >= settings.psi_alert:
        return "major"
    return "moderate" if value >= settings.psi_warn else "stable"


def drift_table(features: pd.DataFrame, scores: pd.DataFrame, profiles: dict[str, dict], config: Config) -> pd.DataFrame:
    """PSI of each model's features and score at one month against its reference profile.

    Parameters
    ----------
    features
        The customer-month rows of the scored month (one per customer); not modified.
    scores
        The score frame of the same customers (``customer_id`` and :data:`SCORE_OF` columns).
    profiles
        Model name -> reference profile (``training.drift.reference_profile``); models without one are skipped.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``column``, ``kind`` (feature / score), ``importance_rank``, ``psi``, ``status``, ``rows`` and
        ``baseline`` (the training rows compared: the same calendar month when the profile has it).
    """
    from training.drift import profile_psi

    merged = features.drop(columns=[c for c in SCORE_OF.values() if c in features.columns]).merge(
        scores.loc[:, ["customer_id", *SCORE_OF.values()]], on="customer_id", how="inner", validate="one_to_one")
    months = pd.to_datetime(merged["as_of"]).dt.month.unique() if "as_of" in merged and len(merged) else []
    month = int(months[0]) if len(months) == 1 else None
    parts = []
    for model, profile in profiles.items():
        rows = merged.loc[model_population(merged, model, config)]
        table = profile_psi(profile, rows, rows[SCORE_OF[model]].to_numpy(dtype="float64"), month=month)
        parts.append(table.assign(model=model, rows=len(rows)))
    columns = ["model", "column", "kind", "importance_rank", "psi", "status", "rows", "baseline"]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["status"] = [drift_status(v, config.monitoring) for v in out["psi"]]
    return out.loc[:, columns]


@dataclass
class DriftReport:
    """The drift of one scoring run."""

    as_of: str
    table: pd.DataFrame
    psi_warn: float
    psi_alert: float
    models_without_profile: list[str] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    #: Model -> ``{"data_start", "train_months", "months_before_training"}`` from its reference profile.
    training_history: dict[str, dict] = field(default_factory=dict)

    def shifted(self) -> pd.DataFrame:
        """Rows at or above the warning threshold, largest PSI first."""
        return self.table.loc[self.table["psi"] >= self.psi_warn].sort_values("psi", ascending=False, kind="stable")

    def warnings(self) -> list[str]:
        """One line per model with shifted features or score, naming them with their PSI."""
        lines = []
        shifted = self.shifted()
        for model, group in shifted.groupby("model", sort=False):
            names = ", ".join(f"{r.column} {r.psi:.2f}{' (major)' if r.status == 'major' else ''}"
                              for r in group.head(WARNED_COLUMNS).itertuples())
            more = f" and {len(group) - WARNED_COLUMNS} more (see {DRIFT_FILE})" if len(group) > WARNED_COLUMNS else ""
            lines.append(f"WARNING drift at {self.as_of}: {model} model inputs moved from its training data "
                         f"(PSI >= {self.psi_warn:g}): {names}{more}")
        lines += [f"note: the {m} model has no reference profile (trained before drift monitoring); retrain it to check "
                  "its drift" for m in self.models_without_profile]
        for model in shifted["model"].unique():
            history = self.training_history.get(model) or {}
            months = history.get("months_before_training")
            if months is not None and months < LONGEST_WINDOW_MONTHS:
                lines.append(
                    f"note: the {model} model's training months ({history['train_months']}) begin {months} month(s) after "
                    f"the data does ({history['data_start']}): their windows of up to {LONGEST_WINDOW_MONTHS} months (and the "
                    f"months-in-tier and months-since counts) saw less history than today's rows, so those inputs differ "
                    f"by construction, not by a change in the customers; with {LONGEST_WINDOW_MONTHS}+ months of data before "
                    f"the training months (a longer extract) the comparison is like for like")
        return lines

    def to_dict(self) -> dict:
        return {"as_of": self.as_of, "psi_warn": self.psi_warn, "psi_alert": self.psi_alert,
                "models_without_profile": self.models_without_profile, "model_versions": self.model_versions,
                "training_history": self.training_history,
                "table": self.table.to_dict(orient="records")}

    @classmethod
    def from_dict(cls, data: dict) -> "DriftReport":
        table = pd.DataFrame(data["table"], columns=["model", "column", "kind", "importance_rank", "psi", "status", "rows",
                                                     "baseline"])
        return cls(data["as_of"], table, data["psi_warn"], data["psi_alert"], list(data.get("models_without_profile", [])),
                   dict(data.get("model_versions", {})), dict(data.get("training_history", {})))


def write_drift(report: DriftReport, scores_dir: Path) -> Path:
    """Write ``_drift.json`` beside the scores, atomically."""
    path = Path(scores_dir) / DRIFT_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_drift(scores_dir: Path) -> DriftReport | None:
    """The drift report written with the scores in ``scores_dir``, or None when there is none."""
    path = Path(scores_dir) / DRIFT_FILE
    return DriftReport.from_dict(json.loads(path.read_text())) if path.exists() else None


def _log_to_mlflow(report: DriftReport, config: Config) -> str:
    import mlflow

    from training import tracking

    tracking.configure_tracking(config)
    experiment_id = tracking.ensure_experiment(MONITORING_EXPERIMENT, config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift-{report.as_of}") as run:
        mlflow.set_tags({"as_of": report.as_of, **{f"{m}_model_version": v for m, v in report.model_versions.items()}})
        metrics = {f"psi_{r.model}_{r.column}": float(r.psi) for r in report.table.itertuples()}
        for model, group in report.table.groupby("model"):
            metrics[f"psi_max_{model}"] = float(group["psi"].max())
            metrics[f"shifted_columns_{model}"] = float((group["psi"] >= report.psi_warn).sum())
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report.to_dict(), "drift.json")
        return run.info.run_id


def monitor_scoring_run(config: Config, *, features_path: Path, as_of: str, scores_dir: Path, models,
                        log_to_mlflow: bool = True) -> DriftReport:
    """Drift of a finished scoring run: compute, write beside the scores, log to MLflow, print warnings.

    ``models`` are the :class:`serving.runtime.models.ScoringModels` that scored; a model's reference profile is read
    from its bundle's metadata.
    """
    from features.feature_set import read_feature_table
    from serving.batch import read_scores, select_month

    frame, _ = read_feature_table(Path(features_path))
    month = select_month(frame, as_of)
    scores = read_scores(scores_dir, columns=["customer_id", *SCORE_OF.values()])
    profiles, without = {}, []
    for model in models:
        profile = (getattr(getattr(model, "bundle", None), "metadata", None) or {}).get("reference_profile")
        if profile:
            profiles[model.name] = profile
        else:
            without.append(model.name)
    report = DriftReport(str(pd.Timestamp(month["as_of"].iloc[0]).date())[:7] if len(month) else as_of,
                         drift_table(month, scores, profiles, config), config.monitoring.psi_warn,
                         config.monitoring.psi_alert, without, {m.name: str(m.version) for m in models},
                         {name: p["history"] for name, p in profiles.items() if p.get("history")})
    write_drift(report, scores_dir)
    if log_to_mlflow:
        _log_to_mlflow(report, config)
    for line in report.warnings():
        print(line, file=sys.stderr, flush=True)
    return report


# --------------------------------------------------------------------------------------------- backtest


def _months(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["as_of"]).dt.to_period("M").astype("str")


def split_role(month: str, split: dict) -> str:
    """Where ``month`` (YYYY-MM) sits in a model's out-of-time split: train, validation, test, a gap between them (never
    fitted on), before training or after test."""
    for role in ("train", "validation", "test"):
        if month in {str(m)[:7] for m in split.get(role, [])}:
            return role
    known = sorted(str(m)[:7] for role in ("train", "validation", "test") for m in split.get(role, []))
    if known and month < known[0]:
        return "before training"
    return "gap" if known and month < known[-1] else "after test"


def champion_of_month(month: str, champions: list[tuple[str, object]]) -> tuple[str, object]:
    """The champion of that time: the newest one (oldest first in ``champions``) whose training months all precede
    ``month``; the oldest one when none does."""
    chosen = champions[0]
    for version, bundle in champions:
        train = [str(m)[:7] for m in bundle.metadata.get("split", {}).get("train", [])]
        if train and max(train) < month:
            chosen = (version, bundle)
    return chosen


def backtest_table(frame: pd.DataFrame, champions: dict[str, list[tuple[str, object]]], config: Config,
                   months: int | None = None) -> pd.DataFrame:
    """Realized against predicted per matured month and model.

    Parameters
    ----------
    frame
        The customer-month table with labels; not modified.
    champions
        Model name -> ``[(version, ModelBundle), ...]``, oldest champion first.
    months
        The newest matured months to score (``monitoring.backtest_months`` when None).

    Returns
    -------
    pandas.DataFrame
        ``model``, ``as_of`` (YYYY-MM), ``model_version``, ``split_role``, ``rows``, ``realized`` (rate or mean CLV),
        ``predicted`` (mean), ``calibration_error`` (ECE for binary models, |predicted - realized| / realized for
        CLV), ``discrimination`` (ROC-AUC or normalized Gini) and ``discrimination_metric``.
    """
    from sklearn.metrics import roc_auc_score

    from training.evaluation import expected_calibration_error, normalized_gini
    from training.spec import get_spec

    months = months or config.monitoring.backtest_months
    rows = []
    for model, lineage in champions.items():
        spec = get_spec(model, config.labels)
        if spec.label not in frame.columns:
            continue
        eligible = frame.loc[model_population(frame, model, config) & frame[spec.label].notna().to_numpy()]
        month_of = _months(eligible)
        for month in sorted(month_of.unique())[-months:]:
            part = eligible.loc[(month_of == month).to_numpy()]
            version, bundle = champion_of_month(month, lineage)
            y = part[spec.label].to_numpy(dtype="float64")
            p = bundle.predict(part)
            if spec.kind == "clv":
                p = np.maximum(p, 0.0)
                realized, predicted = float(y.mean()), float(p.mean())
                calibration = abs(predicted - realized) / realized if realized else float("nan")
                discrimination, metric = normalized_gini(y, p), "normalized_gini"
            else:
                realized, predicted = float(y.mean()), float(p.mean())
                calibration = expected_calibration_error(y, p)
                discrimination = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
                metric = "roc_auc"
            rows.append({"model": model, "as_of": month, "model_version": str(version),
                         "split_role": split_role(month, bundle.metadata.get("split", {})), "rows": int(len(part)),
                         "realized": realized, "predicted": predicted, "calibration_error": float(calibration),
                         "discrimination": float(discrimination), "discrimination_metric": metric})
    return pd.DataFrame(rows, columns=["model", "as_of", "model_version", "split_role", "rows", "realized", "predicted",
                                       "calibration_error", "discrimination", "discrimination_metric"])


def subplots(*args, **kwargs):
    """``matplotlib.pyplot.subplots`` without pyplot: a bare Figure never touches the session's backend (a notebook
    keeps its inline figures) and is freed with its last reference."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def backtest_figure(table: pd.DataFrame):
    """Realized vs predicted (top) and discrimination with calibration error (bottom) per month, one column per model;
    months inside the champion's training or validation split are shaded."""
    models = list(dict.fromkeys(table["model"]))
    fig, axes = subplots(2, max(len(models), 1), figsize=(4.6 * max(len(models), 1), 6.4), squeeze=False)
    for i, model in enumerate(models):
        part = table.loc[table["model"] == model]
        x = np.arange(len(part))
        top, bottom = axes[0, i], axes[1, i]
        for ax in (top, bottom):
            for j, role in enumerate(part["split_role"]):
                if role in ("train", "validation"):
                    ax.axvspan(j - 0.5, j + 0.5, color="0.9", lw=0)
        label = "mean CLV" if model == "clv" else "rate"
        top.plot(x, part["realized"], "o-", label=f"realized {label}", color="#1f4e79")
        top.plot(x, part["predicted"], "s--", label=f"predicted {label}", color="#c55a11")
        top.set_title(f"{model}: realized vs predicted")
        top.legend(fontsize=8)
        metric = part["discrimination_metric"].iloc[0]
        bottom.plot(x, part["discrimination"], "o-", color="#375623", label=metric)
        bottom.set_ylim(0, 1.02)
        twin = bottom.twinx()
        twin.plot(x, part["calibration_error"], "^:", color="#7f6000", label="calibration error")
        twin.set_ylabel("calibration error", fontsize=8)
        bottom.set_title(f"{model}: {metric} and calibration error")
        handles = bottom.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        bottom.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower left")
        for ax in (top, bottom):
            ax.set_xticks(x, part["as_of"], rotation=60, fontsize=7)
    fig.suptitle("Backtest of matured months (shaded: in the champion's training or validation months)", fontsize=10)
    fig.tight_layout()
    return fig


def champion_lineages(config: Config, models: tuple[str, ...] = ("churn", "upgrade", "clv")) -> dict[str, list]:
    """Each model's champions from the audit log (oldest first; the current champion when the log is empty)."""
    from training import tracking
    from serving.runtime.bundle import load_bundle
    from training.registry import CHAMPION, alias_version, champion_lineage, read_audit
    from training.spec import get_spec

    tracking.configure_tracking(config)
    out = {}
    for model in models:
        name = get_spec(model).registered_name
        versions = list(dict.fromkeys(champion_lineage(read_audit(config, name))))
        current = alias_version(name, CHAMPION)
        if current is None:
            continue
        if current not in versions:
            versions.append(current)
        out[model] = [(v, load_bundle(f"models:/{name}/{v}")) for v in versions]
    return out


def backtest(config: Config, *, features_path: Path, out_dir: Path, months: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Score the matured months with the champions of their time; write ``backtest.csv`` and ``backtest.png``."""
    from features.feature_set import read_feature_table

    lineages = champion_lineages(config)
    if not lineages:
        raise FileNotFoundError("no champion in the MLflow registry: run `custbase train` and `custbase promote` first")
    frame, _ = read_feature_table(Path(features_path))
    table = backtest_table(frame, lineages, config, months)
    if table.empty:
        raise ValueError(f"{features_path} has no month with matured labels for the champions' populations")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / BACKTEST_FILE, index=False)
    figure = backtest_figure(table)
    figure.savefig(out_dir / BACKTEST_FIGURE, dpi=110)
    return table, out_dir / BACKTEST_FIGURE


def render_backtest(table: pd.DataFrame) -> str:
    """The backtest as text, one line per model and month."""
    lines = [f"{'model':<8} {'as_of':<8} {'version':>7} {'role':<12} {'rows':>7} {'realized':>10} {'predicted':>10} "
             f"{'calib.err':>9} {'discrim.':>8}"]
    for r in table.itertuples():
        lines.append(f"{r.model:<8} {r.as_of:<8} {r.model_version:>7} {r.split_role:<12} {r.rows:>7,} {r.realized:>10.4g} "
                     f"{r.predicted:>10.4g} {r.calibration_error:>9.3f} {r.discrimination:>8.3f}")
    return "\n".join(lines)
