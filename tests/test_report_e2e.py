"""The base report, drift monitoring, backtest and notebooks end to end on a small simulated bank.

The module fixture simulates 400 customers over 24 months, builds features, trains and promotes the three models
(1 Optuna trial each), scores the newest month with the champions, writes campaign lists, the backtest and the
report, as ``custbase demo`` does (without the bento). A second scoring run on a copy of the bank whose salary
credits are halved must warn about drift naming the salary features. The report and one executed notebook are
rendered in headless Chromium when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from custbase.config import Config, Labels, Paths, Simulation, Training

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def _table(path) -> dict:
    """``frame`` and ``metadata`` of a customer-month table, as ``promote`` takes them."""
    from features.feature_set import read_feature_table

    frame, metadata = read_feature_table(path)
    return {"frame": frame, "metadata": metadata}


def e2e_config(root: Path) -> Config:
    data = root / "data"
    return Config(
        simulation=Simulation(customers=400, months=24, seed=11),
        labels=Labels(clv_horizon_months=6),
        paths=Paths(data_dir=data, raw_dir=data / "bank", features_path=data / "customer_months.parquet",
                    mlruns_dir=root / "mlruns", scores_dir=data / "scores", online_snapshot=data / "online.sqlite",
                    campaigns_dir=data / "campaigns"),
        training=Training(trials=1, num_threads=1, early_stopping_rounds=20, max_boost_rounds=200,
                          shap_sample_rows=200, log_figures=False),
    )


def halve_salaries(raw_dir: Path, out_dir: Path) -> Path:
    """A copy of a raw bank whose salary credits are halved (income halved)."""
    shutil.copytree(raw_dir, out_dir)
    for path in sorted((out_dir / "transactions").rglob("*.parquet")):
        table = pq.read_table(path)
        salary = pc.equal(table["category"], "salary")
        halved = pc.if_else(salary, pc.multiply(table["amount"], 0.5), table["amount"])
        pq.write_table(table.set_column(table.column_names.index("amount"), "amount", halved), path)
    return out_dir


def champion_models(config: Config):
    from serving.jobs import pinned_champions
    from serving.runtime.models import BundleModel, ScoringModels
    from serving.runtime.bundle import load_bundle

    uris, _ = pinned_champions(config)
    return ScoringModels(**{name: BundleModel(load_bundle(uri), version=uri.rsplit("/", 1)[1], model_uri=uri)
                            for name, uri in uris.items()})


def score_and_monitor(config: Config, features: Path, as_of: str, out: Path, models):
    from serving.batch import score_base
    from serving.monitoring import monitor_scoring_run

    score_base(features, models, config.policy, out, as_of=as_of, reasons="action", progress=False)
    return monitor_scoring_run(config, features_path=features, as_of=as_of, scores_dir=out, models=models)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    from features.build import build_customer_months
    from features.feature_set import read_feature_metadata
    from features.simulate import simulate_bank
    from serving.jobs import campaign
    from serving.monitoring import backtest
    from serving.report import write_base_report
    from training.registry import promote
    from training.jobs import train_model

    root = tmp_path_factory.mktemp("report_e2e")
    config = e2e_config(root)
    paths = config.paths
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)  # the notebooks' project folder: mlruns/ lives here
        simulate_bank(config.simulation, paths.raw_dir, config=config, progress=False)
        build_customer_months(paths.raw_dir, paths.features_path, config, validate=False)
        for model in ("clv", "churn", "upgrade"):
            train_model(model, config, features_path=paths.features_path, trials=1, progress=False)
            promote(model, config, **_table(paths.features_path))
        models = champion_models(config)
        as_of = str(read_feature_metadata(paths.features_path)["as_of_max"])[:7]
        drift = score_and_monitor(config, paths.features_path, as_of, paths.scores_dir, models)
        for kind in ("retention", "upgrade"):
            campaign(config, kind, budget=50, out=paths.campaigns_dir / f"{kind}.csv")
        table, _ = backtest(config, features_path=paths.features_path, out_dir=paths.data_dir / "monitoring")
        page = write_base_report(config, as_of=None, out=paths.data_dir / "report" / "base_report.html",
                                 features_path=paths.features_path, scores_dir=paths.scores_dir)
        yield {"root": root, "config": config, "models": models, "as_of": as_of, "drift": drift, "backtest": table,
               "report": page}


def test_every_champion_carries_a_reference_profile_and_the_run_writes_its_drift(bank):
    for model in bank["models"]:
        profile = model.bundle.metadata["reference_profile"]
        assert set(profile["features"]) == set(model.feature_names)
        assert profile["rows"] > 0 and "score" in profile
    drift = bank["drift"]
    assert set(drift.table["model"]) == {"churn", "upgrade", "clv"}
    assert (bank["config"].paths.scores_dir / "_drift.json").exists()
    assert drift.models_without_profile == []


def test_halved_income_warns_naming_the_salary_features_and_the_report_shows_it(bank, capsys):
    """At a month of the churn champion's training data its inputs are stable; with salaries halved they are not."""
    from features.build import build_customer_months
    from serving.report import write_base_report

    config, root, models = bank["config"], bank["root"], bank["models"]
    month = str(models.churn.bundle.metadata["split"]["train"][-1])[:7]
    plain = score_and_monitor(config, config.paths.features_path, month, root / "plain" / "scores", models)
    shifted = halve_salaries(config.paths.raw_dir, root / "shifted" / "bank")
    features = root / "shifted" / "features.parquet"
    build_customer_months(shifted, features, config, start=month, end=month, validate=False)
    capsys.readouterr()
    drift = score_and_monitor(config, features, month, root / "shifted" / "scores", models)
    warned = capsys.readouterr().err

    churn_before = plain.table[plain.table["model"] == "churn"].set_index("column")["psi"]
    churn_after = drift.table[drift.table["model"] == "churn"].set_index("column")["psi"]
    salary = [c for c in churn_after.index if c.startswith("txn_amount_salary")]
    assert salary and (churn_before[salary] < config.monitoring.psi_warn).all()
    assert (churn_after[salary] >= config.monitoring.psi_alert).any()
    from serving.monitoring import WARNED_COLUMNS

    for _, group in drift.shifted().groupby("model"):
        for column in group["column"].head(WARNED_COLUMNS):
            assert column in warned
    assert "churn model inputs moved" in warned
    page = write_base_report(config, as_of=month, out=root / "shifted" / "report.html", features_path=features,
                             scores_dir=root / "shifted" / "scores").read_text()
    alert = page.split('<p class="alert">')[1].split("</p>")[0]
    assert "DRIFT" in alert and "txn_amount_salary" in alert


