"""The champion/challenger gate, its records (version tags, audit log), rollback and history."""

from __future__ import annotations

import json

import pytest

from custbase.config import Promotion
from training.registry import champion_lineage, decide
from training.spec import SPECS

CHURN, CLV = SPECS["churn"], SPECS["clv"]
GATE = Promotion(margin=0.005, calibration_tolerance=0.01, clv_calibration_tolerance=0.05)


def _table(path) -> dict:
    """``frame`` and ``metadata`` of a customer-month table, as ``promote`` takes them."""
    from features.feature_set import read_feature_table

    frame, metadata = read_feature_table(path)
    return {"frame": frame, "metadata": metadata}


def test_the_first_challenger_is_promoted_when_there_is_no_champion():
    promoted, reason = decide(CHURN, {"roc_auc": 0.6, "ece": 0.2}, None, GATE)
    assert promoted and "no champion" in reason


@pytest.mark.parametrize(
    ("challenger", "promoted", "why"),
    [
        ({"roc_auc": 0.810, "ece": 0.020}, True, "within tolerance"),  # +0.010 AUC, same calibration
        ({"roc_auc": 0.803, "ece": 0.020}, False, "below the required margin"),  # +0.003 < margin 0.005
        ({"roc_auc": 0.790, "ece": 0.010}, False, "below the required margin"),  # worse ranking, better calibration
        ({"roc_auc": 0.850, "ece": 0.045}, False, "ece worsens"),  # much better ranking, ECE +0.025 > 0.01
        ({"roc_auc": 0.850, "ece": 0.029}, True, "within tolerance"),  # ECE +0.009 is tolerated
    ],
)
def test_the_gate_needs_a_margin_on_the_primary_metric_and_no_calibration_loss(challenger, promoted, why):
    decision, reason = decide(CHURN, challenger, {"roc_auc": 0.800, "ece": 0.020}, GATE)
    assert decision is promoted
    assert why in reason


@pytest.mark.parametrize("champion", [None, {"roc_auc": 0.800, "ece": 0.020}])
def test_a_challenger_that_does_not_beat_its_baseline_is_never_promoted(champion):
    # 0.9427 vs baseline 0.9429: the demo bank's upgrade model, which used to become champion anyway
    promoted, reason = decide(CHURN, {"roc_auc": 0.9427, "ece": 0.01}, champion, GATE, baseline={"roc_auc": 0.9429})
    assert not promoted
    assert "does not beat its baseline's 0.9429" in reason
    assert ("stays empty" in reason) is (champion is None)
    assert decide(CHURN, {"roc_auc": 0.9431, "ece": 0.01}, None, GATE, baseline={"roc_auc": 0.9429})[0]


def test_the_clv_gate_compares_normalized_gini_and_decile_mape():
    champion = {"normalized_gini": 0.60, "decile_mape": 0.10}
    assert decide(CLV, {"normalized_gini": 0.62, "decile_mape": 0.14}, champion, GATE)[0]
    assert not decide(CLV, {"normalized_gini": 0.62, "decile_mape": 0.20}, champion, GATE)[0]
    assert not decide(CLV, {"normalized_gini": float("nan"), "decile_mape": 0.1}, champion, GATE)[0]


def test_champion_lineage_replays_promotions_and_rollbacks():
    events = [
        {"action": "promote", "champion_after": "1"},
        {"action": "refuse", "champion_after": "1"},
        {"action": "promote", "champion_after": "3"},
        {"action": "promote", "champion_after": "4"},
        {"action": "rollback", "champion_after": "3"},
    ]
    assert champion_lineage(events) == ["1", "3"]


@pytest.fixture(scope="module")
def two_churn_versions(tmp_path_factory):
    """Churn v1 trained on the real signal and promoted; v2 trained on a table whose signal columns are shuffled."""
    from synthetic import synthetic_customer_months, write_feature_table
    from test_training import small_config

    from training.registry import promote
    from training.jobs import train_model

    root = tmp_path_factory.mktemp("registry")
    good = write_feature_table(synthetic_customer_months(seed=1), root / "good.parquet")
    scrambled = synthetic_customer_months(seed=1, scramble=("aum_change_ratio_3m", "logins_3m", "complaints_3m", "age"))
    worse = write_feature_table(scrambled, root / "worse.parquet")
    config = small_config(root / "mlruns", log_figures=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        first = train_model("churn", config, features_path=good, progress=False)
        first_decision = promote("churn", config, **_table(good))
        second = train_model("churn", config, features_path=worse, trials=1, progress=False)
        yield {"config": config, "good": good, "first": first, "second": second, "first_decision": first_decision, "root": root}


@pytest.mark.slow
def test_gate_refuses_a_worse_challenger_records_why_and_rollback_restores_the_previous_champion(two_churn_versions):
    from mlflow import MlflowClient

    from training.registry import RegistryError, audit_path, model_history, promote, rollback

    ctx = two_churn_versions
    config, good = ctx["config"], ctx["good"]
    client = MlflowClient()

    def aliases() -> dict[str, str]:
        return {k: str(v) for k, v in client.get_registered_model("custbase-churn").aliases.items()}

    assert ctx["first_decision"].promoted and ctx["first_decision"].champion_after == ctx["first"].version == "1"
    assert ctx["second"].version == "2"
    assert aliases() == {"champion": "1", "challenger": "2"}

    refused = promote("churn", config, **_table(good))
    assert not refused.promoted
    assert refused.challenger_metrics["roc_auc"] < refused.champion_metrics["roc_auc"]
    # the scrambled model loses to its own baseline too, which the gate checks first
    assert "does not beat its baseline" in refused.reason and "REFUSED" in refused.render()
    assert aliases()["champion"] == "1"
    tags = client.get_model_version("custbase-churn", "2").tags
    assert tags["promotion_decision"] == "refused" and tags["promotion_reason"] == refused.reason
    assert float(tags["promotion_champion_roc_auc"]) > float(tags["promotion_challenger_roc_auc"])
    events = [json.loads(line) for line in audit_path(config).read_text().splitlines()]
    assert [e["action"] for e in events] == ["promote", "refuse"]
    assert events[-1]["challenger_version"] == "2" and events[-1]["reason"] == refused.reason and events[-1]["user"]

    # force v2 in with a permissive gate, then roll back to v1
    permissive = config.model_copy(update={"promotion": Promotion(margin=-1.0, calibration_tolerance=1.0,
                                                                  require_beating_baseline=False)})
    assert promote("churn", permissive, **_table(good)).promoted
    assert aliases()["champion"] == "2"
    message = rollback("churn", config)
    assert "v2 to v1" in message
    assert aliases()["champion"] == "1"
    assert "rolled_back_at" in client.get_model_version("custbase-churn", "2").tags
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback("churn", config)

    history = model_history(config)
    assert "custbase-churn: champion v1, challenger v2" in history
    assert "rollback  v2 -> v1" in history and "refuse" in history
    assert "custbase-clv: champion -, challenger -" in history
