"""Uplift models inside scoring: the batch job, the Spark job and the online service price each offer with the same
uplift models, by the same rule as training and the backtest."""

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from serving.runtime.bundle import ModelBundle
from serving.runtime.models import check_models, uplift_model
from serving.runtime.policy import Policy
from serving.runtime.scoring import score_customers, score_records, uplift_columns
from synthetic import scoring_month, tiny_uplift_bundles, train_tiny_models, with_tiny_uplift
from training.uplift import bundle_uplift


@pytest.fixture(scope="module")
def bundles():
    return tiny_uplift_bundles()


@pytest.fixture(scope="module")
def models(bundles):
    return with_tiny_uplift(train_tiny_models(), bundles)


@pytest.fixture(scope="module")
def frame():
    return scoring_month(300, seed=5)


def test_the_served_uplift_is_trainings_uplift_of_the_same_bundle(bundles, models, frame, tmp_path):
    for offer, bundle in bundles.items():
        bundle.save(tmp_path / offer)
        reloaded = uplift_model(ModelBundle.load(tmp_path / offer), "1")
        expected = bundle_uplift(bundle, frame)
        np.testing.assert_allclose(reloaded.predict(reloaded.encode_frame(frame)), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(uplift_columns(frame, models.uplift)[f"{offer}_uplift"], expected, rtol=1e-9, atol=1e-12)
    # the planted effects: retention helps the active, upgrade the affluent
    upgrade = uplift_columns(frame, models.uplift)["upgrade_uplift"]
    affluent = frame["value_tier"].eq("affluent").to_numpy()
    assert upgrade[affluent].mean() > upgrade[~affluent].mean() + 0.05


def test_scores_price_the_recommended_offer_with_its_uplift_model(models, frame):
    scores = score_customers(frame, models, Policy(), reasons="none")
    uplift = uplift_columns(frame, models.uplift)
    for offer in ("retention", "upgrade"):
        rows = (scores["recommended_offer"] == offer).to_numpy()
        assert rows.any(), offer
        np.testing.assert_allclose(scores.loc[rows, "offer_uplift"], uplift[f"{offer}_uplift"][rows], rtol=1e-9)
    # the rule of thumb alone recommends other offers: the uplift models change the decision
    plain = score_customers(frame, replace(models, uplift={}), Policy(), reasons="none")
    assert (plain["recommended_offer"] != scores["recommended_offer"]).any()
    assert scores.loc[scores["recommended_offer"] != "none", "offer_incremental_value"].gt(0).all()
    # an explicit uplift still wins over the packed model (what-if pricing)
    backfire = score_customers(frame, models, Policy(), reasons="none", uplift={"retention": lambda f: np.full(len(f), -0.5)})
    assert "retention" not in set(backfire["recommended_offer"])


def test_online_records_score_like_the_batch_frame_with_uplift(models, frame):
    batch = score_customers(frame, models, Policy(), reasons="action")
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]
    one_by_one = [score_records([r], models, Policy(), reasons="action")[0] for r in records[:60]]
    together = score_records(records, models, Policy(), reasons="action")
    for online in (one_by_one, together[:60]):
        for i, row in enumerate(online):
            assert row["recommended_offer"] == batch.loc[i, "recommended_offer"]
            assert row["recommended_action"] == batch.loc[i, "recommended_action"]
            expected = batch.loc[i, "offer_uplift"]
            assert (row["offer_uplift"] is None) == bool(np.isnan(expected))
            if row["offer_uplift"] is not None:
                assert row["offer_uplift"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert row["offer_incremental_value"] == pytest.approx(batch.loc[i, "offer_incremental_value"], rel=1e-9, abs=1e-9)


def test_models_with_uplift_pickle_for_spark_and_report_their_versions(models, frame):
    again = pickle.loads(pickle.dumps(models))
    pd.testing.assert_frame_equal(score_customers(frame, again, Policy(), reasons="none"),
                                  score_customers(frame, models, Policy(), reasons="none"))
    assert models.versions()["retention-uplift"] == "1" and models.uris()["upgrade-uplift"].endswith("upgrade-uplift/1")
    assert "logins_3m" in models.feature_names()


def test_an_uplift_model_under_the_wrong_offer_is_refused(models):
    with pytest.raises(ValueError, match="retention offer's uplift model"):
        check_models(replace(models, uplift={"retention": models.uplift["upgrade"]}))
    not_uplift = ModelBundle("churn", "binary", ["a"], {}, {}, None, {})
    with pytest.raises(ValueError, match="not an uplift model"):
        uplift_model(not_uplift, "1")


def test_the_request_schema_accepts_every_category_the_main_models_know(models, bundles):
    """An uplift model learned from the contacts may have seen fewer categories; a request must still be accepted
    with any value the churn, upgrade and CLV models know (the uplift model scores it as missing)."""
    from serving.runtime.spec import spec_from_models

    narrow = {**bundles}
    tier = narrow["upgrade"]
    narrow["upgrade"] = ModelBundle(tier.model, tier.kind, tier.feature_columns, {**tier.categories, "value_tier": ["mass"]},
                                    tier.boosters, None, tier.metadata)
    spec = spec_from_models(with_tiny_uplift(train_tiny_models(), narrow), Policy())
    accepted = {f.name: f.categories for f in spec.features if f.categories}
    assert accepted["value_tier"] == list(models.churn.categories["value_tier"])
