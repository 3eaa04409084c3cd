"""``custbase demo``: the whole main job on a simulated bank, step by step, as a new user would run it.

simulate -> validate -> features + labels -> train clv, churn, upgrade -> promote -> build the bento ->
score the whole base at the latest month -> retention and upgrade campaign lists.
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
    from training.registry import promote
    from training.train import train_model

    cfg = demo_config(config, Path(out), customers)
    paths = cfg.paths
    timings: dict[str, float] = {}
    total = 10
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
    with _step(7, total, "build the bento of the three champions", timings):
        tag = jobs.build(cfg)
        typer.echo(f"built bento {tag}")
    data_end = _latest_month(paths.features_path)
    with _step(8, total, f"score the whole base at {data_end}", timings):
        shutil.rmtree(paths.scores_dir, ignore_errors=True)  # the demo's scores are always fresh
        typer.echo(jobs.score(cfg, as_of=data_end, out=paths.scores_dir, features_path=paths.features_path).render())
    with _step(9, total, "write the retention and upgrade campaign lists", timings):
        for kind in ("retention", "upgrade"):
            path, rows = jobs.campaign(cfg, kind, budget=500, out=paths.campaigns_dir / f"{kind}.csv")
            typer.echo(f"{kind}: {rows:,} customers -> {path}")
    with _step(10, total, "backtest the matured months and write the base report", timings):
        from serving.monitoring import backtest, render_backtest
        from serving.report import write_base_report

        table, _ = backtest(cfg, features_path=paths.features_path, out_dir=paths.data_dir / "monitoring")
        typer.echo(render_backtest(table))
        report = write_base_report(cfg, as_of=data_end, out=paths.data_dir / "report" / "base_report.html",
                                   features_path=paths.features_path, scores_dir=paths.scores_dir)
        typer.echo(f"base report -> {report}")

    typer.secho("\nDone.", bold=True, fg=typer.colors.GREEN)
    typer.echo(
        f"  raw tables        {paths.raw_dir}\n"
        f"  customer-months   {paths.features_path}\n"
        f"  scores            {paths.scores_dir}\n"
        f"  campaign lists    {paths.campaigns_dir}/retention.csv, upgrade.csv\n"
        f"  base report       {report}  (open in a browser; `make report` rewrites it)\n"
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
