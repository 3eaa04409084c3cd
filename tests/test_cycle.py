"""``custbase cycle --month``: three consecutive simulated months, each recorded in the ledger; a done month is a
no-op; a crash mid-cycle resumes at the failed step; a month that has not landed is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import custbase.cycle as cycle
from custbase.cli import app
from custbase.config import Config, Cycle
from custbase.cycle import STEPS, CycleRefused, _record, read_ledger, retrain_decision, step_status
from features.simulate import continue_bank, simulate_bank

#: A small bank whose horizon ends three months after the first cycle's month.
FIRST, SECOND, THIRD = "2025-02", "2025-03", "2025-04"
CONFIG_YAML = {
    "simulation": {"customers": 300, "months": 28, "seed": 21, "start_month": "2023-01"},
    # retrain two months after the first cycle trained; the small bank's early training months drift by
    # construction (shorter history windows), so drift alarms would retrain every month
    "cycle": {"retrain_every_months": 2, "retrain_on_drift": False, "retrain_uplift": False, "campaign_budget": 40},
}


# ------------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("last", "alarm", "settings", "due"), [
    (None, False, Cycle(), True),  # the cycle never trained
    ("2025-01", False, Cycle(retrain_every_months=3), False),  # 2 months since
    ("2024-12", False, Cycle(retrain_every_months=3), True),  # 3 months since
    ("2025-02", True, Cycle(retrain_every_months=3), True),  # a drift alarm
    ("2025-02", True, Cycle(retrain_every_months=3, retrain_on_drift=False), False),  # alarms switched off
])
def test_retrain_decision(last, alarm, settings, due):
    assert retrain_decision("2025-03", last, alarm, settings)[0] is due


def test_the_schedule_counts_from_the_last_training_or_else_the_first_cycle():
    def row(month, step, trained):
        return {"month": month, "step": step, "status": "done", "outcome": json.dumps({"trained": trained})}

    demo_models = pd.DataFrame([row("2025-01", "models", False), row("2025-01", "retrain", False),
                                row("2025-02", "models", False)])
    assert cycle.last_retraining(demo_models, before="2025-02") == "2025-01"  # models from the demo: the first cycle
    trained = pd.concat([demo_models, pd.DataFrame([row("2025-02", "retrain", True)])], ignore_index=True)
    assert cycle.last_retraining(trained, before="2025-04") == "2025-02"
    assert cycle.last_retraining(trained, before="2025-02") == "2025-01"
    assert cycle.last_retraining(demo_models.iloc[:0]) is None


def test_the_ledger_keeps_one_row_per_month_and_step(tmp_path):
    path = tmp_path / "ledger.parquet"
    _record(path, "2025-01", "score", status="running", started_at="t0")
    _record(path, "2025-01", "validate", status="done", outcome={"tables": 6})
    _record(path, "2025-01", "score", status="done", models={"churn": "models:/custbase-churn/3"})
    ledger = read_ledger(path)
    assert list(ledger["step"]) == ["validate", "score"]  # in step order
    assert step_status(ledger, "2025-01") == {"validate": "done", "score": "done"}
    row = ledger.loc[ledger["step"] == "score"].iloc[0]
    assert row["started_at"] == "t0" and json.loads(row["models"]) == {"churn": "models:/custbase-churn/3"}


def test_a_month_after_an_unfinished_one_or_before_the_ledger_is_refused(tmp_path):
    config = Config.model_validate({"paths": {"raw_dir": str(tmp_path / "bank"), "ledger_path": str(tmp_path / "l.parquet")}})
    ledger = pd.DataFrame({"month": ["2025-02", "2025-03"], "step": ["retrain", "score"], "status": ["done", "failed"]})
    with pytest.raises(CycleRefused, match="month 2025-03 is unfinished"):
        cycle.check_month(config, "2025-04", ledger)
    with pytest.raises(CycleRefused, match="is at 2025-02 already"):
        cycle.check_month(config, "2025-01", ledger.iloc[:1])


# ------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def bank_folder(tmp_path_factory):
    """A scratch working folder (its own data/, mlruns/, bentoml_home/) with the bank simulated through FIRST."""
    import yaml

    folder = tmp_path_factory.mktemp("cycle")
    (folder / "custbase.yaml").write_text(yaml.safe_dump(CONFIG_YAML))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("BENTOML_HOME", str(folder / "bentoml_home"))
        config = Config.model_validate(CONFIG_YAML)
        simulate_bank(config.simulation, Path("data/bank"), config=config, progress=False, until=FIRST)
        yield folder, config, mp


def _cycle(month: str, *extra: str):
    return CliRunner().invoke(app, ["cycle", "--month", month, "--trials", "1", *extra])


def _ledger() -> pd.DataFrame:
    return read_ledger(Path("data/ledger.parquet"))


@pytest.mark.slow
def test_three_months_of_cycles_with_a_rerun_a_crash_and_a_refusal(bank_folder):
    folder, config, mp = bank_folder

    # month 1: the first cycle trains, gates and builds, then scores
    result = _cycle(FIRST)
    assert result.exit_code == 0, result.output
    ledger = _ledger()
    assert step_status(ledger, FIRST) == dict.fromkeys(STEPS, "done")
    first = ledger.loc[ledger["month"] == FIRST].set_index("step")
    assert json.loads(first.loc["models", "outcome"])["trained"] is True
    assert json.loads(first.loc["score", "models"])["churn"].startswith("models:/custbase-churn/")
    assert json.loads(first.loc["validate", "inputs"])["raw_dir"]["digest"]
    assert json.loads(first.loc["retrain", "outcome"])["trained"] is False
    for kind in ("retention", "upgrade"):
        assert Path(f"data/campaigns/{FIRST}/{kind}.csv").is_file()
    assert Path(f"data/cycle/{FIRST}/readouts.txt").is_file() and Path("data/online_features.sqlite").is_file()

    # the same month again: a no-op that says so, the ledger untouched
    before = Path("data/ledger.parquet").read_bytes()
    result = _cycle(FIRST)
    assert result.exit_code == 0 and f"month {FIRST} is already done" in result.output
    assert Path("data/ledger.parquet").read_bytes() == before

    # the next month has not landed yet: refused in one line, naming the tables and the month
    result = _cycle(SECOND)
    assert result.exit_code == 2, result.output
    assert f"table balances has no rows dated in {SECOND}" in result.output and "transactions" in result.output
    assert "Traceback" not in result.output and step_status(_ledger(), SECOND) == {}

    # month 2 lands; the cycle crashes in the campaigns step, then a rerun resumes there
    continue_bank(Path("data/bank"), config=config, progress=False)

    def broken(ctx):
        raise RuntimeError("injected crash")

    with pytest.MonkeyPatch.context() as crash:
        crash.setitem(cycle.STEP_FUNCTIONS, "campaigns", broken)
        result = _cycle(SECOND)
    assert result.exit_code != 0 and "injected crash" in str(result.exception)
    status = step_status(_ledger(), SECOND)
    assert status == {**dict.fromkeys(STEPS[:STEPS.index("campaigns")], "done"), "campaigns": "failed"}
    finished = _ledger().set_index(["month", "step"])["finished_at"]
    result = _cycle(SECOND)
    assert result.exit_code == 0, result.output
    assert f"resuming at step campaigns" in result.output and "score the base and refresh the online snapshot: done before, skipped" in result.output
    after = _ledger().set_index(["month", "step"])
    assert step_status(_ledger(), SECOND) == dict.fromkeys(STEPS, "done")
    for step in STEPS[:STEPS.index("campaigns")]:  # the steps done before the crash did not run again
        assert after.loc[(SECOND, step), "finished_at"] == finished.loc[(SECOND, step)]
    assert json.loads(after.loc[(SECOND, "features"), "outcome"])["added"] == [SECOND]
    assert json.loads(after.loc[(SECOND, "retrain"), "outcome"])["due"] is False  # one month since the first cycle
    assert Path(f"data/cycle/{FIRST}/scores/_SUCCESS").is_file()  # the previous month's scores were kept aside

    # month 3: two months since the first cycle trained, so this one retrains; its MLflow runs carry the month
    continue_bank(Path("data/bank"), config=config, progress=False)
    result = _cycle(THIRD)
    assert result.exit_code == 0, result.output
    third = _ledger().set_index(["month", "step"])
    retrain = json.loads(third.loc[(THIRD, "retrain"), "outcome"])
    assert retrain["trained"] is True and retrain["due"] is True
    runs = json.loads(third.loc[(THIRD, "retrain"), "mlflow_runs"])
    assert runs
    import mlflow

    from training.tracking import configure_tracking

    configure_tracking(config)
    tagged = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`{cycle.CYCLE_TAG}` = '{THIRD}'",
                                output_format="list")
    assert set(runs) <= {r.info.run_id for r in tagged}
    assert sorted(set(_ledger()["month"])) == [FIRST, SECOND, THIRD]
    assert (_ledger().groupby("month")["step"].count() == len(STEPS)).all()


def test_a_month_with_a_missing_table_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.model_validate(CONFIG_YAML)
    simulate_bank(config.simulation.model_copy(update={"customers": 60}), Path("data/bank"), config=config,
                  progress=False, until=FIRST)
    shutil.rmtree(Path(f"data/bank/transactions/period={FIRST}"))
    result = CliRunner().invoke(app, ["cycle", "--month", FIRST])
    assert result.exit_code == 2, result.output
    assert f"table transactions has no rows dated in {FIRST}" in result.output and "balances" not in result.output.split(";")[0]
    assert "Traceback" not in result.output and not Path("data/ledger.parquet").exists()
    result = CliRunner().invoke(app, ["cycle", "--month", "2025-2"])
    assert result.exit_code == 2 and "YYYY-MM" in result.output


def test_a_month_before_the_data_end_or_while_the_extract_is_written_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.model_validate(CONFIG_YAML)
    simulate_bank(config.simulation.model_copy(update={"customers": 60}), Path("data/bank"), config=config,
                  progress=False, until=FIRST)
    result = CliRunner().invoke(app, ["cycle", "--month", "2025-01"])
    assert result.exit_code == 2 and f"runs to {FIRST}-28, past 2025-01" in result.output, result.output
    manifest = Path("data/bank/manifest.json")
    manifest.write_text(manifest.read_text().replace('"complete"', '"writing"'))
    result = CliRunner().invoke(app, ["cycle", "--month", FIRST])
    assert result.exit_code == 2 and "still being written" in result.output and "Traceback" not in result.output


def test_a_step_that_needs_the_user_stops_in_one_line_and_resumes_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.model_validate(CONFIG_YAML)
    simulate_bank(config.simulation.model_copy(update={"customers": 60}), Path("data/bank"), config=config,
                  progress=False, until=FIRST)
    Path("data/customer_months.parquet").write_bytes(b"")  # a single file (a Spark build): months cannot be appended
    result = CliRunner().invoke(app, ["cycle", "--month", FIRST])
    assert result.exit_code == 2, result.output
    assert "single parquet file" in result.output and "resumes at that step" in result.output
    assert "Traceback" not in result.output
    assert step_status(_ledger(), FIRST) == {"validate": "done", "features": "failed"}


def test_a_bento_left_without_champions_in_the_registry_means_training(tmp_path, monkeypatch):
    """`make clean` empties mlruns/ but not the bento store: the first cycle must train, not trust the old bento."""
    from serving.jobs import ServingSetupError

    def no_champions(config):
        raise ServingSetupError("no champion for churn, upgrade, clv in the MLflow registry")

    trained = []
    monkeypatch.setattr(cycle, "_has_bento", lambda: True)
    monkeypatch.setattr(cycle, "_champions", no_champions)
    monkeypatch.setattr(cycle, "_train_gate_build", lambda ctx: trained.append(ctx.month) or {"bento": "custbase:new"})
    ctx = cycle._Context(Config(), "2025-10", 1, tmp_path / "ledger.parquet", lambda text: None)
    with pytest.raises(ServingSetupError):  # the fake registry stays empty after the (fake) training
        cycle._models(ctx)
    assert trained == ["2025-10"]


def test_a_cycle_reads_out_the_campaigns_matured_since_the_last_read_out():
    ids = ["2025-06-retention", "2025-07-retention", "2025-08-retention", "2025-09-retention"]
    assert cycle.newly_matured(ids, set()) == ["2025-09-retention"]  # the first cycle: the newest only
    assert cycle.newly_matured(ids[:3], set()) == ["2025-08-retention"]
    # the next cycle: what matured since, not the history before the first read-out
    assert cycle.newly_matured(ids, {"2025-08-retention"}) == ["2025-09-retention"]
    assert cycle.newly_matured(ids, {"2025-09-retention"}) == []
