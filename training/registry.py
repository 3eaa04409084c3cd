"""Model registry: versions, aliases, the champion/challenger gate, rollback and the audit log.

Each training registers a version of ``custbase-<model>`` with alias ``challenger``. :func:`promote` scores the
challenger and the champion on the same newest test months and moves ``champion`` only if the challenger is
better by the configured margin and not worse calibrated beyond the tolerance. Every decision is written as
tags on the challenger's model version and appended to ``<mlruns_dir>/audit.jsonl``; :func:`rollback` and
:func:`model_history` replay that log.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING

from custbase import hints
from custbase.config import Config, Promotion
from training.spec import SPECS, ModelSpec, get_spec

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"
CHALLENGER = "challenger"
AUDIT_FILE = "audit.jsonl"


class RegistryError(RuntimeError):
    """A registry operation cannot be done (no challenger, no previous champion, ...)."""


# --------------------------------------------------------------------------------------------- aliases


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def alias_version(registered_name: str, alias: str) -> str | None:
    """The version behind ``alias`` of ``registered_name``, or None (no model, or no such alias)."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = _client().get_registered_model(registered_name).aliases
    except MlflowException:
        return None
    version = aliases.get(alias)
    return str(version) if version is not None else None


def champion_uri(model: str) -> str | None:
    """``models:/custbase-<model>@champion`` if the model has a champion, else None."""
    name = get_spec(model).registered_name
    return f"models:/{name}@{CHAMPION}" if alias_version(name, CHAMPION) else None


def register_challenger(spec: ModelSpec, model_uri: str, *, run_id: str, tags: dict | None = None) -> str:
    """Register ``model_uri`` as a new version of ``spec``'s registered model with alias ``challenger``."""
    import mlflow

    client = _client()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." there; we say it once
        version = mlflow.register_model(model_uri, spec.registered_name, tags={"run_id": run_id, **(tags or {})}).version
    client.set_registered_model_alias(spec.registered_name, CHALLENGER, version)
    return str(version)


#: Tag of a registered version: a hash of everything a training depends on (data, code, settings).
FINGERPRINT_TAG = "training_fingerprint"


def version_with_fingerprint(spec: ModelSpec, fingerprint: str) -> dict | None:
    """The newest registered version of ``spec`` trained from the same data, code and settings, or None.

    Returns ``{"version", "run_id", "tags"}``.
    """
    from mlflow.exceptions import MlflowException

    try:
        found = _client().search_model_versions(f"name = '{spec.registered_name}' and tag.{FINGERPRINT_TAG} = '{fingerprint}'")
    except MlflowException:
        return None
    if not found:
        return None
    newest = max(found, key=lambda v: int(v.version))
    return {"version": str(newest.version), "run_id": newest.run_id, "tags": dict(newest.tags)}


def why_retrain(spec: ModelSpec, data_hash: str) -> str:
    """Why no registered version can be reused: new data, or the same data with other code or settings."""
    from mlflow.exceptions import MlflowException

    try:
        same_data = _client().search_model_versions(f"name = '{spec.registered_name}' and tag.data_content_hash = '{data_hash}'")
    except MlflowException:
        same_data = []
    if not same_data:
        return "no registered version was trained on this data: training a new one"
    newest = max(same_data, key=lambda v: int(v.version))
    return (f"version {newest.version} was trained on the same data but other code or settings (or trials): "
            "training a new one")


def set_challenger(spec: ModelSpec, version: str) -> None:
    _client().set_registered_model_alias(spec.registered_name, CHALLENGER, version)


# --------------------------------------------------------------------------------------------- the gate


@dataclass
class PromotionDecision:
    """The outcome of one ``promote``: what was compared, on which months, and why."""

    model: str
    registered_name: str
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    promoted: bool
    reason: str
    primary_metric: str
    calibration_metric: str
    challenger_metrics: dict = field(default_factory=dict)
    champion_metrics: dict = field(default_factory=dict)
    test_months: str = ""
    rows: int = 0
    decided_at: str = ""

    def render(self) -> str:
        verdict = "PROMOTED" if self.promoted else "UNCHANGED" if self.challenger_version == self.champion_before else "REFUSED"
        lines = [
            f"{self.registered_name}: challenger v{self.challenger_version} {verdict}"
            + (f" (champion was v{self.champion_before})" if self.champion_before else " (no champion before)"),
            f"  scored on test months {self.test_months} ({self.rows:,} rows)",
        ]
        for metric in (self.primary_metric, self.calibration_metric):
            champion = self.champion_metrics.get(metric)
            lines.append(
                f"  {metric:<16} challenger {self.challenger_metrics.get(metric, float('nan')):.4f}"
                + (f"   champion {champion:.4f}" if champion is not None else "")
            )
        lines.append(f"  reason: {self.reason}")
        lines.append(f"  champion now: v{self.champion_after}" if self.champion_after else "  champion now: none")
        return "\n".join(lines)


