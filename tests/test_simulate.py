"""The simulated bank: deterministic, contract-exact, and shaped like a real retail bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from custbase.config import Config
from features.contract import (
    ASSET_PRODUCTS,
    GROUND_TRUTH_TABLE,
    MANIFEST_FILE,
    NON_CUSTOMER_INITIATED_CATEGORIES,
    PARTITION_KEY,
    TABLES,
)
from features.raw import find_table, read_manifest
from features.simulate import SIMULATED_TABLES, SimulationError, SimulationSummary, contract_schema, simulate_bank

CONFIG = Config()


def _simulate(out: Path, customers: int, months: int, seed: int = 3, chunk: int = 50_000, **extra) -> SimulationSummary:
    settings = CONFIG.simulation.model_copy(
        update={"customers": customers, "months": months, "seed": seed, "chunk_customers": chunk, **extra}
    )
    return simulate_bank(settings, out, config=CONFIG, progress=False)


def _read(raw: Path, table: str) -> pd.DataFrame:
    if table == GROUND_TRUTH_TABLE:
        return pd.read_parquet(raw / GROUND_TRUTH_TABLE).drop(columns=[PARTITION_KEY])
    return find_table(raw, table).read_pandas()


def _arrow_schema(raw: Path, table: str):
    path = raw / f"{table}.parquet"
    if path.exists():
        return pq.read_schema(path)
    return ds.dataset(raw / table, format="parquet", partitioning="hive").schema


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("sim") / "bank"
    # two chunks, so chunk boundaries are exercised
    return out, _simulate(out, customers=600, months=14, seed=5, chunk=400)


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("sim") / "bank"
    return out, _simulate(out, customers=4_000, months=30, seed=3)


@pytest.fixture(scope="module")
def customer_months(bank) -> pd.DataFrame:
    """Ground truth joined with month-end AUM and customer-initiated activity counts."""
    raw, _ = bank
    truth = _read(raw, GROUND_TRUTH_TABLE)
    balances = _read(raw, "balances")
    aum = (
        balances[balances["product"].isin(ASSET_PRODUCTS)]
        .groupby(["customer_id", "month"], as_index=False)["balance_month_end"]
        .sum()
        .rename(columns={"balance_month_end": "aum"})
    )
    tx = _read(raw, "transactions")
    tx["month"] = tx["timestamp"].dt.to_period("M").dt.to_timestamp("M").dt.normalize()
    own = tx[~tx["category"].isin(NON_CUSTOMER_INITIATED_CATEGORIES)]
    own_counts = own.groupby(["customer_id", "month"]).size().rename("own_transactions").reset_index()
    salary = tx[tx["category"] == "salary"].groupby(["customer_id", "month"]).size().rename("salaries").reset_index()
    inter = _read(raw, "interactions")
    inter["month"] = inter["timestamp"].dt.to_period("M").dt.to_timestamp("M").dt.normalize()
    contacts = inter.groupby(["customer_id", "month"]).size().rename("interactions").reset_index()
    truth["month"] = pd.to_datetime(truth["month"])
    for frame in (aum, own_counts, salary, contacts):
        frame["month"] = pd.to_datetime(frame["month"])
    frame = truth.merge(aum, how="left").merge(own_counts, how="left").merge(salary, how="left").merge(contacts, how="left")
    return frame.fillna({"aum": 0.0, "own_transactions": 0, "salaries": 0, "interactions": 0})


def _not_exited(frame: pd.DataFrame) -> pd.Series:
    exit_month = pd.to_datetime(frame["exit_month"])
    return exit_month.isna() | (frame["month"] < exit_month)


def _exits_within_3m(frame: pd.DataFrame) -> pd.Series:
    exit_month = pd.to_datetime(frame["exit_month"])
    return (exit_month > frame["month"]) & (exit_month <= frame["month"] + pd.offsets.MonthEnd(3))


# --- determinism and the contract --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bank_and_another_seed_does_not(small_bank, tmp_path):
    raw, _ = small_bank
    again = tmp_path / "again"
    _simulate(again, customers=600, months=14, seed=5, chunk=400)
    for table in (*SIMULATED_TABLES, GROUND_TRUTH_TABLE):
        assert _read(raw, table).equals(_read(again, table)), table
    other = tmp_path / "other"
    _simulate(other, customers=600, months=14, seed=6, chunk=400)
    assert not _read(raw, "transactions").equals(_read(other, "transactions"))


def test_every_table_matches_the_contract(small_bank):
    raw, summary = small_bank
    data_end = pd.Timestamp(read_manifest(raw)["data_end"])
    customers = _read(raw, "customers")
    onboarding = customers.set_index("customer_id")["onboarding_date"]
    for name in SIMULATED_TABLES:
        spec = TABLES[name]
        schema = _arrow_schema(raw, name)
        written = [f for f in schema if f.name != PARTITION_KEY]
        expected = contract_schema(name, tuple(f.name for f in written))
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in expected], name
        assert set(spec.required_columns) <= {f.name for f in written}, name
        frame = _read(raw, name)
        assert len(frame) == summary.rows[name] > 0, name
        for column in spec.columns:
            if column.name not in frame:
                continue
            values = frame[column.name]
            if not column.nullable:
                assert values.notna().all(), (name, column.name)
            if column.categories:
                assert set(values.dropna().unique()) <= set(column.categories), (name, column.name)
            if column.min_value is not None:
                assert (values >= column.min_value).all(), (name, column.name)
            if column.not_after_data_end:
                assert (pd.to_datetime(values) <= data_end + pd.Timedelta(days=1)).all(), (name, column.name)
            if column.not_before_onboarding:
                starts = pd.to_datetime(frame["customer_id"].map(onboarding))
                assert (pd.to_datetime(values) >= starts).all(), (name, column.name)
        if spec.key:
            assert not frame.duplicated(list(spec.key)).any(), name
    assert _read(raw, "transactions")["transaction_id"].is_unique


def test_partitions_are_hive_months_and_the_manifest_declares_the_end(small_bank):
    raw, summary = small_bank
    folders = sorted(p.name for p in (raw / "transactions").iterdir())
    assert folders[0] == f"{PARTITION_KEY}=2023-01" and len(folders) == 14
    manifest = read_manifest(raw)
    assert manifest["source"] == "simulated" and manifest["data_end"] == "2024-02-29" == summary.data_end.isoformat()
    assert manifest["seed"] == 5 and manifest["customers"] == 600
    assert len(list((raw / "balances" / f"{PARTITION_KEY}=2023-01").glob("part-*.parquet"))) == 2  # one per chunk


def test_ground_truth_has_its_columns_and_sane_values(small_bank):
    raw, _ = small_bank
    truth = _read(raw, GROUND_TRUTH_TABLE)
    assert list(truth.columns[:3]) == ["customer_id", "month", "churn_hazard"]
    for column in ("churn_hazard", "churn_probability_3m", "upgrade_probability_3m"):
        assert truth[column].between(0, 1).all(), column
    assert (truth["expected_clv_12m"] >= 0).all()
    assert set(truth["exit_type"]) <= {"none", "closure", "dormancy"}
    assert (truth["exit_month"].isna() == (truth["exit_type"] == "none")).all()
    closures = _read(raw, "closures")
    closed = set(truth.loc[truth["exit_type"] == "closure", "customer_id"])
    assert closed == set(closures["customer_id"])


def test_refuses_to_overwrite_a_folder_that_is_not_a_simulated_bank(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "accounts.csv").write_text("id\n1\n")
    with pytest.raises(SimulationError, match="refusing to overwrite"):
        _simulate(precious, customers=20, months=2)
    assert (precious / "accounts.csv").exists()


def test_replaces_an_earlier_simulation_cleanly(tmp_path):
    out = tmp_path / "bank"
    _simulate(out, customers=50, months=5)
    (out / "transactions" / "stale.parquet").write_bytes(b"junk")
    summary = _simulate(out, customers=30, months=3)
    assert not (out / "transactions" / "stale.parquet").exists()
    assert len(_read(out, "customers")) == 30 and read_manifest(out)["months"] == 3
    assert (out / MANIFEST_FILE).exists() and "30 customers" in summary.render()


# --- the shape of a real retail bank ---------------------------------------------------------------------------------


def test_value_is_concentrated_in_few_customers(bank, customer_months):
    _, summary = bank
    last = customer_months[customer_months["month"] == customer_months["month"].max()]
    shares = last["value_tier"].value_counts(normalize=True)
    assert shares["mass"] > 0.7
    assert shares.get("private", 0.0) < 0.01 and shares.get("high_net_worth", 0.0) < 0.05
    aum = np.sort(last["aum"].to_numpy())[::-1]
    assert aum[: len(aum) // 10].sum() / aum.sum() > 0.5
    assert summary.top_decile_aum_share > 0.5 and summary.tier_shares["mass"] > 0.7


def test_churn_is_a_few_percent_a_quarter_and_payroll_customers_stay(bank, customer_months):
    _, summary = bank
    rates = [rate for _, rate in summary.churn_rate_by_quarter]
    assert len(rates) >= 8 and all(0.01 < rate < 0.10 for rate in rates)
    months = customer_months["month"]
    at_risk = customer_months[_not_exited(customer_months) & (months <= months.max() - pd.offsets.MonthEnd(3))]
    churned = _exits_within_3m(at_risk)
    payroll = at_risk["salaries"] > 0
    assert churned[payroll].mean() < 0.5 * churned[~payroll].mean()


def test_many_accounts_are_low_activity_but_rarely_look_dormant_without_leaving(bank, customer_months):
    threshold = CONFIG.labels.dormancy_aum_threshold
    frame = customer_months.sort_values(["customer_id", "month"])
    quiet = (frame["aum"] < threshold) & (frame["own_transactions"] == 0) & (frame["interactions"] == 0)
    alive = frame[_not_exited(frame)]
    assert (alive["own_transactions"] <= 2).mean() > 0.15  # a large low-activity share
    assert 5 < alive["own_transactions"].mean() < 20
    run = quiet.groupby(frame["customer_id"]).rolling(3).sum().reset_index(level=0, drop=True)
    false_dormancy = (run[_not_exited(frame)] == 3).mean()
    assert false_dormancy < 0.005
    after = frame[(frame["exit_type"] == "dormancy") & ~_not_exited(frame)]
    assert len(after) > 0 and quiet[after.index].all()  # dormant leavers stay quiet and drained


def test_upgrades_happen_to_a_few_percent(bank):
    _, summary = bank
    assert 0.01 < summary.upgrade_rate_3m < 0.06


def test_campaigns_have_a_randomised_control_group_and_work_on_average(bank):
    raw, _ = bank
    contacts = _read(raw, "campaign_contacts")
    assert set(contacts["offer"]) == {"retention", "upgrade", "cross_sell"}
    exploration = contacts["campaign_id"].str.endswith("-exploration")
    assert 0.1 < 1 - contacts.loc[~exploration, "treated"].mean() < 0.3
    assert 0.4 < 1 - contacts.loc[exploration, "treated"].mean() < 0.6
    assert set(contacts.loc[exploration, "offer"]) == {"retention", "upgrade"}
    assert not contacts.duplicated(["customer_id", "campaign_id"]).any()
    upgrade = contacts[contacts["offer"] == "upgrade"]
    assert upgrade.loc[upgrade["treated"], "responded"].mean() > upgrade.loc[~upgrade["treated"], "responded"].mean()


def test_retention_response_is_heterogeneous_and_only_weakly_tied_to_risk(bank, customer_months):
    truth = customer_months[customer_months["expected_clv_12m"] > 0]
    effect = truth["campaign_effect"]
    # persuadables and sleeping dogs both exist
    assert (effect > 0.01).mean() > 0.01 and (effect < 0).mean() > 0.05
    # the riskiest customers are not the best targets (Ascarza 2018)
    risky = truth["churn_probability_3m"] >= truth["churn_probability_3m"].quantile(0.95)
    assert effect[risky].mean() < 2 * effect[~risky].abs().mean() + 0.02
    assert abs(np.corrcoef(truth["churn_probability_3m"], effect)[0, 1]) < 0.5
    # every acceptor is paid: the expected offer cost grows with the balance it is paid on
    assert (truth["retention_offer_cost"] >= 0).all() and truth["retention_offer_cost"].max() > 0
    assert (truth["upgrade_offer_cost"] >= 0).all()


def test_seasonality_year_end_bonus(bank):
    raw, _ = bank
    tx = _read(raw, "transactions")
    salary = tx[tx["category"] == "salary"]
    by_month = salary.groupby(salary["timestamp"].dt.month)["amount"].sum()
    assert by_month[12] > 1.5 * by_month.drop(12).mean()
    assert (tx["category"] == "fee").sum() > 0


def test_oracle_churn_auc_is_realistic(bank, customer_months):
    _, summary = bank
    months = customer_months["month"]
    rows = customer_months[_not_exited(customer_months) & (months <= months.max() - pd.offsets.MonthEnd(3))]
    auc = roc_auc_score(_exits_within_3m(rows), rows["churn_probability_3m"])
    assert 0.75 <= auc <= 0.92
    assert abs(auc - summary.oracle_churn_auc) < 0.02
    # the true probability is calibrated
    assert abs(rows["churn_probability_3m"].mean() - _exits_within_3m(rows).mean()) < 0.01


@pytest.fixture(scope="module")
def labeled_months(bank, tmp_path_factory) -> pd.DataFrame:
    """The label builder's customer-month table of ``bank`` joined with its ground truth."""
    from features.build import build_customer_months

    raw, _ = bank
    out = tmp_path_factory.mktemp("features") / "cm.parquet"
    build_customer_months(raw, out, CONFIG, validate=False, progress=False)
    names = CONFIG.labels.names
    table = pd.read_parquet(out, columns=["customer_id", "as_of", "months_quiet", "months_since_last_activity", names.churn])
    truth = _read(raw, GROUND_TRUTH_TABLE)[["customer_id", "month", names.churn_oracle, "exit_month", "exit_type"]]
    truth["as_of"] = pd.to_datetime(truth.pop("month")).astype("datetime64[us]")
    table["as_of"] = pd.to_datetime(table["as_of"]).astype("datetime64[us]")
    return table.merge(truth, on=["customer_id", "as_of"], how="left")


