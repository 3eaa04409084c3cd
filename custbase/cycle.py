"""``custbase cycle --month YYYY-MM``: the month's work as one resumable command, with a ledger of what ran.

Steps, in order (:data:`STEPS`), each the same function a single command or the demo runs:

1. ``validate``   the raw tables against the contract (after the month was checked to have landed: balances and
                  transactions hold rows dated in it, and the raw data ends with it);
2. ``features``   the month's customer-month rows and the labels that matured with it (``features --append``;
                  the first cycle builds the table whole);
3. ``models``     only when no bento or no champions exist yet: train, gate and build (the first cycle of a bank);
4. ``score``      the whole base at the month, the online snapshot refreshed and the scoring run's drift written
                  (``custbase score``); the previous month's scores move to ``<data_dir>/cycle/<month>/scores``;
5. ``drift``      the month's drift report read back: an alarm when a model's score PSI reaches
                  ``cycle.drift_alarm_psi`` (default ``monitoring.psi_alert``);
6. ``campaigns``  the month's retention and upgrade lists with their randomized holdouts
                  (``<campaigns_dir>/<month>/``);
7. ``readouts``   treated against holdout for the bank's campaigns (with a holdout) whose outcomes matured since
                  the last cycle's read-out; the first cycle reads each offer's newest matured one
                  (``<data_dir>/cycle/<month>/readouts.txt``);
8. ``retrain``    train + gate + build when ``cycle.retrain_every_months`` have passed since the cycle's last
                  retraining (or, if no cycle trained yet, since the first cycle), or the drift step raised an
                  alarm (``cycle.retrain_on_drift``).

Guarantees
----------
- The ledger (``paths.ledger_path``, parquet, replaced atomically) holds one row per month and step: its status
  (``running``, ``done``, ``failed``), times, inputs (paths and digests), model versions, outcome and the MLflow
  runs the step started; those runs carry the tag ``custbase.cycle_month``.
- A step is marked ``done`` only after its outputs are written; a rerun starts at the first step not ``done`` (a
  crash or a kill mid-step leaves ``running`` or ``failed``). Each step is idempotent: scoring resumes its
  partitions, appending a month already in the table adds nothing, training reuses registered versions on
  unchanged data, lists and read-outs are rewritten identically (seeded).
- A month whose steps are all done is a no-op that says so. A month that has not fully landed, a month before
  the ledger's newest, or a new month while another is unfinished is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from custbase.config import Config, Cycle

STEPS: tuple[str, ...] = ("validate", "features", "models", "score", "drift", "campaigns", "readouts", "retrain")
TITLES = {
    "validate": "validate the raw tables",
    "features": "append the month's features and matured labels",
    "models": "check for models (train, gate and build on the first cycle)",
    "score": "score the base and refresh the online snapshot",
    "drift": "check drift",
    "campaigns": "write the retention and upgrade lists with holdouts",
    "readouts": "read out the campaigns whose outcomes matured",
    "retrain": "retrain, gate and build when due",
}
LEDGER_COLUMNS = ("month", "step", "position", "status", "started_at", "finished_at", "inputs", "models", "outcome",
                  "mlflow_runs", "error")
#: The tag every MLflow run started by a cycle step carries (with ``custbase.cycle_step``).
CYCLE_TAG = "custbase.cycle_month"
MODELS = ("clv", "churn", "upgrade")  # CLV first: churn's retention profit values customers with the CLV champion
UPLIFT_MODELS = ("retention-uplift", "upgrade-uplift")


class CycleRefused(ValueError):
    """The month cannot be run (not landed, out of order, another month unfinished): a user's matter, exit 2."""


class CycleDataInvalid(RuntimeError):
    """The month's raw data breaks the contract (the report says where): exit 1."""

    def __init__(self, report):
        super().__init__("the raw data is invalid")
        self.report = report


@dataclass(frozen=True)
class StepResult:
    """What a step did: a one-line summary, and the facts the ledger keeps."""

    summary: str
    outcome: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CycleRun:
    """What one ``cycle`` call did: the steps run, and those found done before."""

    month: str
    ran: tuple[str, ...]
    already_done: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------- ledger