def decide(spec: ModelSpec, challenger: dict, champion: dict | None, promotion: Promotion,
           baseline: dict | None = None) -> tuple[bool, str]:
    """Whether the challenger should replace the champion, and why (pure).

    Never promote a challenger whose primary metric does not beat its baseline's (``baseline``: the baseline
    model's test metrics from the same training run). Otherwise promote when there is no champion, else only if
    the primary metric improves by >= ``promotion.margin`` and the calibration error (lower is better) is not
    worse by more than the tolerance.
    """
    p, c = spec.primary_metric, spec.calibration_metric
    if promotion.require_beating_baseline and baseline and p in baseline and not challenger[p] > baseline[p]:
        return False, (
            f"{p} {challenger[p]:.4f} does not beat its baseline's {baseline[p]:.4f} on the test months: "
            f"the champion stays {'as it is' if champion is not None else 'empty'}; see the model card for why"
        )
    if champion is None:
        return True, "no champion yet: the challenger beats its baseline and becomes the first champion"
    tolerance = promotion.calibration_tolerance if spec.kind == "binary" else promotion.clv_calibration_tolerance
    gain = challenger[p] - champion[p]
    if not math.isfinite(gain):
        return False, f"{p} is not finite (challenger {challenger[p]}, champion {champion[p]}): cannot compare"
    if gain < promotion.margin:
        return False, (
            f"{p} {challenger[p]:.4f} vs champion {champion[p]:.4f}: change {gain:+.4f} is below the required margin "
            f"+{promotion.margin:.4f}"
        )
    worse = challenger[c] - champion[c]
    if math.isfinite(worse) and worse > tolerance:
        return False, (
            f"{p} improves by {gain:+.4f} but {c} worsens by {worse:+.4f} ({challenger[c]:.4f} vs champion "
            f"{champion[c]:.4f}), beyond the tolerance {tolerance:.4f}"
        )
    return True, (
        f"{p} {challenger[p]:.4f} vs champion {champion[p]:.4f} ({gain:+.4f} >= margin {promotion.margin:.4f}); "
        f"{c} {challenger[c]:.4f} vs {champion[c]:.4f} within tolerance {tolerance:.4f}"
    )


def promote(model: str, config: Config, *, frame: pd.DataFrame, metadata: dict) -> PromotionDecision:
    """Score challenger and champion on the newest test months of the customer-month ``frame`` and apply the gate.

    ``frame`` and ``metadata``: the customer-month table as :func:`features.feature_set.read_feature_table` returns
    it (the caller reads it). Records the decision as tags on the challenger's version and as a line of the audit log.
    """
    from serving.runtime.bundle import load_bundle
    from training import tracking
    from training.evaluation import metrics_of  # scikit-learn: imported when a gate runs, not for `custbase models`
    from training.modeling_data import prepare_modeling_data

    spec = get_spec(model)
    tracking.configure_tracking(config)
    name = spec.registered_name
    challenger_version = alias_version(name, CHALLENGER)
    if challenger_version is None:
        raise RegistryError(f"{name} has no '{CHALLENGER}' version; train one first with `{hints.custbase(f'train {model}')}`")
    champion_version = alias_version(name, CHAMPION)
    data = prepare_modeling_data(frame, metadata, spec, config)
    test, y = data.test, data.y(data.test)
    months = f"{data.split.test_months[0]}..{data.split.test_months[-1]}"
    challenger_metrics = metrics_of(spec, y, load_bundle(f"models:/{name}/{challenger_version}").predict(test))
    champion_metrics = None
    beats = _client().get_model_version(name, challenger_version).tags.get("beats_baseline")
    if champion_version == challenger_version:
        promoted, reason = False, f"the challenger v{challenger_version} is already the champion"
    elif spec.kind == "clv" and beats == "false":
        # A CLV model that does not beat carried-forward value and (when available) BG/NBD x Gamma-Gamma is no use.
        promoted, reason = False, (f"the challenger v{challenger_version} did not beat its baselines (carried-forward value"
                                   " and, when run, BG/NBD x Gamma-Gamma) on its test months")
    else:
        if champion_version is not None:
            champion_metrics = metrics_of(spec, y, load_bundle(f"models:/{name}/{champion_version}").predict(test))
        promoted, reason = decide(spec, challenger_metrics, champion_metrics, config.promotion,
                                  baseline=_baseline_of(name, challenger_version, spec))
    decision = PromotionDecision(
        model=spec.name,
        registered_name=name,
        challenger_version=challenger_version,
        champion_before=champion_version,
        champion_after=challenger_version if promoted else champion_version,
        promoted=promoted,
        reason=reason,
        primary_metric=spec.primary_metric,
        calibration_metric=spec.calibration_metric,
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics or {},
        test_months=months,
        rows=len(test),
        decided_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if champion_version == challenger_version:
        return decision  # nothing to decide (a rerun on the same version): no tags, no audit line
    client = _client()
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, challenger_version)
    tags = {
        "promotion_decision": "promoted" if promoted else "refused",
        "promotion_reason": reason,
        "promotion_decided_at": decision.decided_at,
        "promotion_test_months": months,
        "promotion_champion_before": champion_version or "none",
        f"promotion_challenger_{spec.primary_metric}": f"{challenger_metrics[spec.primary_metric]:.6f}",
        f"promotion_challenger_{spec.calibration_metric}": f"{challenger_metrics[spec.calibration_metric]:.6f}",
    }
    if champion_metrics:
        tags[f"promotion_champion_{spec.primary_metric}"] = f"{champion_metrics[spec.primary_metric]:.6f}"
        tags[f"promotion_champion_{spec.calibration_metric}"] = f"{champion_metrics[spec.calibration_metric]:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger_version, key, value)
    append_audit(config, {"action": "promote" if promoted else "refuse", **asdict(decision)})
    return decision


