"""The service's request path in process (the FastAPI app behind the request guard and the key check).

Fuzzing with schemathesis against the app's own OpenAPI document, limits, error bodies, the NaN / infinity /
range policy, bounded metrics, logs without keys, tracebacks or customer data, the docs page; and the
per-request fast path against the batch path on the same customers.
"""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from serving.auth import ApiKeyMiddleware
from serving.runtime.policy import Policy
from serving.runtime.scoring import SCORE_COLUMNS, score_customers, score_records
from serving.service import MAX_ITEMS, METRICS, RequestGuard, Scoring, build_app
from serving.runtime.snapshot import OnlineFeatureSnapshot, write_snapshot
from serving.runtime.spec import spec_from_models
from synthetic import FEATURES, scoring_month, train_tiny_models

KEY = "k-3f9a1c-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    models = train_tiny_models()
    base = scoring_month(60, seed=9)
    path = tmp_path_factory.mktemp("snapshot") / "snapshot.sqlite"
    write_snapshot(base, path)
    return models, base, path


@pytest.fixture(scope="module")
def asgi(tiny):
    models, _, path = tiny
    app = build_app(spec_from_models(models, Policy()))
    app.state.scoring = Scoring(models, Policy(), OnlineFeatureSnapshot(path))
    return RequestGuard(ApiKeyMiddleware(app, keys=[KEY]))


@pytest.fixture(scope="module")
def client(asgi):
    with TestClient(asgi) as c:
        yield c


def _record(row: pd.Series) -> dict:
    data = json.loads(row[["customer_id", "as_of", *FEATURES]].to_json(date_format="iso"))
    data["as_of"] = data["as_of"][:10]
    return data


# --------------------------------------------------------------------------------------------- fast path == batch path


@pytest.mark.parametrize("reasons", ["none", "action", "all"])
def test_records_path_equals_frame_path(tiny, reasons):
    models, base, path = tiny
    frame = score_customers(base, models, Policy(), reasons=reasons)
    found = OnlineFeatureSnapshot(path).lookup_records(base["customer_id"].tolist())
    rows = score_records([found[i] for i in base["customer_id"]], models, Policy(), reasons=reasons)
    for column in SCORE_COLUMNS:
        if column == "as_of":
            assert [str(r["as_of"])[:10] for r in rows] == [str(d)[:10] for d in frame["as_of"]]
            continue
        online = [r[column] for r in rows]
        batch = frame[column].tolist()
        if column in ("upgrade_probability", "offer_uplift"):  # NaN (not applicable) is None in JSON
            batch = [None if np.isnan(v) else v for v in batch]
        assert online == batch, column  # identical, not approximately equal
    if reasons != "none":
        assert any(r["churn_reasons"] or r["clv_reasons"] or r["upgrade_reasons"] for r in rows)


def test_fast_path_matches_the_models_own_predict_and_reason_codes(tiny):
    """The array form predicts and explains as the pandas models do (the oracle: the model's own predict)."""
    from serving.runtime.models import matrix_models, prepare_features
    from serving.runtime.reasons import reason_codes

    models, base, _ = tiny
    for model, matrix in zip(models, matrix_models(models)):
        X = prepare_features(base, model)
        np.testing.assert_array_equal(matrix.predict(matrix.encode_frame(base)), model.predict(X))
        np.testing.assert_array_equal(matrix.encode_records(base.to_dict("records")), matrix.encode_frame(base))
    frame = score_customers(base, models, Policy(), reasons="all")
    expected = [[r.sentence for r in row] for row in reason_codes(models.churn.booster, prepare_features(base, models.churn), k=3)]
    assert frame["churn_reasons"].tolist() == expected


# --------------------------------------------------------------------------------------------- HTTP behaviour