def read_ledger(path: Path) -> pd.DataFrame:
    """The ledger at ``path`` (an empty one when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "position" else "str") for c in LEDGER_COLUMNS})
    return pd.read_parquet(path)


def _write_ledger(path: Path, ledger: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    ordered = ledger.sort_values(["month", "position"], kind="stable").reset_index(drop=True)
    schema = pa.schema([(c, pa.int64() if c == "position" else pa.string()) for c in LEDGER_COLUMNS])
    columns = {c: ordered[c].tolist() if c == "position" else [None if pd.isna(v) else str(v) for v in ordered[c]]
               for c in LEDGER_COLUMNS}
    pq.write_table(pa.table(columns, schema=schema), tmp)
    os.replace(tmp, path)


def _record(path: Path, month: str, step: str, **values) -> None:
    """Upsert the ledger row of (``month``, ``step``) with ``values`` (dicts stored as JSON)."""
    ledger = read_ledger(path)
    mask = (ledger["month"] == month) & (ledger["step"] == step)
    row = ledger.loc[mask].iloc[0].to_dict() if mask.any() else {c: None for c in LEDGER_COLUMNS}
    row.update(month=month, step=step, position=STEPS.index(step))
    row.update({k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v for k, v in values.items()})
    rows = [*ledger.loc[~mask].to_dict(orient="records"), row]
    _write_ledger(path, pd.DataFrame(rows, columns=list(LEDGER_COLUMNS)))


def step_status(ledger: pd.DataFrame, month: str) -> dict[str, str]:
    """Step -> status of ``month`` in the ledger (steps never started are absent)."""
    rows = ledger.loc[ledger["month"] == month]
    return dict(zip(rows["step"], rows["status"]))


def _outcome(ledger: pd.DataFrame, month: str, step: str) -> dict:
    rows = ledger.loc[(ledger["month"] == month) & (ledger["step"] == step), "outcome"]
    return json.loads(rows.iloc[0]) if len(rows) and rows.iloc[0] else {}


def last_retraining(ledger: pd.DataFrame, before: str | None = None) -> str | None:
    """The newest month (before ``before`` when given) whose cycle trained models (first cycle or retraining).

    When no cycle trained (the models came from ``custbase demo`` or ``train``), the ledger's first month: the
    schedule counts from the first cycle. None for an empty ledger.
    """
    months = []
    for row in ledger.loc[(ledger["step"].isin(["models", "retrain"])) & (ledger["status"] == "done")].itertuples():
        if json.loads(row.outcome or "{}").get("trained") and (before is None or row.month < before):
            months.append(row.month)
    if months:
        return max(months)
    return min(ledger["month"]) if len(ledger) else None


def _months_between(earlier: str, later: str) -> int:
    return (pd.Period(later, "M") - pd.Period(earlier, "M")).n


def retrain_decision(month: str, last_trained: str | None, drift_alarm: bool, settings: Cycle) -> tuple[bool, str]:
    """Whether the cycle of ``month`` retrains, and why (a pure function of the figures).

    Due when the cycle never trained, when ``settings.retrain_every_months`` have passed since ``last_trained``,
    or when the month's drift raised an alarm and ``settings.retrain_on_drift``.
    """
    if drift_alarm and settings.retrain_on_drift:
        return True, "the drift check raised an alarm"
    if last_trained is None:
        return True, "no retraining recorded by the cycle yet"
    since = _months_between(last_trained, month)
    if since >= settings.retrain_every_months:
        return True, f"{since} month(s) since the last retraining ({last_trained}), cycle.retrain_every_months {settings.retrain_every_months}"
    return False, (f"{since} month(s) since the last retraining ({last_trained}), under cycle.retrain_every_months "
                   f"{settings.retrain_every_months}, and no drift alarm")


# ---------------------------------------------------------------------------------------------------- checks


def digest(path: Path) -> str | None:
    """A short digest of a file (its bytes) or a folder (each file's relative path, size and modification time)."""
    path = Path(path)
    if not path.exists():
        return None
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:16]
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        stat = p.stat()
        h.update(f"{p.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _input(path: Path) -> dict:
    return {"path": str(path), "digest": digest(path)}


def check_month(config: Config, month: str, ledger: pd.DataFrame) -> None:
    """Refuse (:class:`CycleRefused`) a month that cannot run now; nothing is written."""
    from features.raw import RawDataError, month_rows, read_manifest, resolve_data_end

    raw_dir = Path(config.paths.raw_dir)
    unfinished = sorted({m for m, s in zip(ledger["month"], ledger["status"]) if s != "done" and m != month})
    started = sorted(set(ledger["month"]))
    if unfinished:
        raise CycleRefused(f"month {unfinished[0]} is unfinished in the ledger {config.paths.ledger_path}: finish it first "
                           f"with `custbase cycle --month {unfinished[0]}`")
    if started and month < started[-1] and month not in started:
        raise CycleRefused(f"the ledger {config.paths.ledger_path} is at {started[-1]} already: a cycle goes forward, give "
                           "a later --month")
    if read_manifest(raw_dir).get("status") == "writing":
        raise CycleRefused(f"the raw data in {raw_dir} is still being written (manifest.json status 'writing'): rerun "
                           "once the extract has finished")
    try:
        data_end = resolve_data_end(raw_dir)
        counts = month_rows(raw_dir, month)
    except RawDataError as err:
        raise CycleRefused(str(err)) from None
    missing = [f"table {name} has no rows dated in {month}" if n == 0 else f"table {name} is missing"
               for name, n in counts.items() if not n]
    if missing:
        raise CycleRefused(f"month {month} has not fully landed in {raw_dir}: {'; '.join(missing)} (the raw data ends "
                           f"{data_end}); load the month's extract, then rerun `custbase cycle --month {month}`")
    if f"{data_end:%Y-%m}" < month or pd.Timestamp(data_end) != pd.Timestamp(data_end) + pd.offsets.MonthEnd(0):
        raise CycleRefused(f"the raw data in {raw_dir} ends {data_end}, before the end of {month}: the month is "
                           f"incomplete; load the rest of it, then rerun `custbase cycle --month {month}`")
    if f"{data_end:%Y-%m}" > month:
        raise CycleRefused(f"the raw data in {raw_dir} runs to {data_end}, past {month}: the cycle of a month reads the "
                           f"data as it stood at the month's end; run `custbase cycle --month {data_end:%Y-%m}`")


# ---------------------------------------------------------------------------------------------------- steps


@dataclass
class _Context:
    config: Config
    month: str
    trials: int | None
    ledger_path: Path
    echo: Callable[[str], None]

    @property
    def paths(self):
        return self.config.paths

    @property
    def month_dir(self) -> Path:
        return Path(self.paths.data_dir) / "cycle" / self.month


def _validate(ctx: _Context) -> StepResult:
    from features.validate import validate_raw

    report = validate_raw(ctx.paths.raw_dir, ctx.config)
    if not report.ok:
        raise CycleDataInvalid(report)
    return StepResult(f"{len(report.tables)} tables, {report.total_rows:,} rows, no violation; data end {report.data_end}",
                      {"tables": report.tables, "data_end": report.data_end, "notes": list(report.notes)},
                      {"raw_dir": _input(ctx.paths.raw_dir)})


def _features(ctx: _Context) -> StepResult:
    from features.build import append_month, build_customer_months
    from features.feature_set import read_feature_metadata

    path = Path(ctx.paths.features_path)
    if path.exists():
        summary = append_month(ctx.paths.raw_dir, path, ctx.config, validate=False, progress=False)
        outcome = {"added": list(summary.added), "relabeled": list(summary.relabeled), "built": False}
        text = summary.render()
    else:
        summary = build_customer_months(ctx.paths.raw_dir, path, ctx.config, validate=False, progress=False)
        outcome, text = {"built": True, "rows": summary.rows}, summary.render().splitlines()[0]
    last = str(read_feature_metadata(path)["as_of_max"])[:7]
    if last != ctx.month:
        raise RuntimeError(f"the customer-month table {path} ends at {last} after the features step, not {ctx.month}")
    return StepResult(text, outcome, {"raw_dir": _input(ctx.paths.raw_dir), "features": _input(path)})


def _has_bento() -> bool:
    from serving.jobs import ServingSetupError, require_bento

    try:
        require_bento()
    except ServingSetupError:
        return False
    return True


def _train_gate_build(ctx: _Context) -> dict:
    """Train the three models (and the uplift models), gate each, build the bento; the versions and decisions."""
    from serving import jobs
    from training.jobs import promote_model, train_model

    features_path = Path(ctx.paths.features_path)
    before = _models_in_place(ctx.config)
    trained, gates = {}, {}
    for model in MODELS:
        result = train_model(model, ctx.config, features_path=features_path, trials=ctx.trials, reuse=True, progress=False)
        trained[model] = str(result.version)
        decision = promote_model(model, ctx.config, features_path=features_path)
        gates[model] = decision.render().splitlines()[0]
        ctx.echo(f"      {model}: {gates[model]}")
    if ctx.config.cycle.retrain_uplift:
        from training.uplift import train_uplift

        for name in UPLIFT_MODELS:
            trained[name] = train_uplift(name, ctx.config, features_path=features_path, raw_dir=ctx.paths.raw_dir,
                                         trials=ctx.trials, progress=False).render().splitlines()[0]
    _, stand_ins = jobs.pinned_champions(ctx.config, challenger_if_no_champion=True)
    if before is not None and _champions(ctx.config) == before:
        tag, _ = jobs.latest_bento()  # the gate kept every champion: the bento in place packs them already
        return {"trained": True, "versions": trained, "gates": gates, "bento": tag, "built": False,
                "challenger_stand_ins": stand_ins}
    tag = jobs.build(ctx.config, challenger_if_no_champion=True)
    return {"trained": True, "versions": trained, "gates": gates, "bento": tag, "built": True, "challenger_stand_ins": stand_ins}


def _models_in_place(config: Config) -> dict | None:
    """The pinned champions when a bento and the registry's champions (or challengers standing in) for each of
    the three models are there, else None: a bento left from another registry (``make clean`` empties mlruns/,
    not the bento store) is no model in place."""
    from serving.jobs import ServingSetupError

    if not _has_bento():
        return None
    try:
        return _champions(config)
    except ServingSetupError:
        return None


def _models(ctx: _Context) -> StepResult:
    if _models_in_place(ctx.config) is not None:
        from serving.jobs import latest_bento

        tag, _ = latest_bento()
        return StepResult(f"bento {tag} in place", {"trained": False, "bento": tag})
    outcome = _train_gate_build(ctx)
    return StepResult(f"no models yet: trained, gated and built {outcome['bento']}", outcome,
                      {"features": _input(ctx.paths.features_path)}, _champions(ctx.config))


def _champions(config: Config) -> dict:
    from serving import jobs

    uris, _ = jobs.pinned_champions(config, challenger_if_no_champion=True)
    return {**uris, **jobs.pinned_uplift_champions(config)}


def _archive_scores(ctx: _Context) -> str | None:
    """Move the scores of another month out of ``paths.scores_dir`` (a scoring folder holds one run)."""
    scores = Path(ctx.paths.scores_dir)
    run_file = scores / "_run.json"
    if not run_file.exists():
        return None
    previous = str(json.loads(run_file.read_text()).get("as_of", ""))[:7]
    if previous == ctx.month:
        return None  # the same month: the scoring run resumes
    target = Path(ctx.paths.data_dir) / "cycle" / (previous or "unknown") / "scores"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scores, target)
    return str(target)


