"""``custbase demo``: the whole main job on a simulated bank, step by step, as a new user would run it.

simulate -> validate -> features + labels -> train clv, churn, upgrade -> promote -> uplift models of the retention and
upgrade offers -> build the bento -> score the whole base at the latest month -> retention and upgrade campaign lists
(by expected incremental value, with a holdout) -> backtest of the targeting strategies against the simulator's truth.
Every step is the same function the individual CLI commands call; only the paths are the demo's own.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from custbase.config import Config


@contextmanager
def _step(number: int, total: int, title: str, timings: dict[str, float]):
    typer.secho(f"\n[{number}/{total}] {title}", bold=True)
    started = time.perf_counter()
    yield
    timings[title] = time.perf_counter() - started
    typer.echo(f"      ({timings[title]:.1f} s)")


#: Contacts per month of the demo's campaigns (a 5,000-customer bank has ~2,500 active customers a month).
DEMO_BUDGET = 200


def demo_config(config: Config, out: Path, customers: int) -> Config:
    """The configuration with the demo's own folders and bank size (MLflow stays in paths.mlruns_dir)."""
    paths = config.paths.model_copy(update={
        "data_dir": out,
        "raw_dir": out / "bank",
        "features_path": out / "customer_months.parquet",
        "scores_dir": out / "scores",
        "online_snapshot": out / "online_features.sqlite",
        "campaigns_dir": out / "campaigns",
    })
    simulation = config.simulation.model_copy(update={"customers": customers})
    return config.model_copy(update={"paths": paths, "simulation": simulation})


def run_demo(config: Config, *, customers: int, trials: int, out: Path) -> dict[str, float]:
    """Run the main job end to end; returns the seconds of each step."""
    from features.build import build_customer_months
    from features.simulate import simulate_bank
    from features.validate import validate_raw
    from serving import jobs
    from serving.backtest import run_backtest
    from training.registry import promote
    from training.train import train_model
    from training.uplift import train_uplift

    cfg = demo_config(config, Path(out), customers)
    paths = cfg.paths
    timings: dict[str, float] = {}
    total = 11
    with _step(1, total, f"simulate a bank of {customers:,} customers x {cfg.simulation.months} months", timings):
        typer.echo(simulate_bank(cfg.simulation, paths.raw_dir, config=cfg).render())
    with _step(2, total, "validate the raw tables against the contract", timings):
        report = validate_raw(paths.raw_dir, cfg)
        typer.echo(report.render())
        if not report.ok:
            raise typer.Exit(1)
    with _step(3, total, "build customer-month features and labels", timings):
        typer.echo(build_customer_months(paths.raw_dir, paths.features_path, cfg, validate=False).render())
    # CLV first: churn's retention-profit measure values each customer with the CLV champion.
    for number, model in enumerate(("clv", "churn", "upgrade"), start=4):
        with _step(number, total, f"train and promote the {model} model ({trials} Optuna trials)", timings):
            typer.echo(train_model(model, cfg, features_path=paths.features_path, trials=trials).render())
            typer.echo(promote(model, cfg, features_path=paths.features_path).render())
    with _step(7, total, f"train the retention and upgrade uplift models ({trials} Optuna trials)", timings):
        for name in ("retention-uplift", "upgrade-uplift"):
            typer.echo(train_uplift(name, cfg, features_path=paths.features_path, raw_dir=paths.raw_dir, trials=trials).render())
    with _step(8, total, "build the bento of the three champions", timings):
        tag = jobs.build(cfg)
        typer.echo(f"built bento {tag}")
    data_end = _latest_month(paths.features_path)
    with _step(9, total, f"score the whole base at {data_end}", timings):
        shutil.rmtree(paths.scores_dir, ignore_errors=True)  # the demo's scores are always fresh
        typer.echo(jobs.score(cfg, as_of=data_end, out=paths.scores_dir, features_path=paths.features_path).render())
    with _step(10, total, "write the retention and upgrade campaign lists (one offer per customer, 10% holdout)", timings):
        for kind in ("retention", "upgrade"):
            path, summary = jobs.campaign(cfg, kind, budget=DEMO_BUDGET, out=paths.campaigns_dir / f"{kind}.csv")
            typer.echo(f"{summary.render()}\n  -> {path}")
    with _step(11, total, f"backtest the targeting strategies at {DEMO_BUDGET} contacts a month", timings):
        for kind in ("retention", "upgrade"):
            typer.echo(run_backtest(kind, cfg, budget=DEMO_BUDGET, features_path=paths.features_path, raw_dir=paths.raw_dir).render())

    typer.secho("\nDone.", bold=True, fg=typer.colors.GREEN)
    typer.echo(
        f"  raw tables        {paths.raw_dir}\n"
        f"  customer-months   {paths.features_path}\n"
        f"  scores            {paths.scores_dir}\n"
        f"  campaign lists    {paths.campaigns_dir}/retention.csv, upgrade.csv (+ .summary.json)\n"
        f"  MLflow            make mlflow-ui  (http://127.0.0.1:5000)\n"
        f"  online endpoint   CUSTBASE_API_KEYS=secret custbase serve   then\n"
        f"                    curl -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' \\\n"
        f"                         -d '{{\"customer_ids\": [100000001]}}' http://127.0.0.1:3000/score_customers\n"
        f"  total             {sum(timings.values()):.0f} s"
    )
    return timings


def _latest_month(features_path: Path) -> str:
    from features.feature_set import read_feature_metadata

    return str(read_feature_metadata(features_path)["as_of_max"])[:7]
