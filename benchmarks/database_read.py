"""The latest month's features from PostgreSQL against the same bank's files: time, rows read, same table.

    python -m benchmarks.database_read --customers 100000 --months 36 [--uri postgresql://user@host:port/db]

Simulates a bank into a temporary folder, loads it into the database (``--uri``, password from PGPASSWORD; without
it a throw-away server from tests/postgres_server.py), then builds the latest month from the files and from the
database, and checks that both tables are equal. Writes benchmarks/results/database-read.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--uri", default=None)
    args = parser.parse_args()

    import pandas as pd

    from custbase.config import Config
    from features.build import build_customer_months
    from features.database import DatabaseSource, build_from_database, load_raw_folder
    from features.definitions import last_complete_month, month_end
    from features.feature_set import read_feature_table
    from features.raw import resolve_data_end
    from features.simulate import simulate_bank

    server = None
    if args.uri is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres_server import start_server

        server = start_server()
        os.environ["PGPASSWORD"] = server.password
    uri = args.uri or server.uri
    config = Config()
    try:
        with tempfile.TemporaryDirectory(prefix="custbase-bench-db-") as folder:
            raw = Path(folder) / "bank"
            began = time.perf_counter()
            simulate_bank(config.simulation.model_copy(update={"customers": args.customers, "months": args.months}), raw,
                          config=config, progress=False)
            simulated = time.perf_counter() - began
            loaded = load_raw_folder(raw, DatabaseSource(uri))
            month = f"{month_end(last_complete_month(resolve_data_end(raw))):%Y-%m}"
            began = time.perf_counter()
            files = build_customer_months(raw, Path(folder) / "files", config, start=month, end=month, progress=False)
            files_seconds = time.perf_counter() - began
            began = time.perf_counter()
            db, read = build_from_database(DatabaseSource(uri), Path(folder) / "db", config, start=month, end=month, progress=False)
            db_seconds = time.perf_counter() - began
            a, b = read_feature_table(files.out_path)[0], read_feature_table(db.out_path)[0]
            pd.testing.assert_frame_equal(a, b)
            result = {
                "customers": args.customers, "months": args.months, "as_of": month,
                "simulate_seconds": round(simulated, 1), "load_seconds": round(loaded.seconds, 1), "rows_in_database": loaded.rows,
                "features_from_files_seconds": round(files_seconds, 1),
                "features_from_database_seconds": round(db_seconds, 1),
                "database_read_seconds": round(read.seconds, 1), "rows_read": read.rows,
                "months_read": [read.months[0].isoformat(), read.months[1].isoformat()],
                "table": list(a.shape), "identical": True,
            }
    finally:
        if server is not None:
            server.stop()
    out = ROOT / "benchmarks" / "results" / "database-read.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
