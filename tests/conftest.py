"""Shared fixtures: one Spark session for all Spark tests, tiny raw banks from tests/raw_factory.py."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes `raw_factory` importable from any test module

from raw_factory import make_bank  # noqa: E402

from custbase.config import Config  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """A local[2] Spark session shared by every Spark test; skips when pyspark or Java is missing."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: no `java` on PATH and no JAVA_HOME")
    from features.spark import spark_session

    try:
        session = spark_session()
    except Exception as err:  # noqa: BLE001 - any start-up failure means "no Spark here"
        pytest.skip(f"cannot start a local Spark session: {err}")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def config() -> Config:
    return Config()


@pytest.fixture(scope="session")
def small_bank():
    """12 customers over 16 months with every raw table (a fresh copy of the frames per use is not needed:
    builders never change their inputs)."""
    return make_bank(n_customers=12, months=16, seed=3)
