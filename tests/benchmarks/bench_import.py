"""Benchmark: ``custbase import csv`` of a transactions-only purchase log is linear in rows.

Writes purchase logs of N/4, N/2 and N rows (text customer ids, one customer per 60 rows, customers derived from
the transactions) and imports each through the YAML mapping, validation included:

    .venv/bin/python tests/benchmarks/bench_import.py [--rows 1000000]

It prints seconds per million rows for each size and the ratio of the largest to the smallest: ~1 means linear
(the old id numbering was quadratic: 0.6 / 3.6 / 10.6 s for 4k / 8k / 16k ids). Figures from one run only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from custbase.config import Config
from features.importers import import_mapped
from features.importers.mapping import number_customer_ids

ROWS_PER_CUSTOMER = 60
REPEATS = 2


def write_purchase_log(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    customers = max(1, rows // ROWS_PER_CUSTOMER)
    days = pd.Timestamp("2024-07-01") + pd.to_timedelta(rng.integers(0, 548, rows), unit="D")
    pd.DataFrame({
        "client_ref": np.char.add("C-", rng.integers(0, customers, rows).astype("str")),
        "purchase_date": days.strftime("%Y-%m-%d"),
        "amount": np.round(rng.gamma(2.0, 40.0, rows), 2),
    }).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    config = Config()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for rows in (args.rows // 4, args.rows // 2, args.rows):
            log = folder / f"purchases_{rows}.csv"
            write_purchase_log(log, rows)
            mapping = folder / f"mapping_{rows}.yaml"
            mapping.write_text(yaml.safe_dump({"data_end": "2025-12-31", "tables": {
                "customers": {"derive": "transactions"},
                "transactions": {"file": log.name, "columns": {
                    "customer_id": {"from": "client_ref", "id": True}, "timestamp": "purchase_date", "amount": "amount",
                    "direction": {"value": "out"}, "channel": {"value": "pos"}, "category": {"value": "card_spend"}}}}}))
            ids = pd.read_csv(log, usecols=["client_ref"], dtype=str).rename(columns={"client_ref": "customer_id"})
            numbering, seconds = float("inf"), float("inf")
            for _ in range(REPEATS):  # the best of a few runs: other work on the machine only ever adds time
                started = time.perf_counter()
                number_customer_ids({"transactions": ids}, {"transactions"})
                numbering = min(numbering, time.perf_counter() - started)
                started = time.perf_counter()
                summary = import_mapped(mapping, folder / f"raw_{rows}", config)
                seconds = min(seconds, time.perf_counter() - started)
                assert summary.ok, summary.render()
            results.append((rows, seconds, numbering))
            print(f"{rows:>10,} rows ({rows // ROWS_PER_CUSTOMER:,} ids): import + validate {seconds:6.1f} s "
                  f"({seconds / rows * 1e6:5.1f} s per million rows); id numbering alone {numbering:5.2f} s", flush=True)
    (small, s_small, n_small), (large, s_large, n_large) = results[0], results[-1]
    print(f"seconds per row, {large:,} vs {small:,} rows: import {s_large / large / (s_small / small):.2f}x, "
          f"id numbering {n_large / large / (n_small / small):.2f}x (1.0 = linear)")


if __name__ == "__main__":
    main()
