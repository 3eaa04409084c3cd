"""Benchmark: batch scoring throughput with and without reason codes, as ratios to raw ``booster.predict``.

Run after ``make demo`` (it uses the newest bento's models) on a prepared customer-month table:

    .venv/bin/python tests/benchmarks/bench_scoring.py data/customer_months_latest.parquet [--sample-all 2000]

Every figure comes from the same process and the same in-memory feature matrix, so the ratios hold on a
busy machine even when the absolute timings do not.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from custbase.config import load_config
from serving.jobs import bento_models
from serving.models import prepare_features
from serving.scoring import score_customers


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", help="customer-month parquet of one as_of month")
    parser.add_argument("--sample-all", type=int, default=2_000, help="rows scored with reasons for every model")
    args = parser.parse_args()

    config = load_config()
    frame = pd.read_parquet(args.features)
    models, tag = bento_models()
    n = len(frame)
    print(f"bento {tag}; {n:,} customers; features {args.features}")

    matrices = {m.name: prepare_features(frame, m) for m in models}
    raw = _timed(lambda: [m.booster.predict(matrices[m.name], num_threads=1) for m in models])
    print(f"raw booster.predict x3          {raw:7.2f} s  {n / raw:10,.0f} rows/s  (reference)")

    runs = {}
    for mode in ("none", "action", "actionable"):
        seconds = _timed(lambda: runs.setdefault(mode, score_customers(frame, models, config.policy, reasons=mode)))
        explained = int((runs[mode]["recommended_action"] != "none").sum()) if mode != "none" else 0
        print(f"score_customers reasons={mode:<10} {seconds:7.2f} s  {n / seconds:10,.0f} rows/s  "
              f"{seconds / raw:6.1f}x raw  ({explained:,} rows explained)")

    sample = frame.sample(min(args.sample_all, n), random_state=0)
    seconds = _timed(lambda: score_customers(sample, models, config.policy, reasons="all"))
    rate = len(sample) / seconds
    print(f"score_customers reasons=all       {seconds:7.2f} s  {rate:10,.0f} rows/s  "
          f"{(n / rate) / raw:6.1f}x raw  (on {len(sample):,} sampled rows; whole base ~{n / rate:,.0f} s)")


if __name__ == "__main__":
    main()