def _score(ctx: _Context) -> StepResult:
    from serving import jobs

    archived = _archive_scores(ctx)
    plan = jobs.score_plan(ctx.config, as_of=ctx.month)
    summary = jobs.score(ctx.config, plan)
    bento, _ = jobs.latest_bento()
    outcome = {"customers": summary.customers, "rows_written": summary.rows_written, "by_action": summary.by_action,
               "bento": bento, "online_snapshot": str(plan.snapshot) if plan.snapshot else None,
               "previous_scores_moved_to": archived}
    return StepResult(f"{summary.customers:,} customers scored with bento {bento} -> {plan.out}", outcome,
                      {"features": _input(plan.features_path)}, _champions(ctx.config))


def drift_alarm(report, threshold: float) -> dict[str, float]:
    """Model -> its score's PSI, for the models whose score PSI reaches ``threshold`` (a pure function)."""
    table = report.table
    scores = table.loc[(table["kind"] == "score") & (table["psi"] >= threshold)]
    return {str(r.model): float(r.psi) for r in scores.itertuples()}


def _drift(ctx: _Context) -> StepResult:
    from serving.monitoring import DRIFT_FILE, read_drift

    report = read_drift(ctx.paths.scores_dir)
    if report is None:
        raise RuntimeError(f"no {DRIFT_FILE} in {ctx.paths.scores_dir}: the score step writes it")
    threshold = ctx.config.cycle.drift_alarm_psi or ctx.config.monitoring.psi_alert
    alarmed = drift_alarm(report, threshold)
    table = report.table
    score_psi = {str(r.model): round(float(r.psi), 4) for r in table.loc[table["kind"] == "score"].itertuples()}
    shifted = int((table["psi"] >= report.psi_warn).sum())
    text = (f"ALARM: score PSI >= {threshold:g} for {', '.join(f'{m} {v:.2f}' for m, v in alarmed.items())}" if alarmed
            else f"no alarm (score PSI {', '.join(f'{m} {v:.2f}' for m, v in score_psi.items()) or '-'}; {shifted} column(s) shifted)")
    return StepResult(text, {"alarm": bool(alarmed), "alarmed": alarmed, "score_psi": score_psi, "shifted_columns": shifted,
                             "threshold": threshold},
                      {"drift": _input(Path(ctx.paths.scores_dir) / DRIFT_FILE)}, dict(report.model_versions))