def test_scores_by_id_and_by_record_with_per_request_reasons(client, tiny):
    _, base, _ = tiny
    assert client.post("/score_customers", json={"customer_ids": [1]}).status_code == 401
    ids = base["customer_id"].tolist()[:3]
    reply = client.post("/score_customers", json={"customer_ids": [*ids, 999_999], "reasons": "all"}, headers=AUTH)
    assert reply.status_code == 200
    items = reply.json()
    assert [i["customer_id"] for i in items] == [*ids, 999_999]
    assert items[-1]["score"] is None and "999999" in items[-1]["error"]
    assert all(i["score"]["churn_reasons"] or i["score"]["clv_reasons"] for i in items[:-1])
    none = client.post("/score_customers", json={"customer_ids": ids, "reasons": "none"}, headers=AUTH).json()
    assert all(not i["score"]["churn_reasons"] and not i["score"]["clv_reasons"] for i in none)
    assert [i["score"]["churn_probability"] for i in none] == [i["score"]["churn_probability"] for i in items[:-1]]

    by_record = client.post("/score", json={"customers": [_record(base.iloc[0])]}, headers={"X-API-Key": KEY})
    assert by_record.status_code == 200
    assert by_record.json()[0]["churn_probability"] == items[0]["score"]["churn_probability"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_ids": [False]}, "customer_ids"),
        ({"customer_ids": [2**70]}, "customer_ids"),
        ({"customer_ids": [-1]}, "customer_ids"),
        ({"customer_ids": []}, "customer_ids"),
        ({"customer_ids": ["7"]}, "customer_ids"),
        ({"customer_ids": [1], "reasons": "some"}, "reasons"),
        ({"customer_ids": [1], "junk": "x" * 1000}, "junk"),
        ({}, "customer_ids"),
    ],
)
def test_bad_ids_get_422_naming_the_field(client, body, field):
    reply = client.post("/score_customers", json=body, headers=AUTH)
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, list) and any(field in issue["loc"] for issue in detail)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"age": float("nan")}, "age"),
        ({"age": float("inf")}, "age"),
        ({"age": -5}, "age"),
        ({"age": 1e300}, "age"),
        ({"value_tier": None}, "value_tier"),
        ({"complaints_3m": "many"}, "complaints_3m"),
        ({"agee": 40}, "agee"),
    ],
)
def test_bad_records_get_422_naming_the_field(client, tiny, change, field):
    _, base, _ = tiny
    record = _record(base.iloc[0]) | change
    body = json.dumps({"customers": [record]}, allow_nan=True)  # NaN / Infinity literals as a careless client sends them
    reply = client.post("/score", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status_code == 422, reply.text
    assert any(field in issue["loc"] for issue in reply.json()["detail"])


def test_missing_feature_and_empty_list_are_422(client, tiny):
    _, base, _ = tiny
    missing = {k: v for k, v in _record(base.iloc[0]).items() if k != "logins_3m"}
    assert "logins_3m" in client.post("/score", json={"customers": [missing]}, headers=AUTH).text
    assert client.post("/score", json={"customers": []}, headers=AUTH).status_code == 422


def test_limits_refused_before_work_with_413_415_404(client):
    too_many = client.post("/score_customers", json={"customer_ids": list(range(MAX_ITEMS + 1))}, headers=AUTH)
    assert too_many.status_code == 413 and str(MAX_ITEMS) in too_many.json()["detail"].replace(",", "")
    huge = b'{"customer_ids": [1], "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    assert client.post("/score_customers", content=huge, headers={**AUTH, "Content-Type": "application/json"}).status_code == 413
    form = client.post("/score_customers", data={"customer_ids": "1"}, headers=AUTH)
    assert form.status_code == 415 and form.json()["detail"]
    assert client.post("/score_customers", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}).status_code == 422
    assert client.get("/wp-admin/../etc/passwd", headers=AUTH).status_code == 404


def test_metrics_labels_stay_bounded_to_known_routes(client):
    for n in range(30):
        client.get(f"/probe-{n}", headers=AUTH)
    text = client.get("/metrics").text
    assert "probe-" not in text
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert routes <= {"/score", "/score_customers", "/docs", "/openapi.json", "/metrics", "/healthz", "/livez", "/readyz",
                      "/", "/docs.json", "/schema.json", "other"}
    assert METRICS.requests


