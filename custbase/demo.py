"""``custbase demo``: the whole main job on a simulated bank, step by step, as a new user would run it.

simulate -> validate -> features + labels -> train clv, churn, upgrade -> promote -> uplift models of the retention and
upgrade offers -> build the bento -> score the whole base at the latest month -> retention and upgrade campaign lists
(by expected incremental value, with a holdout) -> backtest of the targeting strategies against the simulator's truth
-> backtest of the matured months and the HTML base report.
Every step is the same function the individual CLI commands call, on the same configured paths (``paths``:
data/bank, data/customer_months.parquet, data/scores, ...), so the Makefile targets the demo prints at the end
(``make train``, ``make score``, ``make campaign``, ``make serve``, ...) go on from where it stopped.

Reruns on unchanged data, code and settings reuse the registered versions instead of piling up new ones; a model
that does not beat its baseline is not promoted.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from custbase import hints
from custbase.config import Config

#: Contacts per month of the demo's campaigns (a 5,000-customer bank has ~2,500 active customers a month).
CAMPAIGN_BUDGET = 200
MODELS = ("clv", "churn", "upgrade")  # CLV first: churn's retention-profit measure values customers with the CLV champion


@contextmanager
def _step(number: int, total: int, title: str, timings: dict[str, float]):
    typer.secho(f"\n[{number}/{total}] {title}", bold=True)
    started = time.perf_counter()
    yield
    timings[title] = time.perf_counter() - started
    typer.echo(f"      ({timings[title]:.1f} s)")


def demo_config(config: Config, customers: int) -> Config:
    """The configuration with the demo's bank size; every path stays the configured one."""
    return config.model_copy(update={"simulation": config.simulation.model_copy(update={"customers": customers})})


def paths_under(config: Config, folder: Path) -> Config:
    """The configuration with every data path laid out under ``folder`` as the demo lays out ``paths.data_dir``."""
    folder = Path(folder)
    paths = config.paths.model_copy(update={
        "data_dir": folder,
        "raw_dir": folder / "bank",
        "features_path": folder / "customer_months.parquet",
        "scores_dir": folder / "scores",
        "online_snapshot": folder / "online_features.sqlite",
        "campaigns_dir": folder / "campaigns",
        "ledger_path": folder / "ledger.parquet",
    })
    return config.model_copy(update={"paths": paths})


def next_commands(config_file: Path | None = None) -> list[str]:
    """The commands the demo tells the user to run next (each works verbatim from the repo root)."""
    make = lambda target, **kw: hints.make(target, config=config_file, **kw)  # noqa: E731
    return [
        make("models"),
        make("score"),
        make("campaign", KIND="retention", BUDGET=CAMPAIGN_BUDGET),
        "CUSTBASE_API_KEYS=secret " + make("serve"),
    ]


def _readouts(cfg: Config, paths) -> None:
    """The read-out of the newest matured retention and upgrade campaign of the simulated bank, value included."""
    from features.feature_set import read_feature_table
    from serving.readout import campaign_readout, campaign_value, newest_matured_campaign
    from training.uplift import read_contacts

    frame, _ = read_feature_table(paths.features_path)
    contacts = read_contacts(paths.raw_dir)
    for offer in ("retention", "upgrade"):
        campaign_id = newest_matured_campaign(offer, contacts, frame)
        if campaign_id is None:
            continue
        readout = campaign_readout(campaign_id, contacts, frame, currency=cfg.value_tiers.currency)
        typer.echo(readout.render().splitlines()[0])
        try:
            typer.echo(campaign_value(campaign_id, offer, contacts, frame, cfg).render())
        except ValueError as err:
            typer.echo(f"  value: not estimated: {err}")
        typer.echo(f"  (whole read-out: {hints.custbase(f'campaign readout --campaign {campaign_id}')})")


