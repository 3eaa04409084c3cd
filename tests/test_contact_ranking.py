"""One contact ranking: recommended_action and recommended_offer come from the same values and never contradict,
and campaign lists offer what scoring recommends (batch and online alike)."""

import json

import numpy as np
import pandas as pd
import pytest

from custbase.config import Policy
from serving.runtime.campaign import best_offers, offer_values
from serving.runtime.policy import CONTACTS, contact_values, recommend
from serving.runtime.scoring import score_customers, score_records
from synthetic import scoring_month, train_tiny_models

DEMO_CUSTOMERS = 5_000  # the demo's default bank size


@pytest.fixture(scope="module")
def models():
    return train_tiny_models()


@pytest.fixture(scope="module")
def base():
    return scoring_month(DEMO_CUSTOMERS, seed=11)


def _uplift(offer: str):
    """A made-up uplift model: mostly helpful, sometimes backfiring (sleeping dogs)."""
    def predict(frame: pd.DataFrame) -> np.ndarray:
        rng = np.random.default_rng(0 if offer == "retention" else 1)
        return rng.normal(0.03, 0.05, len(frame))
    return predict


POLICIES = {
    "defaults": Policy(),
    "dear_contacts": Policy(retention_contact_cost=50.0, upgrade_contact_cost=80.0, min_expected_value=20.0),
}


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("with_uplift", [False, True])
def test_action_and_offer_never_contradict_on_a_demo_sized_base(models, base, policy_name, with_uplift):
    policy = POLICIES[policy_name]
    uplift = {offer: _uplift(offer) for offer in ("retention", "upgrade")} if with_uplift else None
    scores = score_customers(base, models, policy, reasons="none", uplift=uplift)
    action, offer = scores["recommended_action"], scores["recommended_offer"]
    assert set(action) >= {"retain", "none"} and set(offer) >= {"retention", "none"}
    for contact, campaign_offer in (("retain", "retention"), ("upgrade_offer", "upgrade")):
        rows = action == contact
        assert (offer[rows] == campaign_offer).all(), contact
        np.testing.assert_allclose(scores.loc[rows, "offer_incremental_value"], scores.loc[rows, "expected_value_of_contact"])
    assert (offer[action == "none"] == "none").all()
    # the offer is one of the ranked contacts: never worth more than the action chosen
    assert (scores["offer_incremental_value"] <= scores["expected_value_of_contact"] + 1e-9).all()
    # campaign lists price the same offers from the scores
    frame = scores.assign(aum_month_end=base["aum_month_end"].to_numpy())
    if with_uplift:
        frame = frame.assign(**{f"{o}_uplift": _uplift(o)(base) for o in ("retention", "upgrade")})
    best = best_offers(frame, policy)
    assert best["best_offer"].tolist() == offer.tolist()
    np.testing.assert_allclose(best["best_offer_value"], scores["offer_incremental_value"])
    retention = offer_values(frame, "retention", policy)
    assert (retention["uplift_source"] == ("model" if with_uplift else "rule")).all()


def test_online_records_give_the_batch_action_and_offer(models, base):
    head = base.head(300)
    batch = score_customers(head, models, Policy(), reasons="action")
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in head.assign(as_of=head["as_of"].dt.strftime("%Y-%m-%d")).to_dict("records")]
    online = score_records(records, models, Policy(), reasons="action")
    for name in ("recommended_action", "recommended_offer"):
        assert [r[name] for r in online] == batch[name].tolist()
    for name in ("expected_value_of_contact", "offer_incremental_value"):
        np.testing.assert_array_equal([r[name] for r in online], batch[name].to_numpy())


def test_contact_values_known_answer_with_offer_cost():
    """Retain pays the offer cost too: 0.5 x 0.25 x 20,000 - 5 - 0.3 x 0.0003 x 1,000,000 = 2,500 - 5 - 90 = 2,405."""
    scores = {
        "churn_probability": np.array([0.5]), "upgrade_probability": np.array([0.0]), "clv_12m": np.array([20_000.0]),
        "value_tier": np.array(["affluent"], dtype=object), "aum_month_end": np.array([1_000_000.0]),
        "product_count": np.array([5.0]),
    }
    values = contact_values(scores, Policy())
    assert values.matrix.shape == (1, len(CONTACTS))
    assert values.column("retain")[0] == pytest.approx(2_405.0)
    chosen = recommend(scores, Policy())
    assert chosen["recommended_action"].tolist() == ["retain"] and chosen["recommended_offer"].tolist() == ["retention"]
    assert chosen["offer_uplift"][0] == pytest.approx(0.125)
    empty = recommend({k: v[:0] for k, v in scores.items()}, Policy())
    assert all(len(v) == 0 for v in empty.values())


def test_one_offer_is_priced_from_its_own_inputs_only():
    """The backtest prices the upgrade offer of rows that carry no churn score or CLV (and the retention offer
    of rows without an upgrade score)."""
    upgrade_rows = pd.DataFrame({"value_tier": ["mass", "private"], "upgrade_probability": [0.4, np.nan],
                                 "aum_month_end": [10_000.0, 5_000_000.0]})
    values = offer_values(upgrade_rows, "upgrade", Policy())
    # 0.4 x 0.5 x 1,500 - 30 - 0.1 x 0.002 x 10,000 = 300 - 30 - 2 = 268; the top tier has no upgrade
    assert values["expected_incremental_value"].iloc[0] == pytest.approx(268.0)
    assert np.isnan(values["expected_incremental_value"].iloc[1])
    retention_rows = pd.DataFrame({"churn_probability": [0.2], "clv_12m": [1_000.0], "aum_month_end": [0.0]})
    assert offer_values(retention_rows, "retention", Policy())["expected_incremental_value"].iloc[0] == pytest.approx(45.0)


def test_the_demo_scores_never_contradict_and_online_gives_the_same_offers(monkeypatch):
    """On the demo's own bank and bento (after `make demo`): batch scores, and the online path on its snapshot."""
    from pathlib import Path

    from custbase.config import load_config
    from serving.batch import read_scores
    from serving.jobs import bento_models
    from serving.runtime.snapshot import OnlineFeatureSnapshot

    root = Path(__file__).parents[1]
    paths = load_config().paths
    scores_dir, snapshot = root / paths.scores_dir, root / paths.online_snapshot
    if not (scores_dir / "_SUCCESS").exists() or not snapshot.exists():
        pytest.skip("run `make demo` first")
    monkeypatch.setenv("BENTOML_HOME", str(root / "bentoml_home"))
    batch = read_scores(scores_dir)
    action, offer = batch["recommended_action"], batch["recommended_offer"]
    assert (offer[action == "retain"] == "retention").all() and (offer[action == "upgrade_offer"] == "upgrade").all()
    assert (offer[action == "none"] == "none").all()
    models, _ = bento_models()
    if models.versions() != json.loads((scores_dir / "_run.json").read_text())["model_versions"]:
        pytest.skip("the newest bento holds other model versions than the demo's scores")
    found = OnlineFeatureSnapshot(snapshot).lookup_records(batch["customer_id"].tolist())
    online = score_records([found[i] for i in batch["customer_id"]], models, load_config().policy, reasons="none")
    assert [r["recommended_offer"] for r in online] == offer.tolist()
    np.testing.assert_array_equal([r["offer_incremental_value"] for r in online], batch["offer_incremental_value"].to_numpy())