def test_docs_page_and_openapi_document(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    scripts = [part.split('"')[1] for part in docs.text.split("<script src=")[1:]]
    assert scripts and all(s.startswith("/docs-assets/") for s in scripts), scripts
    assert "googletagmanager" not in docs.text and "cdn.jsdelivr" not in docs.text
    assert client.get(scripts[0]).status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/docs"
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "custbase" and "Contact BentoML" not in json.dumps(spec)
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert spec["paths"]["/score_customers"]["post"]["security"]


# --------------------------------------------------------------------------------------------- cost-aware admission


def test_a_call_priced_over_the_per_call_limit_gets_413_naming_the_limit_and_the_cheaper_form(client, tiny, monkeypatch):
    """The price is measured on the served models: a limit between the price of these ids with action reasons and
    with all reasons refuses the second (413 naming the limit, reasons: action and how many ids fit) and scores
    the first."""
    import serving.service as service

    _, base, _ = tiny
    ids = base["customer_id"].tolist()
    costs = _scoring(client).costs
    limit = (costs.price(len(ids), "action") + costs.price(len(ids), "all")) / 2
    monkeypatch.setattr(service, "CALL_COST_MAX_S", limit)
    refused = client.post("/score_customers", json={"customer_ids": ids, "reasons": "all"}, headers=AUTH)
    assert refused.status_code == 413, refused.text
    detail = refused.json()["detail"]
    assert "CUSTBASE_CALL_COST_MAX_S" in detail and f"{limit:.2f} s" in detail
    assert "reasons: action" in detail and f"at most {costs.items_within(limit, 'all'):,} ids" in detail
    cheaper = client.post("/score_customers", json={"customer_ids": ids, "reasons": "action"}, headers=AUTH)
    assert cheaper.status_code == 200 and len(cheaper.json()) == len(ids)
    by_record = client.post("/score", json={"customers": [_record(r) for _, r in base.iterrows()], "reasons": "all"},
                            headers=AUTH)
    assert by_record.status_code == 413 and "reasons: action" in by_record.json()["detail"]


def _scoring(client) -> Scoring:
    app = client.app
    while not hasattr(app, "state"):
        app = app.app
    return app.state.scoring


def test_single_customer_calls_are_admitted_and_answered_while_large_all_reasons_calls_hold_the_budget(tiny, monkeypatch):
    """Two 1,000-id calls with all reasons hold the worker's cost budget (their scoring is held at a gate, so the
    order of events does not depend on the machine's speed); a third is refused with 429 naming the budget; 20
    single-customer calls with all reasons are all answered with scores while both large calls are still
    unfinished; once the gate opens the large calls finish with every item."""
    import asyncio
    import threading

    import httpx

    import serving.service as service
    from serving.admission import CostBudget

    models, base, path = tiny
    gate, entered = threading.Event(), threading.Event()

    class Gated(Scoring):
        def score_ids(self, customer_ids, reasons):
            if len(customer_ids) > 1:
                entered.set()
                assert gate.wait(60), "the gate was never opened"
            return super().score_ids(customer_ids, reasons)

    scoring = Gated(models, Policy(), OnlineFeatureSnapshot(path))
    app = build_app(spec_from_models(models, Policy()))
    app.state.scoring = scoring
    guarded = RequestGuard(ApiKeyMiddleware(app, keys=[KEY]))
    ids = base["customer_id"].tolist()
    large = [ids[i % len(ids)] for i in range(MAX_ITEMS)]
    large_cost = scoring.costs.price(len(large), "all")
    monkeypatch.setattr(service, "CALL_COST_MAX_S", 10 * large_cost)
    monkeypatch.setattr(service, "INLINE_COST_S", scoring.costs.price(1, "all") * 2)
    monkeypatch.setattr(service, "_BUDGET", CostBudget(2.5 * large_cost))
    monkeypatch.setattr(service, "_LIMITER", None)  # one of this test's event loop
    monkeypatch.setitem(service.GUARD_STATE, "watcher", "off")  # no loop-lag watcher on this short-lived loop
    monkeypatch.setitem(service.GUARD_STATE, "loop_lag", 0.0)

    async def scenario():
        transport = httpx.ASGITransport(app=guarded)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH, timeout=60) as http:
            def post(body):
                return http.post("/score_customers", json=body)

            big = [asyncio.ensure_future(post({"customer_ids": large, "reasons": "all"})) for _ in range(2)]
            for _ in range(6000):  # until both are admitted and the first is being scored (a hang guard, not a timing)
                if service._BUDGET.in_use_s >= 2 * large_cost * 0.999 and entered.is_set():
                    break
                await asyncio.sleep(0.01)
            assert entered.is_set() and service._BUDGET.in_use_s >= 2 * large_cost * 0.999
            third = await post({"customer_ids": large, "reasons": "all"})
            singles = [await post({"customer_ids": [ids[k]], "reasons": "all"}) for k in range(20)]
            still_running = [not task.done() for task in big]
            gate.set()
            finished = await asyncio.gather(*big)
            return third, singles, still_running, finished

    try:
        third, singles, still_running, finished = asyncio.run(scenario())
    finally:
        gate.set()
    assert third.status_code == 429 and third.headers["retry-after"] == "1"
    assert "CUSTBASE_COST_BUDGET_S" in third.json()["detail"]
    assert [r.status_code for r in singles] == [200] * 20
    assert all(r.json()[0]["score"]["churn_reasons"] or r.json()[0]["score"]["clv_reasons"] for r in singles)
    assert still_running == [True, True]  # the single calls were answered before either large call finished
    assert [r.status_code for r in finished] == [200, 200]
    assert all(len(r.json()) == MAX_ITEMS and r.json()[0]["score"] for r in finished)
    assert service._BUDGET.in_use_s == 0