def _baseline_of(registered_name: str, version: str, spec: ModelSpec) -> dict | None:
    """The baseline's primary metric on the test months, from the version's tags (set by training)."""
    tags = _client().get_model_version(registered_name, version).tags
    value = tags.get(f"baseline_{spec.primary_metric}")
    try:
        return {spec.primary_metric: float(value)} if value is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------- audit log


def audit_path(config: Config) -> Path:
    return Path(config.paths.mlruns_dir) / AUDIT_FILE


def append_audit(config: Config, event: dict) -> None:
    """Append one decision to the audit log (JSON lines), with who and where."""
    from training.tracking import tracking_uri

    path = audit_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": _user(),
        "tracking_uri": tracking_uri(config),
        **event,
    }
    with path.open("a") as handle:
        handle.write(json.dumps(record, default=str, sort_keys=True) + "\n")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def read_audit(config: Config, registered_name: str | None = None) -> list[dict]:
    """The audit log's events, oldest first (optionally of one registered model)."""
    path = audit_path(config)
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if registered_name is None or e.get("registered_name") == registered_name]


def champion_lineage(events: list[dict]) -> list[str]:
    """Replay promotions (push) and rollbacks (pop): the champion versions, oldest first, current last."""
    stack: list[str] = []
    for event in events:
        if event.get("action") == "promote":
            stack.append(str(event["champion_after"]))
        elif event.get("action") == "rollback" and stack:
            stack.pop()
    return stack


def rollback(model: str, config: Config) -> str:
    """Move ``champion`` back to the previous champion (from the audit log); returns what was done."""
    from training import tracking

    spec = get_spec(model)
    tracking.configure_tracking(config)
    name = spec.registered_name
    lineage = champion_lineage(read_audit(config, name))
    current = alias_version(name, CHAMPION)
    if len(lineage) < 2:
        raise RegistryError(
            f"{name} has no previous champion to roll back to (champion history: {', '.join('v' + v for v in lineage) or 'empty'})"
        )
    if current != lineage[-1]:
        raise RegistryError(
            f"{name}@{CHAMPION} is v{current} but the audit log says v{lineage[-1]}: the alias was moved outside custbase; "
            f"set it by hand or promote again"
        )
    previous = lineage[-2]
    client = _client()
    client.set_registered_model_alias(name, CHAMPION, previous)
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, current, "rolled_back_at", at)
    client.set_model_version_tag(name, previous, "restored_by_rollback_at", at)
    append_audit(
        config,
        {
            "action": "rollback",
            "model": spec.name,
            "registered_name": name,
            "champion_before": current,
            "champion_after": previous,
            "reason": f"rollback requested: v{current} replaced by the previous champion v{previous}",
        },
    )
    return f"{name}: champion rolled back from v{current} to v{previous}"


def model_history(config: Config) -> str:
    """Each model's aliases and its champion history from the audit log, as text."""
    from training import tracking

    uri = tracking.configure_tracking(config)
    lines = [f"models in {uri} (audit log {audit_path(config)})"]
    for spec in SPECS.values():
        name = spec.registered_name
        champion, challenger = alias_version(name, CHAMPION), alias_version(name, CHALLENGER)
        lines.append(f"{name}: champion {'v' + champion if champion else '-'}, challenger {'v' + challenger if challenger else '-'}")
        if champion or challenger:
            run_id = _client().get_model_version(name, champion or challenger).run_id
            lines += ["  " + line.strip() + (" (champion)" if champion else " (challenger)")
                      for line in tracking.artifact_locations(run_id)]
        events = read_audit(config, name)
        if not events:
            lines.append("  no promotion decisions yet")
        for e in events:
            if e["action"] == "rollback":
                lines.append(f"  {e['at']}  rollback  v{e['champion_before']} -> v{e['champion_after']}  by {e.get('user')}")
                continue
            p = e.get("primary_metric")
            value = (e.get("challenger_metrics") or {}).get(p)
            lines.append(
                f"  {e['at']}  {e['action']:<8}  v{e['challenger_version']}"
                + (f" {p} {value:.4f}" if isinstance(value, (int, float)) else "")
                + f"  champion v{e.get('champion_before') or '-'} -> v{e.get('champion_after') or '-'}  by {e.get('user')}: {e.get('reason')}"
            )
    return "\n".join(lines)
