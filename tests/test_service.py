"""The online service on localhost: /score, /score_customers, auth, bad input; the auth middleware; the bento build."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.auth import ApiKeyMiddleware
from serving.runtime.models import save_scoring_models
from serving.runtime.snapshot import write_snapshot
from synthetic import FEATURES, scoring_month, synthetic_customer_months, train_tiny_models

KEY = "test-key-1"
#: The served test service's deadline for a request head (serving.connections), shorter than the default 5 s.
HEAD_TIMEOUT_S = 2


def test_middleware_accepts_bearer_or_api_key_and_leaves_health_open():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = ApiKeyMiddleware(app, keys=["a", "b"])

    def status(path, headers=()):
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(guard({"type": "http", "path": path, "headers": [(k.encode(), v.encode()) for k, v in headers]}, None, send))
        return sent[0]["status"]

    assert status("/score") == 401
    assert status("/score", [("authorization", "Bearer b")]) == 200
    assert status("/score", [("x-api-key", "a")]) == 200
    assert status("/score", [("authorization", "Bearer c")]) == 401
    assert status("/healthz") == status("/readyz") == status("/metrics") == status("/docs") == status("/openapi.json") == 200
    assert _closed_without_keys()


def _closed_without_keys():
    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("request let through")

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(ApiKeyMiddleware(app, keys=[])({"type": "http", "path": "/score", "headers": [(b"x-api-key", b"")]}, None, send))
    return sent[0]["status"] == 401 and b"CUSTBASE_API_KEYS" in sent[1]["body"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """``bentoml serve`` in a subprocess on a free port, with tiny models and a snapshot; stopped after the module."""
    tmp = tmp_path_factory.mktemp("service")
    models = train_tiny_models()
    base = scoring_month(50, seed=9)
    save_scoring_models(models, tmp / "models.pkl")
    write_snapshot(base, tmp / "snapshot.sqlite")
    port = _free_port()
    env = {**os.environ, "CUSTBASE_MODELS_PICKLE": str(tmp / "models.pkl"), "CUSTBASE_SNAPSHOT": str(tmp / "snapshot.sqlite"),
           "CUSTBASE_API_KEYS": f"other,{KEY}", "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp / "bentoml"),
           "CUSTBASE_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S)}
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:CustbaseScoring", "--port", str(port),
                             "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("service did not become ready: " + (tmp / "serve.log").read_text()[-3000:])
        yield url, base, tmp / "serve.log"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def _record(row) -> dict:
    data = json.loads(row[["customer_id", "as_of", *FEATURES]].to_json(date_format="iso"))
    data["as_of"] = data["as_of"][:10]
    return data


@pytest.mark.slow
def test_service_scores_by_id_and_by_record_with_auth(service):
    url, base, _ = service
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{url}/score_customers", json={"customer_ids": [1]}).status_code == 401
    assert httpx.get(f"{url}/metrics").status_code == 200 and httpx.get(f"{url}/docs").status_code == 200
    assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "custbase"

    reply = httpx.post(f"{url}/score_customers", json={"customer_ids": [1, 999_999]}, headers=auth, timeout=30)
    assert reply.status_code == 200
    known, unknown = reply.json()
    assert known["error"] is None and known["score"]["customer_id"] == 1
    fields = {"churn_probability", "upgrade_probability", "clv_12m", "value_at_risk", "value_tier", "segment",
              "recommended_action", "churn_reasons", "upgrade_reasons", "clv_reasons", "model_versions"}
    assert fields <= set(known["score"])
    assert known["score"]["value_at_risk"] == pytest.approx(known["score"]["churn_probability"] * known["score"]["clv_12m"])
    assert unknown["score"] is None and "999999" in unknown["error"]

    by_record = httpx.post(f"{url}/score", json={"customers": [_record(base.iloc[0]), _record(base.iloc[1])]},
                           headers={"X-API-Key": KEY}, timeout=30)
    assert by_record.status_code == 200
    assert by_record.json()[0]["churn_probability"] == known["score"]["churn_probability"]


BAD_BODIES = [
    ("/score_customers", {"customer_ids": [2**70]}),
    ("/score_customers", {"customer_ids": [False]}),
    ("/score_customers", {"customer_ids": list(range(10_000))}),
    ("/score_customers", {"customer_ids": [1], "junk": "x" * 100_000}),
    ("/score", {"customers": []}),
    ("/score", "value_tier_null"),
    ("/score_customers", "multipart"),
    ("/score_customers", "not json"),
]


@pytest.mark.slow
def test_poison_neighbour_good_clients_get_no_errors_and_logs_stay_clean(service):
    """8 good clients and 1 client cycling through every bad input, for a few seconds: the good ones get zero errors;
    the log of the run holds no key, no traceback and no customer value, and client errors are one line each."""
    import threading

    url, base, log_path = service
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = base["customer_id"].tolist()
    good_record = _record(base.iloc[0])
    stop = time.monotonic() + 6
    good_statuses: list[int] = []
    bad_statuses: list[int] = []

    def good(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while time.monotonic() < stop:
                if k % 2:
                    reply = client.post(f"{url}/score_customers", json={"customer_ids": [ids[(k + n) % len(ids)]]}, headers=auth)
                    ok = reply.status_code == 200 and reply.json()[0]["error"] is None
                else:
                    reply = client.post(f"{url}/score", json={"customers": [good_record]}, headers=auth)
                    ok = reply.status_code == 200
                good_statuses.append(reply.status_code if ok else -reply.status_code)
                n += 1

    def bad() -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while time.monotonic() < stop:
                path, body = BAD_BODIES[n % len(BAD_BODIES)]
                if body == "value_tier_null":
                    reply = client.post(f"{url}{path}", json={"customers": [good_record | {"value_tier": None}]}, headers=auth)
                elif body == "multipart":
                    reply = client.post(f"{url}{path}", data={"customer_ids": "1"}, files={"f": b"x"}, headers=auth)
                elif body == "not json":
                    reply = client.post(f"{url}{path}", content=b"{[", headers={**auth, "Content-Type": "application/json"})
                else:
                    reply = client.post(f"{url}{path}", json=body, headers=auth)
                bad_statuses.append(reply.status_code)
                n += 1

    threads = [threading.Thread(target=good, args=(k,)) for k in range(8)] + [threading.Thread(target=bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert good_statuses and all(s == 200 for s in good_statuses), sorted(set(good_statuses))
    assert bad_statuses and all(400 <= s < 500 for s in bad_statuses), sorted(set(bad_statuses))
    time.sleep(0.5)
    log = log_path.read_text()
    assert KEY not in log and "Traceback" not in log
    assert str(good_record["aum_month_end"]) not in log
    warnings = [line for line in log.splitlines() if "client error" in line]
    assert warnings and all("WARNING" in line for line in warnings)


@pytest.mark.slow
def test_slow_uploads_hold_no_slot_and_huge_inputs_stay_out_of_the_log(service):
    """200 connections trickling a valid body at 1 byte/s beside 8 good clients, then bodies whose keys and values
    are 3 MiB strings: the good clients get no error, every trickler gets 408 and its connection closed, and no log
    line exceeds 2 kB or quotes the bodies."""
    import socket as sockets

    url, base, log_path = service
    port = int(url.rsplit(":", 1)[1])
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = base["customer_id"].tolist()
    body = json.dumps({"customer_ids": [ids[0]]}).encode()
    head = (f"POST /score_customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = []
    for _ in range(200):
        connection = sockets.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(head)
        slow.append(connection)
    good_statuses = _good_clients_beside_tricklers(url, ids, slow, body, seconds=6)
    assert good_statuses and all(s == 200 for s in good_statuses), sorted(set(good_statuses))
    answers = []
    for connection in slow:
        try:
            answers.append(connection.recv(200).split(b" ")[1])
        except (OSError, IndexError):
            answers.append(b"?")
        connection.close()
    assert answers.count(b"408") == len(slow), sorted(set(answers))

    marker = "ZQX" * (1024 * 1024)  # 3 MiB
    for poison in ({"customer_ids": [1], marker: 1}, {"customer_ids": [marker]}, {"customers": [{marker: marker}]},
                   {"customer_ids": [1], "reasons": marker + "\u0000"}):
        reply = httpx.post(f"{url}/score_customers" if "customer_ids" in poison else f"{url}/score", json=poison,
                           headers=auth, timeout=30)
        assert 400 <= reply.status_code < 500
    time.sleep(0.5)
    lines = log_path.read_text(errors="replace").splitlines()
    assert max(len(line) for line in lines) <= 2048
    assert not any("ZQXZQX" in line for line in lines)


@pytest.mark.slow
def test_poison_inputs_leave_no_long_line_and_no_request_value_in_the_log(service):
    """10k-deep JSON (arrays and objects), 3 MiB keys and values, NUL bytes (escaped and raw), a lone surrogate,
    duplicate keys, odd content types (with a value in the type itself) and unreadable JSON: every one gets a 4xx,
    and afterwards no line of the service's log exceeds 2 kB nor holds anything the requests sent."""
    url, _, log_path = service
    auth = {"Authorization": f"Bearer {KEY}"}
    as_json = {**auth, "Content-Type": "application/json"}
    mark = "PZQMARK"  # in every value the requests send; the log must never hold it
    huge = mark * (3 * 1024 * 1024 // len(mark))
    poison = [
        ("/score_customers", ('{"customer_ids": ' + "[" * 10_000 + f'"{mark}"' + "]" * 10_000 + "}").encode(), as_json),
        ("/score", ('{"customers": [' + '{"a": ' * 10_000 + f'"{mark}"' + "}" * 10_000 + "]}").encode(), as_json),
        ("/score_customers", json.dumps({"customer_ids": [1], "reasons": huge}).encode(), as_json),
        ("/score", json.dumps({"customers": [{huge: huge}]}).encode(), as_json),
        ("/score_customers", json.dumps({"customer_ids": [1], "reasons": f"{mark}\u0000", f"{mark}\u0000": 1}).encode(), as_json),
        ("/score_customers", f'{{"customer_ids": [1], "reasons": "{mark}\x00"}}'.encode(), as_json),
        ("/score_customers", f'{{"customer_ids": [1], "reasons": "{mark}\\ud800"}}'.encode(), as_json),
        ("/score_customers", f'{{"customer_ids": [1], "customer_ids": ["{mark}"]}}'.encode(), as_json),
        ("/score_customers", f'{{"customer_ids": [1], "reasons": "all", "reasons": "{mark}"}}'.encode(), as_json),
        ("/score_customers", mark.encode(), {**auth, "Content-Type": "text/plain"}),
        ("/score_customers", b'{"customer_ids": [1]}', {**auth, "Content-Type": f"application/{mark}+json"}),
        ("/score_customers", json.dumps({"customer_ids": [1], "reasons": mark}).encode(),
         {**auth, "Content-Type": f"application/json; charset={mark}"}),
        ("/score_customers", json.dumps({"customer_ids": [mark]}).encode(), auth),
        ("/score_customers", f'{{"customer_ids": [1, "{mark}'.encode(), as_json),
    ]
    statuses = [httpx.post(f"{url}{path}", content=body, headers=headers, timeout=60).status_code
                for path, body, headers in poison]
    assert all(400 <= s < 500 for s in statuses), statuses
    time.sleep(0.5)
    lines = log_path.read_text(errors="replace").splitlines()
    assert max(len(line) for line in lines) <= 2048
    assert [line[:200] for line in lines if mark in line] == []


@pytest.mark.slow
def test_idle_and_half_open_connections_are_closed_and_good_clients_get_no_error(service):
    """300 connections that never send a byte and 50 that trickle a request head (one byte a second), beside 8
    good clients: the server closes every one of them once the head deadline passes (before: held open for as
    long as the client liked), and the good clients, whose requests arrive whole, get no error."""
    import socket as sockets

    url, base, _ = service
    port = int(url.rsplit(":", 1)[1])
    ids = base["customer_id"].tolist()
    idle = [sockets.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT_S + 8) for _ in range(300)]
    head = f"POST /score_customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n".encode()
    half_open = [sockets.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT_S + 8) for _ in range(50)]
    good_statuses = _good_clients_beside_tricklers(url, ids, half_open, head, seconds=int(HEAD_TIMEOUT_S) + 3)
    assert good_statuses and all(s == 200 for s in good_statuses), sorted(set(good_statuses))
    assert _closed_by_server(idle) == len(idle)
    assert _closed_by_server(half_open) == len(half_open)