def test_binary_model_cards_report_fairness_by_group(bank):
    import mlflow

    for model in ("churn", "upgrade"):
        run_id = bank["models"].__getattribute__(model).bundle.metadata["run_id"]
        card = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
        assert "## Fairness and segments" in card
        for attribute in ("age_band", "gender", "value_tier"):
            assert f"| {attribute} |" in card


def test_backtest_covers_matured_months_of_each_model(bank):
    table = bank["backtest"]
    assert set(table["model"]) == {"churn", "upgrade", "clv"}
    assert (table["rows"] > 0).all()
    assert table["discrimination"].notna().all()


def test_the_report_has_every_section(bank):
    page = bank["report"].read_text()
    for anchor in ("tiers", "migration", "concentration", "stickiness", "value-risk", "tier-value", "scores",
                   "campaigns", "drift", "backtest"):
        assert f'<section id="{anchor}">' in page
    assert "No backtest yet" not in page and "No campaign lists yet" not in page


@pytest.fixture(scope="module")
def executed(bank):
    pytest.importorskip("nbclient", reason="the notebooks extra is not installed (uv sync --all-extras)")
    from custbase.notebooks import run_notebooks

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(Path("/"))  # any working directory: the runner passes the project and data folders on
        mp.setenv("CUSTBASE_PROJECT", str(bank["root"]))
        runs = run_notebooks(bank["config"].paths.data_dir, bank["root"] / "executed")
    return runs


def test_every_notebook_executes_with_inline_figures(executed):
    assert [r.name for r in executed] == ["01_customer_base_tour", "02_model_report", "03_campaigns"]
    for run in executed:
        assert run.images >= 1, f"{run.name} shows no figure"
        assert run.path.exists() and run.path.with_suffix(".html").exists()


# --------------------------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


_BROKEN_IMAGES = ("<script>addEventListener('load', () => { document.title = 'broken-images:' + "
                  "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length + ':of:' + "
                  "document.images.length; });</script>")


def render(page: Path, out: Path, profile: Path) -> tuple[Path, str]:
    """Screenshot ``page`` to ``out`` and return it with the page's broken-image count (from its DOM after load)."""
    browser = _chromium()
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", _BROKEN_IMAGES + "</body>", 1))
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    subprocess.run([*common, "--hide-scrollbars", "--window-size=1280,4000", f"--screenshot={out}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>broken-images:" in dom else "no-probe"
    return out, title


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt-get install chromium) to render pages")
def test_report_and_a_notebook_render_in_a_browser_with_every_image(bank, executed, tmp_path):
    from PIL import Image

    shots = {"report": bank["report"], "notebook": executed[0].path.with_suffix(".html")}
    for name, page in shots.items():
        png, title = render(page, tmp_path / f"{name}.png", tmp_path / f"profile-{name}")
        _, broken, _, total = title.split(":")
        assert int(total) >= 3, f"{name}: only {total} images in the page"
        assert broken == "0", f"{name}: {broken} of {total} images failed to load"
        pixels = np.asarray(Image.open(png).convert("L"), dtype="float64")
        assert pixels.std() > 10, f"{name}: the screenshot is blank"
