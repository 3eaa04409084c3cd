"""Benchmark: latency of ``POST /score_customers`` (one customer per request) under concurrent clients.

Start the service first (``CUSTBASE_API_KEYS=bench custbase serve --port 3000``), then:

    .venv/bin/python tests/benchmarks/bench_service.py --url http://127.0.0.1:3000 --key bench \
        --snapshot data/demo/online_features.sqlite --clients 16 --seconds 30

Loopback only; the request loop is bounded by ``--seconds`` and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import threading
import time
import urllib.error
import urllib.request


def _known_ids(snapshot: str, limit: int = 5_000) -> list[int]:
    with sqlite3.connect(snapshot) as connection:
        return [row[0] for row in connection.execute(f"SELECT customer_id FROM customer_features LIMIT {limit}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost")):
        raise SystemExit("this benchmark only targets a service on this machine (loopback)")

    ids = _known_ids(args.snapshot)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            body = json.dumps({"customer_ids": [rng.choice(ids)]}).encode()
            request = urllib.request.Request(
                f"{args.url}/score_customers", data=body, method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    item = json.loads(response.read())[0]
                    failed = item.get("error")
            except (urllib.error.URLError, TimeoutError, ValueError) as err:
                failed = str(err)
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(failed) if failed else latencies.append(elapsed))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    latencies.sort()
    quantile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"{args.clients} clients x {args.seconds:.0f} s: {len(latencies):,} ok, {len(errors):,} errors, "
          f"{len(latencies) / args.seconds:.1f} req/s")
    if latencies:
        print(f"latency ms: p50 {quantile(0.50):.0f}  p90 {quantile(0.90):.0f}  p99 {quantile(0.99):.0f}  "
              f"mean {statistics.mean(latencies) * 1000:.0f}")
    if errors:
        print("first errors:", errors[:3])


if __name__ == "__main__":
    main()