def run_demo(config: Config, *, customers: int, trials: int, config_file: Path | None = None) -> dict[str, float]:
    """Run the main job end to end; returns the seconds of each step."""
    from features.build import build_customer_months
    from features.simulate import simulate_bank
    from features.validate import validate_raw
    from serving import jobs
    from serving.backtest import run_backtest
    from training.jobs import promote_model, train_model
    from training.uplift import train_uplift

    cfg = demo_config(config, customers)
    paths = cfg.paths
    timings: dict[str, float] = {}
    total = 12
    typer.echo(f"The demo writes the raw tables to {paths.raw_dir}, customer-months to {paths.features_path}, scores to "
               f"{paths.scores_dir}, campaign lists to {paths.campaigns_dir}, the online snapshot to "
               f"{paths.online_snapshot}, models to {paths.mlruns_dir}/ and the bento to bentoml_home/ "
               f"(paths in the configuration).")
    with _step(1, total, f"simulate a bank of {customers:,} customers x {cfg.simulation.months} months", timings):
        typer.echo(simulate_bank(cfg.simulation, paths.raw_dir, config=cfg).render())
    with _step(2, total, "validate the raw tables against the contract", timings):
        report = validate_raw(paths.raw_dir, cfg)
        typer.echo(report.render())
        if not report.ok:
            raise typer.Exit(1)
    with _step(3, total, "build customer-month features and labels", timings):
        typer.echo(build_customer_months(paths.raw_dir, paths.features_path, cfg, validate=False).render())
    results = {}
    for number, model in enumerate(MODELS, start=4):
        with _step(number, total, f"train and promote the {model} model ({trials} Optuna trials)", timings):
            results[model] = train_model(model, cfg, features_path=paths.features_path, trials=trials, reuse=True)
            typer.echo(results[model].render())
            typer.echo(promote_model(model, cfg, features_path=paths.features_path).render())
    with _step(7, total, f"train the retention and upgrade uplift models ({trials} Optuna trials)", timings):
        for name in ("retention-uplift", "upgrade-uplift"):
            typer.echo(train_uplift(name, cfg, features_path=paths.features_path, raw_dir=paths.raw_dir, trials=trials).render())
    with _step(8, total, "build the bento of the three champions and the uplift models", timings):
        _, stand_ins = jobs.pinned_champions(cfg, challenger_if_no_champion=True)
        for model in stand_ins:
            typer.secho(
                f"note: {model} has no champion (its challenger does not beat its baseline, so it was not promoted); "
                f"the demo's bento packs the challenger so that the rest of the demo runs. `{hints.make('build')}` "
                f"refuses until a champion exists.", fg=typer.colors.YELLOW)
        tag = jobs.build(cfg, challenger_if_no_champion=True)
        typer.echo(f"built bento {tag}")
    plan = jobs.score_plan(cfg, features_path=paths.features_path)
    with _step(9, total, f"score the whole base at {plan.as_of}", timings):
        shutil.rmtree(plan.out, ignore_errors=True)  # the demo's scores are always fresh
        typer.echo(plan.render())
        typer.echo(jobs.score(cfg, plan).render())
    with _step(10, total, "write the retention and upgrade campaign lists (one offer per customer, 10% holdout)", timings):
        for kind in ("retention", "upgrade"):
            path, summary = jobs.campaign(cfg, kind, budget=CAMPAIGN_BUDGET, out=paths.campaigns_dir / f"{kind}.csv")
            typer.echo(f"{summary.render()}\n  -> {path}")
    with _step(11, total, f"backtest the targeting strategies at {CAMPAIGN_BUDGET} contacts a month; read out the newest campaigns", timings):
        for kind in ("retention", "upgrade"):
            typer.echo(run_backtest(kind, cfg, budget=CAMPAIGN_BUDGET, features_path=paths.features_path,
                                    raw_dir=paths.raw_dir).render())
        _readouts(cfg, paths)
    with _step(12, total, "backtest the matured months and write the base report", timings):
        from serving.monitoring import backtest, render_backtest
        from serving.report import write_base_report

        table, _ = backtest(cfg, features_path=paths.features_path, out_dir=paths.data_dir / "monitoring")
        typer.echo(render_backtest(table))
        report = write_base_report(cfg, as_of=plan.as_of, out=paths.data_dir / "report" / "base_report.html",
                                   features_path=paths.features_path, scores_dir=paths.scores_dir)
        typer.echo(f"base report -> {report}")

    typer.secho("\nDone.", bold=True, fg=typer.colors.GREEN)
    typer.echo(
        f"  raw tables        {paths.raw_dir}\n"
        f"  customer-months   {paths.features_path}\n"
        f"  scores            {plan.out}   (online snapshot {paths.online_snapshot})\n"
        f"  campaign lists    {paths.campaigns_dir}/retention.csv, upgrade.csv (+ .summary.json)\n"
        f"  MLflow            {paths.mlruns_dir}/   browse with `{hints.make('mlflow-ui')}` (http://127.0.0.1:5000)"
    )
    typer.echo("  model cards and evaluation figures (also in the MLflow UI, as each run's description and artifacts):")
    from training.tracking import artifact_locations

    for model, result in results.items():
        typer.echo(f"    {model}:")
        typer.echo("\n".join("    " + line for line in artifact_locations(result.run_id)))
    typer.echo("\nNext, from this folder (each command works as printed):")
    for command in next_commands(config_file):
        typer.echo(f"  $ {command}")
    from serving.batch import read_scores

    customer = int(read_scores(plan.out)["customer_id"].min())  # one that is active, so in the online snapshot
    typer.echo(
        "  then, in another shell:\n"
        "  $ curl -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' "
        f"-d '{{\"customer_ids\": [{customer}]}}' http://127.0.0.1:3000/score_customers\n"
        f"  total {sum(timings.values()):.0f} s"
    )
    return timings