# --------------------------------------------------------------------------------------------- fuzzing


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzing_finds_no_server_error_and_every_reply_matches_the_schema(asgi, caplog, mode):
    """Schemathesis against the app's own OpenAPI document (all checks), in valid and invalid data; the logs of
    the run carry neither the key, nor a traceback, nor the values sent."""
    from hypothesis import given
    from schemathesis.generation.modes import GenerationMode
    from schemathesis.specs.openapi.checks import negative_data_rejection

    caplog.set_level(logging.DEBUG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi)
    sent: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/score", "/score_customers"}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # A body both too long and otherwise invalid gets 413 (the limit is checked first), which schemathesis's
            # negative-data check does not count as a rejection: that check is replaced by "a 4xx, never a 5xx".
            excluded = [negative_data_rejection] if mode == "negative" else []
            reply = case.call_and_validate(headers=AUTH, excluded_checks=excluded)
            assert reply.status_code < 500
            body = case.body if isinstance(case.body, dict) else {}
            records = body.get("customers") if isinstance(body.get("customers"), list) else []
            sent.extend(v for r in records[:1] if isinstance(r, dict) for v in r.values() if isinstance(v, str) and len(v) >= 8)

        check()
    logged = caplog.text
    assert KEY not in logged and "Traceback" not in logged
    assert not [v for v in sent if v in logged]


def test_snapshot_reader_sees_a_refresh_at_once(tmp_path):
    base = scoring_month(20, seed=1)
    path = tmp_path / "snapshot.sqlite"
    write_snapshot(base, path)
    reader = OnlineFeatureSnapshot(path)
    first = reader.lookup_records([int(base["customer_id"].iloc[0])])
    moved = base.assign(age=base["age"] + 1)
    write_snapshot(moved, path)
    second = reader.lookup_records([int(base["customer_id"].iloc[0])])
    assert next(iter(second.values()))["age"] == next(iter(first.values()))["age"] + 1
    assert reader.lookup_records([10**12]) == {}


@pytest.mark.slow
def test_online_path_equals_batch_output_on_the_demo_bank(monkeypatch):
    """The service's per-request path reproduces the demo's batch scores (action reasons) for every customer."""
    from pathlib import Path

    from serving.batch import read_scores
    from serving.jobs import bento_models

    from custbase.config import load_config

    root = Path(__file__).parents[1]
    paths = load_config().paths  # where `make demo` wrote them
    scores_dir, snapshot = root / paths.scores_dir, root / paths.online_snapshot
    if not (scores_dir / "_SUCCESS").exists() or not snapshot.exists():
        pytest.skip("run `make demo` first: the test compares against its batch output")
    monkeypatch.setenv("BENTOML_HOME", str(root / "bentoml_home"))  # not a store an earlier test pointed BentoML at
    batch = read_scores(scores_dir)
    run = json.loads((scores_dir / "_run.json").read_text())
    models, _ = bento_models()
    if models.versions() != run["model_versions"]:
        pytest.skip("the newest bento holds other model versions than the demo's scores")

    found = OnlineFeatureSnapshot(snapshot).lookup_records(batch["customer_id"].tolist())
    rows = score_records([found[i] for i in batch["customer_id"]], models, load_config().policy, reasons=run["reasons"])
    for column in ("churn_probability", "clv_12m", "value_at_risk", "segment", "recommended_action",
                   "expected_value_of_contact", "churn_reasons", "upgrade_reasons", "clv_reasons"):
        assert [r[column] for r in rows] == batch[column].tolist(), column
    upgrade = [None if np.isnan(v) else v for v in batch["upgrade_probability"]]
    assert [r["upgrade_probability"] for r in rows] == upgrade