def _campaigns(ctx: _Context) -> StepResult:
    from serving import jobs

    outcome, inputs, lines = {}, {"scores": _input(Path(ctx.paths.scores_dir) / "_manifest.json")}, []
    for kind in ("retention", "upgrade"):
        out = Path(ctx.paths.campaigns_dir) / ctx.month / f"{kind}.csv"
        path, summary = jobs.campaign(ctx.config, kind, budget=ctx.config.cycle.campaign_budget, out=out)
        outcome[kind] = {"path": str(path), "contacts": summary.contacts, "holdout": summary.holdout,
                         "expected_incremental_value": summary.expected_incremental_value,
                         "why_shorter": summary.why_shorter}
        inputs[f"{kind}_list"] = _input(path)
        short = f" ({summary.why_shorter})" if summary.why_shorter and summary.contacts < ctx.config.cycle.campaign_budget else ""
        lines.append(f"{kind} {summary.contacts:,} contacts + {summary.holdout:,} holdout{short}")
    return StepResult("; ".join(lines) + f" -> {Path(ctx.paths.campaigns_dir) / ctx.month}", outcome, inputs)


def _read_out_before(ledger: pd.DataFrame, month: str, offer: str) -> set[str]:
    """The ``offer`` campaigns read out by the cycles before ``month``."""
    rows = ledger.loc[(ledger["step"] == "readouts") & (ledger["status"] == "done") & (ledger["month"] < month)]
    return {c for text in rows["outcome"] for c in json.loads(text or "{}").get("campaigns", {}).get(offer, [])}


