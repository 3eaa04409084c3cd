"""The CLI as a new user meets it: one-line errors (exit 2) before any slow work, nothing created by a failure,
light imports for --help, and (slow) every command the demo prints works as printed."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custbase.cli import ModelName, app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the CLI in an empty working directory; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml_home"))

    def invoke(*args: str):
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return invoke


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["validate", "--raw", "nowhere"], ["raw-data folder nowhere does not exist", "make simulate"]),
        (["features", "--raw", "data/bnak"], ["data/bnak does not exist"]),
        (["score", "--as-of", "2025-12-31"], ["--as-of must be a month written YYYY-MM", "'2025-12-31'"]),
        (["score", "--as-of", "2025-1"], ["'2025-1'"]),
        (["features", "--to", "2025-13"], ["--to must be a month"]),
        (["simulate", "--start", "25-01"], ["--start must be a month"]),
        (["train", "chrun"], ["'chrun' is not one of 'churn', 'upgrade', 'clv'", "custbase train --help"]),
        (["train", "churn", "--features", "missing.parquet"], ["customer-month table file missing.parquet does not exist"]),
        (["train", "churn", "--retention-clv", "best"], ["--retention-clv must be champion, carried-forward or a custbase-clv version"]),
        (["promote", "churn"], ["data/customer_months.parquet does not exist", "make features"]),
        (["models"], ["no models yet", "make train"]),
        (["rollback", "clv"], ["no models yet"]),
        (["build"], ["no models yet"]),
        (["campaign", "retention", "--budget", "10"], ["no complete scores in data/scores", "make score"]),
        (["score"], ["data/customer_months.parquet does not exist"]),
        (["score", "--raw", "data/bank"], ["--raw needs --as-of"]),
        (["demo", "--trials", "0"], ["--trials", "greater than or equal to 1"]),
        (["notebooks"], ["data folder data does not exist", "make demo"]),
        (["report", "base"], ["data/customer_months.parquet does not exist"]),
        (["monitor", "backtest"], ["no models yet"]),
        (["campaign", "backtest", "retention", "--budget", "10"], ["data/customer_months.parquet does not exist"]),
        (["train", "retention-uplift"], ["data/customer_months.parquet does not exist"]),
    ],
)
def test_a_mistake_is_one_line_exit_2_and_creates_nothing(run, tmp_path, args, names):
    code, _, stderr = run(*args)
    line = _one_line_error(code, stderr)
    for name in names:
        assert name in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no empty data/, mlruns/ or bentoml_home/


def test_serve_names_the_missing_key_then_the_missing_bento(run, tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTBASE_API_KEYS", raising=False)
    assert "CUSTBASE_API_KEYS=secret make serve" in _one_line_error(*run("serve")[::2])
    monkeypatch.setenv("CUSTBASE_API_KEYS", "secret")
    assert "no custbase bento" in _one_line_error(*run("serve")[::2])
    assert list(tmp_path.iterdir()) == []


def test_a_config_typo_gets_the_setting_it_probably_meant(run, tmp_path):
    (tmp_path / "custbase.yaml").write_text("labels:\n  churn_horizon: 3\n")
    line = _one_line_error(*run("validate")[::2])
    assert "custbase.yaml: labels.churn_horizon is not a setting; did you mean labels.churn_horizon_months?" in line


def test_an_unreachable_mlflow_server_is_one_line(run, monkeypatch):
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    line = _one_line_error(*run("models")[::2])
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port} is unreachable" in line


def test_model_names_follow_the_specs():
    from serving import bento, jobs
    from training.spec import SPECS

    assert [m.value for m in ModelName] == list(SPECS) or {m.value for m in ModelName} == set(SPECS)
    assert jobs.BENTO_NAME == bento.BENTO_NAME


def test_help_imports_no_heavy_library():
    code = ("import sys, custbase.cli; "
            "print(sorted(m for m in ('pandas', 'numpy', 'mlflow', 'bentoml', 'lightgbm', 'rich') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert loaded.strip() == "[]"


# ------------------------------------------------------------------------------------------ the demo's commands


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_every_command_the_demo_prints_works_as_printed(tmp_path):
    """A small demo in a scratch copy of the repo root (its own data/, mlruns/, bentoml_home/), then each `$ ...`
    line it printed, run by a shell from that folder; the server on a free port instead of 3000."""
    for name in ("Makefile", "pyproject.toml", "uv.lock", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "BENTOML_HOME", "CUSTBASE_API_KEYS")}
    demo = subprocess.run(["make", "demo", "CUSTOMERS=800", "TRIALS=1"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    printed = [line.strip()[2:] for line in demo.stdout.splitlines() if line.strip().startswith("$ ")]
    assert any(c.startswith("make score") for c in printed) and any("make serve" in c for c in printed)
    assert "model card:" in demo.stdout and "figures:" in demo.stdout
    for card in re.findall(r"model card: (\S+)", demo.stdout):
        assert (tmp_path / card).is_file(), card
    port = _free_port()
    server = None
    try:
        for command in printed:
            if command.startswith("curl"):
                command = command.replace("127.0.0.1:3000", f"127.0.0.1:{port}")
                _wait_ready(port, server)
                result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60)
                assert result.returncode == 0 and '"churn_probability"' in result.stdout, result.stdout + result.stderr
            elif "make serve" in command:
                server = subprocess.Popen(f"{command} PORT={port}", shell=True, cwd=tmp_path, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            else:
                result = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
                assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert server is not None, "the demo printed no serve command"
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)

    # a rerun on the same data, code and settings registers no new version
    before = _versions(tmp_path, env)
    rerun = subprocess.run(["make", "demo", "CUSTOMERS=800", "TRIALS=1"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=1800)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("no new version registered") == 3
    assert _versions(tmp_path, env) == before


def _versions(folder: Path, env: dict) -> str:
    out = subprocess.run(["make", "models"], cwd=folder, env=env, capture_output=True, text=True, timeout=300).stdout
    return "\n".join(line for line in out.splitlines() if line.startswith("custbase-"))


def _wait_ready(port: int, server, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise AssertionError(f"the server stopped with exit code {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"the service on port {port} was not ready within {timeout} s")