def _good_clients_beside_tricklers(url: str, ids: list[int], connections, data: bytes, seconds: int) -> list[int]:
    """8 good clients scoring one customer each, back to back, for ``seconds`` while every connection of
    ``connections`` is sent the next byte of ``data`` once a second; the good clients' statuses."""
    import threading

    auth = {"Authorization": f"Bearer {KEY}"}
    stop = time.monotonic() + seconds
    statuses: list[int] = []

    def good(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                statuses.append(client.post(f"{url}/score_customers", json={"customer_ids": [ids[k]]}, headers=auth).status_code)

    def trickle() -> None:
        for i in range(seconds):
            for connection in connections:
                try:
                    connection.sendall(data[i:i + 1])
                except OSError:
                    pass
            time.sleep(1)

    threads = [threading.Thread(target=good, args=(k,)) for k in range(8)] + [threading.Thread(target=trickle)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def _closed_by_server(connections, wait_s: float = 10) -> int:
    """How many of ``connections`` the server closed (end of stream or reset), waiting at most ``wait_s`` for the
    rest; every connection is closed on this side afterwards."""
    import selectors

    selector = selectors.DefaultSelector()
    for connection in connections:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + wait_s
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                ended = key.fileobj.recv(100) == b""
            except ConnectionResetError:
                ended = True
            if ended:
                closed += 1
                selector.unregister(key.fileobj)
    selector.close()
    for connection in connections:
        connection.close()
    return closed


@pytest.mark.slow
def test_build_bento_from_pinned_mlflow_models(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    models = train_tiny_models(synthetic_customer_months(200, seed=0, salary_gaps=True), num_trees=3)
    # Both URIs: an earlier test's configure_tracking may have left the (process-wide) registry URI elsewhere.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path}/mlflow.db")
    uris = {}
    for model in models:
        with mlflow.start_run():
            mlflow.lightgbm.log_model(model.booster, name="model", pip_requirements=["lightgbm"],
                                      registered_model_name=f"custbase-{model.name}")
        uris[model.name] = f"models:/custbase-{model.name}/1"
    from serving.bento import build_bento

    with pytest.raises(ValueError, match="pinned"):
        build_bento(None, {**uris, "churn": "models:/custbase-churn@champion"})
    tag = build_bento(None, uris)
    import bentoml

    bento = bentoml.get(tag)
    assert bento.info.labels["churn_mlflow_uri"] == "models:/custbase-churn/1" and bento.info.labels["clv_version"] == "1"
    spec = json.loads(Path(bento.path_of("src/bento_spec/serving_spec.json")).read_text())
    assert spec["models"]["churn"]["model_uri"] == "models:/custbase-churn/1"
    assert [f["name"] for f in spec["features"]] == models.feature_names()
    assert {str(m.tag) for m in bento.info.models} == {spec["models"][n]["bento_tag"] for n in ("churn", "upgrade", "clv")}

    # The bento records each model's SHA-256; a changed file or a deleted model is refused with one line.
    from serving.runtime.models import ModelStoreError, load_champions_from_bento
    from serving.runtime.spec import ServingSpec

    served = ServingSpec.model_validate(spec)
    assert all(len(m.sha256) == 64 for m in served.models.values())
    assert load_champions_from_bento(served.refs()).versions() == {"churn": "1", "upgrade": "1", "clv": "1"}
    churn_dir = Path(bentoml.models.get(served.models["churn"].bento_tag).path_of("mlflow_model"))
    model_file = next(p for p in sorted(churn_dir.rglob("*")) if p.is_file() and p.suffix in (".lgb", ".txt"))
    model_file.write_bytes(model_file.read_bytes() + b"\n")
    with pytest.raises(ModelStoreError, match="changed since the bento was built"):
        load_champions_from_bento(served.refs())
    bentoml.models.delete(served.models["upgrade"].bento_tag)
    with pytest.raises(ModelStoreError, match="not in the BentoML store"):
        load_champions_from_bento({**served.refs(), "churn": served.refs()["upgrade"]} | {"upgrade": served.refs()["upgrade"]})
