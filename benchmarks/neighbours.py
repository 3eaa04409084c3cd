"""8 good clients beside each kind of hostile load, on the newest bento's models (after `make demo`).

``python -m benchmarks.neighbours [SECONDS] [SCENARIO ...]`` serves this checkout's ``serving.service`` (as
``benchmarks/run.py`` does) and runs, for SECONDS (default 20) each: a clean run; 200 connections uploading a body
at 1 byte/s (reopened after each 408); 2,000 idle connections (reopened as the server closes them); a client
sending 1,000-id and one sending 500-id ``reasons: all`` calls back to back. The good clients are closed loops of
single-customer calls with action reasons. Prints one JSON line per scenario (the good clients' figures and what
the load got), then the service log's line count and longest line. Loopback only.
"""
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from benchmarks.loadgen import closed_loop
from benchmarks.run import KEY, Server, _serving_env, _snapshot_records


def main() -> None:
    SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 20
    ROOT = Path(__file__).resolve().parents[1]
    snapshot = ROOT / "data" / "online_features.sqlite"
    env, tag = _serving_env(snapshot)
    records = _snapshot_records(snapshot, 2000)
    ids = [r["customer_id"] for r in records]
    LOG = Path(tempfile.gettempdir()) / "custbase_neighbours_service.log"
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def by_id(k, n):
        return json.dumps({"customer_ids": [ids[(k * 7919 + n) % len(ids)]]}).encode()

    with Server("serving.service:CustbaseScoring", env, LOG) as service:
        url = service.url
        port = int(url.rsplit(":", 1)[1])
        closed_loop(f"{url}/score_customers", by_id, auth, clients=8, seconds=3)  # warm-up
        stop = threading.Event()
        poison_statuses = {}

        def count(key):
            poison_statuses[key] = poison_statuses.get(key, 0) + 1

        def slow_uploads():
            body = json.dumps({"customer_ids": [ids[0]]}).encode()
            head = (f"POST /score_customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            conns = []
            while not stop.is_set():
                while len(conns) < 200:
                    c = socket.create_connection(("127.0.0.1", port)); c.sendall(head); c.setblocking(False); conns.append([c, 0])
                for item in list(conns):
                    c, i = item
                    try:
                        data = c.recv(200)
                        count(data.split(b" ")[1].decode() if data else "closed"); c.close(); conns.remove(item); continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        count("reset"); c.close(); conns.remove(item); continue
                    try:
                        c.sendall(body[i:i + 1]); item[1] = i + 1
                    except OSError:
                        pass
                time.sleep(1)
            for c, _ in conns: c.close()

        def idle():
            conns = []
            while not stop.is_set():
                while len(conns) < 2000:
                    c = socket.create_connection(("127.0.0.1", port)); c.setblocking(False); conns.append(c)
                for c in list(conns):
                    try:
                        if c.recv(10) == b"":
                            count("closed by server"); c.close(); conns.remove(c)
                    except BlockingIOError:
                        pass
                    except OSError:
                        count("reset"); c.close(); conns.remove(c)
                time.sleep(0.5)
            count(f"open at end: {len(conns)}")
            for c in conns: c.close()

        def expensive(n):
            body = {"customer_ids": ids[:n], "reasons": "all"}
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    r = client.post(f"{url}/score_customers", json=body, headers={"Authorization": f"Bearer {KEY}"})
                    count(f"{r.status_code}")
                    poison_statuses.setdefault("seconds", []).append(round(time.perf_counter() - started, 2))
                    if r.status_code != 200 and "detail" not in poison_statuses:
                        poison_statuses["detail"] = r.json()["detail"]

        scenarios = {"clean": None, "200 slow uploads at 1 byte/s": slow_uploads, "2000 idle connections": idle,
                     "1000-id all-reasons client back to back": lambda: expensive(1000),
                     "500-id all-reasons client back to back": lambda: expensive(500)}
        only = sys.argv[2:] or list(scenarios)
        for name, load in scenarios.items():
            if name not in only and not any(o in name for o in only):
                continue
            stop.clear(); poison_statuses.clear()
            t = threading.Thread(target=load) if load else None
            if t: t.start(); time.sleep(2)
            good = closed_loop(f"{url}/score_customers", by_id, auth, clients=8, seconds=SECONDS)
            stop.set()
            if t: t.join()
            secs = poison_statuses.pop("seconds", None)
            if secs: poison_statuses["seconds min/max"] = [min(secs), max(secs)]
            print(json.dumps({"scenario": name, "good": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in good.items()},
                              "load": poison_statuses}), flush=True)
        log = LOG.read_text(errors="replace").splitlines()
        print(json.dumps({"log_lines": len(log), "longest": max(map(len, log))}))


if __name__ == "__main__":
    main()