def newly_matured(matured: list[str], read_before: set[str]) -> list[str]:
    """The campaigns of ``matured`` (oldest first) a cycle reads out: until a first read-out, the newest one; then
    those that matured after the newest one read before (the history before the first cycle is not read out again
    and again)."""
    if not read_before:
        return matured[-1:]
    seen = [i for i, campaign in enumerate(matured) if campaign in read_before]
    return matured[max(seen) + 1:] if seen else [c for c in matured if c not in read_before]


def _readouts(ctx: _Context) -> StepResult:
    from features.feature_set import read_feature_table
    from serving.readout import campaign_readout, matured_campaigns
    from training.uplift import read_contacts

    frame, _ = read_feature_table(ctx.paths.features_path)
    contacts = read_contacts(ctx.paths.raw_dir)
    ledger = read_ledger(ctx.ledger_path)
    matured, texts = {}, []
    for offer in ("retention", "upgrade"):
        ids, before = matured_campaigns(offer, contacts, frame), _read_out_before(ledger, ctx.month, offer)
        matured[offer] = newly_matured(ids, before)
        for campaign_id in matured[offer]:
            texts.append(campaign_readout(campaign_id, contacts, frame, currency=ctx.config.value_tiers.currency).render())
    out = ctx.month_dir / "readouts.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text("\n\n".join(texts) + "\n" if texts else f"no campaign's outcome window closed with {ctx.month}\n")
    os.replace(tmp, out)
    ids = [c for ids in matured.values() for c in ids]
    return StepResult(f"{len(ids)} campaign(s) read out ({', '.join(ids) or 'none matured this month'}) -> {out}",
                      {"campaigns": matured, "path": str(out)}, {"readouts": _input(out)})


