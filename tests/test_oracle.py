"""Oracles that are true limits: the continuation of the simulated bank replays its labels exactly with its own
random stream, and with fresh streams gives an oracle that a model exceeds only within the stated noise."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from raw_factory import simulated_customer_months

from custbase.config import Config
from features.feature_set import read_feature_table
from features.simulate import _Calendar, _Context, _continue_chunk, _rate_shocks, continuation_outcomes
from training.evaluation import normalized_gini
from training.oracle import write_continuation_oracle
from training.spec import get_spec
from training.train import oracle_continuation, oracle_noise, oracle_predictions, prepare_modeling_data

CONFIG = Config()
SETTINGS = CONFIG.simulation.model_copy(update={"customers": 2_000, "months": 36, "seed": 21})


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return simulated_customer_months(tmp_path_factory.mktemp("oracle"), CONFIG, customers=SETTINGS.customers,
                                     months=SETTINGS.months, seed=SETTINGS.seed)


def test_a_continuation_on_the_banks_own_stream_replays_every_label(bank):
    _, path = bank
    frame, _ = read_feature_table(path)
    calendar = _Calendar.build(SETTINGS.start_month, SETTINGS.months)
    ctx = _Context(settings=SETTINGS, config=CONFIG, calendar=calendar, shocks=_rate_shocks(SETTINGS.seed, calendar))
    fork = 20
    run = _continue_chunk(ctx, 0, 0, SETTINGS.customers, fork, fork + 12, copies=1, stream=None)
    outcomes = continuation_outcomes(run, SETTINGS.customers, CONFIG.labels)
    rows = frame[frame["as_of"] == pd.Timestamp(calendar.month_end_dates[fork])].set_index("customer_id")
    ids = np.arange(SETTINGS.customers) + 100_000_001
    names = CONFIG.labels.names
    for key, label in (("churn", names.churn), ("upgrade", names.upgrade), ("clv", names.clv)):
        known = rows[label].dropna()
        replayed = pd.Series(outcomes[key][0], index=ids).reindex(known.index)
        assert len(known) > 500
        np.testing.assert_allclose(replayed.to_numpy(), known.to_numpy(), atol=1e-6, err_msg=key)


def test_a_model_exceeds_the_continuation_oracle_only_within_its_noise(bank):
    raw, path = bank
    write_continuation_oracle(raw, path, ["clv"], CONFIG, replications=8, progress=False)
    frame, metadata = read_feature_table(path)
    data = prepare_modeling_data(frame, metadata, get_spec("clv"), CONFIG)
    continuation = oracle_continuation(data.test, data.spec, raw)
    assert continuation is not None and (continuation["se"] >= 0).all() and (continuation["replications"] == 8).all()
    y = data.y(data.test)
    # a LightGBM fitted on train + validation with fixed parameters: no tuning needed to test the bound
    fit = pd.concat([data.train, data.validation])
    booster = lgb.train({"objective": "tweedie", "num_leaves": 31, "learning_rate": 0.05, "num_threads": 1, "verbose": -1,
                         "seed": 0, "deterministic": True}, lgb.Dataset(data.X(fit), label=data.y(fit)), num_boost_round=300)
    model = booster.predict(data.X(data.test))
    noise = oracle_noise(data.spec, y, model, continuation["value"], continuation)
    assert noise["model_minus_oracle"] <= 2 * noise["model_minus_oracle_se"], noise
    # the continuation is the better limit: it ranks the realised CLV at least as well as the analytic ground truth
    analytic = oracle_predictions(data.test, data.spec, raw)
    assert noise["metric_extrapolated"] >= normalized_gini(y, analytic) - 2 * noise["model_minus_oracle_se"]
    # and it is calibrated: the mean expected CLV is the mean realised CLV within a few standard errors
    assert abs(continuation["value"].mean() - y.mean()) < 4 * np.sqrt((continuation["se"] ** 2).sum()) / len(y) + 0.05 * y.mean()