def test_no_positive_had_started_its_exit_at_as_of_and_the_label_is_the_simulated_event(labeled_months):
    names = CONFIG.labels.names
    rows = labeled_months[labeled_months[names.churn].notna()]
    assert (rows["months_quiet"] == 0).all()
    exit_month = pd.to_datetime(rows["exit_month"])
    positives = rows[names.churn] == 1
    # the simulated exit's first quiet month (or closure month) is after as_of for every positive that has one; the
    # few without one are quiet runs of customers the simulator did not make leave (they count as exits all the same)
    known = positives & exit_month.notna()
    assert (exit_month[known] > rows.loc[known, "as_of"]).all()
    assert known.sum() > 0.99 * positives.sum()
    simulated = (exit_month > rows["as_of"]) & (exit_month <= rows["as_of"] + pd.offsets.MonthEnd(CONFIG.labels.churn_horizon_months))
    assert (simulated == positives).mean() > 0.995


def test_the_oracle_is_realistic_against_the_new_label(bank, labeled_months):
    _, summary = bank
    names = CONFIG.labels.names
    rows = labeled_months[labeled_months[names.churn].notna()]
    assert rows[names.churn_oracle].notna().all()
    auc = roc_auc_score(rows[names.churn], rows[names.churn_oracle])
    assert 0.75 <= auc <= 0.92 and abs(auc - summary.oracle_churn_auc) < 0.02
    assert abs(rows[names.churn_oracle].mean() - rows[names.churn].mean()) < 0.01  # calibrated: the same event
    assert all(0.02 <= rate <= 0.08 for _, rate in summary.churn_rate_by_quarter[1:])
    # customers with activity of their own at as_of are still rankable: the oracle is not living off quiet rows
    active = rows[rows["months_since_last_activity"] == 0]
    assert roc_auc_score(active[names.churn], active[names.churn_oracle]) > 0.75