def _retrain(ctx: _Context) -> StepResult:
    ledger = read_ledger(ctx.ledger_path)
    alarm = bool(_outcome(ledger, ctx.month, "drift").get("alarm"))
    if _outcome(ledger, ctx.month, "models").get("trained"):
        return StepResult("not due: the models were trained this month (first cycle)", {"trained": False, "due": False})
    due, why = retrain_decision(ctx.month, last_retraining(ledger, before=ctx.month), alarm, ctx.config.cycle)
    if not due:
        return StepResult(f"not due: {why}", {"trained": False, "due": False, "why": why})
    outcome = _train_gate_build(ctx)
    built = f"built {outcome['bento']}" if outcome["built"] else f"every champion kept, bento {outcome['bento']} in place"
    return StepResult(f"retrained ({why}); {built}", {**outcome, "due": True, "why": why},
                      {"features": _input(ctx.paths.features_path)}, _champions(ctx.config))


STEP_FUNCTIONS: dict[str, Callable[[_Context], StepResult]] = {
    "validate": _validate, "features": _features, "models": _models, "score": _score, "drift": _drift,
    "campaigns": _campaigns, "readouts": _readouts, "retrain": _retrain,
}


# ---------------------------------------------------------------------------------------------------- MLflow tags


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tag_runs(config: Config, month: str, step: str, since_ms: int) -> list[str]:
    """Tag the MLflow runs started since ``since_ms`` with the cycle's month and step; their ids."""
    from training.tracking import TrackingError, check_tracking_store

    try:
        check_tracking_store(config)
    except TrackingError:
        return []  # no store yet: the step started no run
    import mlflow

    from training import tracking

    tracking.configure_tracking(config)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.start_time >= {since_ms}",
                              output_format="list")
    client = mlflow.MlflowClient()
    for run in runs:
        client.set_tag(run.info.run_id, CYCLE_TAG, month)
        client.set_tag(run.info.run_id, "custbase.cycle_step", step)
    return sorted(run.info.run_id for run in runs)


# ---------------------------------------------------------------------------------------------------- the cycle


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_cycle(config: Config, month: str, *, trials: int | None = None, echo: Callable[[str], None] = print) -> CycleRun:
    """Run the steps of ``month`` not done yet, in order, recording each in the ledger.

    Raises :class:`CycleRefused` before anything runs when the month cannot run now, and
    :class:`CycleDataInvalid` when its raw data breaks the contract. Any other error marks the step ``failed``
    and propagates; the next call resumes at that step.
    """
    ledger_path = Path(config.paths.ledger_path)
    ledger = read_ledger(ledger_path)
    status = step_status(ledger, month)
    done = tuple(s for s in STEPS if status.get(s) == "done")
    if len(done) == len(STEPS):
        echo(f"month {month} is already done (ledger {ledger_path}): nothing to do")
        return CycleRun(month, (), done)
    check_month(config, month, ledger)
    ctx = _Context(config, month, trials, ledger_path, echo)
    # temporaries of a killed run (each write goes to one, then replaces its file)
    for leftover in (*ledger_path.parent.glob(f".{ledger_path.name}.tmp-*"), *ctx.month_dir.glob(".*.tmp-*")):
        leftover.unlink(missing_ok=True)
    pending = [s for s in STEPS if status.get(s) != "done"]
    if done:
        echo(f"month {month}: resuming at step {pending[0]} ({len(done)} of {len(STEPS)} steps done before)")
    ran = []
    for number, step in enumerate(STEPS, start=1):
        if step not in pending:
            echo(f"[{number}/{len(STEPS)}] {TITLES[step]}: done before, skipped")
            continue
        echo(f"[{number}/{len(STEPS)}] {TITLES[step]} ...")
        began, since = time.perf_counter(), _now_ms()
        _record(ledger_path, month, step, status="running", started_at=_utc(), finished_at=None, error=None)
        try:
            result = STEP_FUNCTIONS[step](ctx)
        except BaseException as err:
            _record(ledger_path, month, step, status="failed", finished_at=_utc(), error=f"{type(err).__name__}: {err}"[:2000])
            raise
        runs = _tag_runs(config, month, step, since)
        _record(ledger_path, month, step, status="done", finished_at=_utc(), inputs=result.inputs, models=result.models,
                outcome=result.outcome, mlflow_runs=runs, error=None)
        ran.append(step)
        echo(f"      {result.summary} ({time.perf_counter() - began:.1f} s)")
    echo(f"month {month} done: {len(ran)} step(s) run; ledger {ledger_path}")
    return CycleRun(month, tuple(ran), done)
