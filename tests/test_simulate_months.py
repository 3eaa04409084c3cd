"""The simulator month by month: a bank written through M, then continued to M + 1 and M + 2, holds the rows of one
full run through M + 2, and the customer-month features built from it equal the full run's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from custbase.cli import app
from custbase.config import Config
from features.build import build_customer_months
from features.contract import GROUND_TRUTH_TABLE, MANIFEST_FILE, PARTITION_KEY
from features.feature_set import read_feature_table
from features.raw import find_table, read_manifest
from features.simulate import SIMULATED_TABLES, SimulationError, continue_bank, simulate_bank

CONFIG = Config()
#: Two chunks, so the chunk boundary is exercised; the horizon ends at 2023-10.
SETTINGS = CONFIG.simulation.model_copy(update={"customers": 500, "months": 10, "seed": 13, "chunk_customers": 300,
                                                "start_month": "2023-01"})
SORT = {"customers": ["customer_id"], "balances": ["customer_id", "month", "product"],
        "transactions": ["transaction_id"], "interactions": ["customer_id", "timestamp", "kind"],
        "campaign_contacts": ["customer_id", "timestamp", "campaign_id"], "closures": ["customer_id"],
        GROUND_TRUTH_TABLE: ["customer_id", "month"]}


def _read(raw: Path, table: str) -> pd.DataFrame:
    if table == GROUND_TRUTH_TABLE:
        frame = pd.read_parquet(raw / GROUND_TRUTH_TABLE).drop(columns=[PARTITION_KEY])
    else:
        frame = find_table(raw, table).read_pandas()
    return frame.sort_values(SORT[table]).reset_index(drop=True)


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    root = tmp_path_factory.mktemp("months")
    full = root / "full"
    simulate_bank(SETTINGS, full, config=CONFIG, progress=False)
    stepped = root / "stepped"
    simulate_bank(SETTINGS, stepped, config=CONFIG, progress=False, until="2023-08")
    continue_bank(stepped, config=CONFIG, progress=False)
    continue_bank(stepped, config=CONFIG, progress=False)
    return full, stepped


def test_a_bank_continued_month_by_month_holds_the_full_runs_rows(banks):
    full, stepped = banks
    for table in (*SIMULATED_TABLES, GROUND_TRUTH_TABLE):
        pd.testing.assert_frame_equal(_read(stepped, table), _read(full, table), obj=table)
    manifest = read_manifest(stepped)
    assert manifest["simulated_through"] == "2023-10" and manifest["data_end"] == "2023-10-31"
    assert {k: v for k, v in manifest.items()} == read_manifest(full)


def test_features_of_the_continued_bank_equal_the_full_runs(banks, tmp_path):
    full, stepped = banks
    a, a_meta = read_feature_table(build_customer_months(stepped, tmp_path / "a.parquet", CONFIG, validate=True, progress=False).out_path)
    b, b_meta = read_feature_table(build_customer_months(full, tmp_path / "b.parquet", CONFIG, validate=False, progress=False).out_path)
    pd.testing.assert_frame_equal(a, b)
    assert {**a_meta, "raw_dir": None} == {**b_meta, "raw_dir": None}


def test_until_writes_nothing_dated_after_the_month(tmp_path):
    out = tmp_path / "bank"
    summary = simulate_bank(SETTINGS, out, config=CONFIG, progress=False, until="2023-04")
    assert str(summary.data_end) == "2023-04-30" and read_manifest(out)["data_end"] == "2023-04-30"
    assert sorted(p.name for p in (out / "balances").iterdir()) == [f"{PARTITION_KEY}=2023-0{m}" for m in range(1, 5)]
    end = pd.Timestamp("2023-05-01")
    assert (pd.to_datetime(_read(out, "customers")["onboarding_date"]) < end).all()
    assert (pd.to_datetime(_read(out, "campaign_contacts")["timestamp"]) < end).all()
    assert (pd.to_datetime(_read(out, "closures")["closed_date"]) < end).all()
    assert not list(out.glob(".*.writing"))


def test_a_continuation_killed_half_way_is_redone_by_the_next(banks, tmp_path, monkeypatch):
    import features.simulate

    full, _ = banks
    out = tmp_path / "bank"
    simulate_bank(SETTINGS, out, config=CONFIG, progress=False, until="2023-09")

    def killed(self):
        raise KeyboardInterrupt  # after the month's partitions, before the single-file tables and the manifest

    with monkeypatch.context() as m:
        m.setattr(features.simulate._WindowSink, "close", killed)
        with pytest.raises(KeyboardInterrupt):
            continue_bank(out, config=CONFIG, progress=False)
    manifest = read_manifest(out)
    assert manifest["status"] == "writing" and manifest["simulated_through"] == "2023-09"
    continue_bank(out, config=CONFIG, progress=False)
    for table in (*SIMULATED_TABLES, GROUND_TRUTH_TABLE):
        pd.testing.assert_frame_equal(_read(out, table), _read(full, table), obj=table)
    assert not list(out.glob(".*.writing"))


def test_continuing_is_refused_past_the_horizon_or_with_another_configuration(tmp_path):
    out = tmp_path / "bank"
    simulate_bank(SETTINGS, out, config=CONFIG, progress=False, until="2023-09")
    other = Config.model_validate({"labels": {"dormancy_aum_threshold": CONFIG.labels.dormancy_aum_threshold + 1}})
    with pytest.raises(SimulationError, match="differ"):
        continue_bank(out, config=other, progress=False)
    with pytest.raises(SimulationError, match="already simulated through 2023-09"):
        continue_bank(out, config=CONFIG, until="2023-09", progress=False)
    continue_bank(out, config=CONFIG, progress=False)
    with pytest.raises(SimulationError, match="last month of its 10-month horizon"):
        continue_bank(out, config=CONFIG, progress=False)
    with pytest.raises(SimulationError, match="outside the simulated horizon"):
        simulate_bank(SETTINGS, tmp_path / "other", config=CONFIG, progress=False, until="2024-01")


def test_cli_continue_writes_the_next_month_and_user_mistakes_are_one_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "bank"
    args = ["simulate", "--customers", "120", "--months", "6", "--start", "2024-01", "--out", str(out)]
    result = runner.invoke(app, [*args, "--until", "2024-04"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["simulate", "--continue", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2024-05" in result.output
    assert json.loads((out / MANIFEST_FILE).read_text())["simulated_through"] == "2024-05"
    for bad, words in ((["simulate", "--continue", "--seed", "3", "--out", str(out)], "--seed"),
                       ([*args[:-2], "--out", str(tmp_path / "b2"), "--until", "2025-01"], "outside the simulated horizon"),
                       (["simulate", "--continue", "--out", str(tmp_path / "nothing")], "holds no bank simulated month by month"),
                       ([*args, "--until", "2024-13"], "YYYY-MM")):
        result = runner.invoke(app, bad)
        assert result.exit_code == 2, (bad, result.output)
        assert words in result.output and "Traceback" not in result.output
