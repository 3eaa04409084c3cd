"""``custbase``: the one command-line interface. Every Makefile target is a one-line call to it.

Commands load the configuration once, here at the edge, and pass it down; the work lives in
``features``, ``training`` and ``serving``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from custbase.config import Config, load_config

app = typer.Typer(
    name="custbase",
    help="Churn, upgrade-propensity and CLV models for a retail bank's personal customers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML file overriding the defaults.")]


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))


def _fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 5_000,
    months: Annotated[int, typer.Option(help="Number of months of history.")] = 36,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bank.")] = 7,
    out: Annotated[Path, typer.Option(help="Folder to write the raw tables to.")] = Path("data/bank"),
    start: Annotated[Optional[str], typer.Option(help="First month, YYYY-MM.")] = None,
    transaction_intensity: Annotated[Optional[float], typer.Option(help="Scales how many transactions customers make.")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a simulated retail bank (all contract tables plus ground truth) to OUT."""
    from features.simulate import simulate_bank

    cfg = _config(config)
    overrides = {"customers": customers, "months": months, "seed": seed}
    if start:
        overrides["start_month"] = start
    if transaction_intensity is not None:
        overrides["transaction_intensity"] = transaction_intensity
    settings = cfg.simulation.model_copy(update=overrides)
    summary = simulate_bank(settings, out, config=cfg)
    typer.echo(summary.render())


@app.command()
def validate(
    raw: Annotated[Path, typer.Option(help="Folder of raw tables.")] = Path("data/bank"),
    config: ConfigOption = None,
) -> None:
    """Check every raw table against the contract; exit non-zero on any violation."""
    from features.validate import validate_raw

    report = validate_raw(raw, _config(config), progress=True)
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def features(
    raw: Annotated[Path, typer.Option(help="Folder of raw tables.")] = Path("data/bank"),
    out: Annotated[Path, typer.Option(help="Customer-month table to write (parquet).")] = Path("data/customer_months.parquet"),
    from_month: Annotated[Optional[str], typer.Option("--from", help="First as_of month, YYYY-MM.")] = None,
    to_month: Annotated[Optional[str], typer.Option("--to", help="Last as_of month, YYYY-MM.")] = None,
    engine: Annotated[str, typer.Option(help="duckdb (embedded) or spark.")] = "duckdb",
    config: ConfigOption = None,
) -> None:
    """Build point-in-time customer-month features and labels from validated raw tables."""
    from features.build import build_customer_months
    from features.validate import RawDataInvalid

    if engine not in ("duckdb", "spark"):
        _fail(f"--engine must be duckdb or spark, not {engine!r}")
    try:
        summary = build_customer_months(raw, out, _config(config), start=from_month, end=to_month, engine=engine)
    except RawDataInvalid as err:
        typer.echo(err.report.render())
        _fail("the raw data is invalid; fix the violations above and run again")
    typer.echo(summary.render())


ModelArg = Annotated[str, typer.Argument(help="churn, upgrade or clv (train also: retention-uplift, upgrade-uplift).")]
FeaturesOption = Annotated[Optional[Path], typer.Option("--features", help="Customer-month table (default: paths.features_path).")]


@app.command()
def train(
    model: ModelArg,
    features: FeaturesOption = None,
    trials: Annotated[Optional[int], typer.Option(help="Optuna trials to run (default: training.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Tuning budget in seconds.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the newest Optuna study of this model and data.")] = False,
    table: Annotated[Optional[Path], typer.Option(help="A prepared customer-month or snapshot table (parquet or CSV) built elsewhere.")] = None,
    target: Annotated[Optional[str], typer.Option(help="With --table: the label column.")] = None,
    id_column: Annotated[Optional[str], typer.Option("--id", help="With --table: the customer id column.")] = None,
    as_of_column: Annotated[Optional[str], typer.Option("--as-of", help="With --table: the as_of column (omit for one snapshot).")] = None,
    raw: Annotated[Optional[Path], typer.Option(help="Uplift models: raw tables with campaign_contacts (default: the table's source).")] = None,
    config: ConfigOption = None,
) -> None:
    """Tune, evaluate and log a model in MLflow; register it with alias 'challenger' (uplift models: gated to champion)."""
    cfg = _config(config)
    if model.endswith("-uplift"):
        from training.uplift import train_uplift

        try:
            result = train_uplift(model, cfg, features_path=features or cfg.paths.features_path, raw_dir=raw, trials=trials)
        except (FileNotFoundError, ValueError) as err:
            _fail(str(err))
        typer.echo(result.render())
        return
    try:
        if table is not None:
            from training.prepared import train_prepared_table

            if not target or not id_column:
                _fail("--table needs --target COLUMN and --id COLUMN")
            result = train_prepared_table(model, cfg, table=table, target=target, id_column=id_column,
                                          as_of_column=as_of_column, trials=trials, timeout=timeout, resume=resume)
        else:
            from training.train import train_model

            result = train_model(model, cfg, features_path=features or cfg.paths.features_path,
                                 trials=trials, timeout=timeout, resume=resume)
    except (FileNotFoundError, ValueError) as err:  # SplitError and BundleError are ValueErrors
        _fail(str(err))
    typer.echo(result.render())


@app.command()
def oracle(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models whose test months to cover (default: clv).")] = None,
    raw: Annotated[Path, typer.Option(help="Folder of a simulated bank.")] = Path("data/bank"),
    features: FeaturesOption = None,
    replications: Annotated[int, typer.Option(help="Monte Carlo continuations per customer and month.")] = 32,
    config: ConfigOption = None,
) -> None:
    """Expected outcomes given each customer's true state, by continuing a simulated bank from the test months.

    Written to RAW/oracle_continuation.parquet; `custbase train clv` then compares the model with it.
    """
    from training.oracle import write_continuation_oracle

    cfg = _config(config)
    chosen = models or ["clv"]
    for model in chosen:
        if model not in ("churn", "upgrade", "clv"):
            _fail(f"unknown model {model!r}; choose among churn, upgrade, clv")
    try:
        path, checks, seconds = write_continuation_oracle(raw, features or cfg.paths.features_path, chosen, cfg,
                                                          replications=replications)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"continuation oracle ({replications} replications) written to {path} in {seconds:.0f} s; on the test rows:")
    typer.echo(f"  {'model':<8}{'rows':>9}{'label mean':>12}{'ground truth':>14}{'continuation':>14}{'mean s.e.':>12}")
    for check in checks:
        typer.echo(check.render())


@app.command()
def promote(model: ModelArg, features: FeaturesOption = None, config: ConfigOption = None) -> None:
    """Move 'champion' to the challenger only if it is better on the newest test months; record why."""
    from training.registry import RegistryError, promote as promote_model

    cfg = _config(config)
    try:
        decision = promote_model(model, cfg, features_path=features or cfg.paths.features_path)
    except (RegistryError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(decision.render())


@app.command()
def rollback(model: ModelArg, config: ConfigOption = None) -> None:
    """Restore the previous champion (from the audit log)."""
    from training.registry import RegistryError, rollback as rollback_model

    try:
        typer.echo(rollback_model(model, _config(config)))
    except (RegistryError, ValueError) as err:
        _fail(str(err))


@app.command()
def models(config: ConfigOption = None) -> None:
    """Each model's aliases and champion history."""
    from training.registry import model_history

    typer.echo(model_history(_config(config)))


@app.command("mlflow-ui")
def mlflow_ui(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000, config: ConfigOption = None) -> None:
    """Start the MLflow UI on the project's tracking store (mlruns/)."""
    from training.tracking import ui_command

    command = ui_command(_config(config), port=port)
    os.execvp(command[0], command)


@app.command()
def build(config: ConfigOption = None) -> None:
    """Package the pinned champion models, the service, the feature set and the policy as a bento."""
    from serving.jobs import ServingSetupError, build as build_bento

    try:
        tag = build_bento(_config(config))
    except ServingSetupError as err:
        _fail(str(err))
    typer.echo(f"built bento {tag}; serve it with `custbase serve` (needs CUSTBASE_API_KEYS)")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    bento: Annotated[Optional[str], typer.Option(help="Bento tag (default: the newest custbase bento).")] = None,
) -> None:
    """Start the online scoring service of the newest bento (POST /score, POST /score_customers)."""
    from serving.jobs import ServingSetupError, latest_bento

    if not os.environ.get("CUSTBASE_API_KEYS", "").strip():
        _fail("set CUSTBASE_API_KEYS (comma-separated API keys) first: the endpoints refuse every request without one")
    try:
        tag, _ = latest_bento(bento)
    except ServingSetupError as err:
        _fail(str(err))
    typer.echo(f"serving {tag} on http://127.0.0.1:{port} (OpenAPI docs at /docs)")
    # this interpreter's bentoml: the venv's bin folder need not be on PATH
    os.execv(sys.executable, [sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)])


@app.command()
def score(
    as_of: Annotated[str, typer.Option("--as-of", help="Month to score, YYYY-MM.")],
    raw: Annotated[Optional[Path], typer.Option(help="Raw tables to build the month's features from.")] = None,
    features: Annotated[Optional[Path], typer.Option(help="A prepared customer-month table instead of --raw.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: paths.scores_dir).")] = None,
    engine: Annotated[str, typer.Option(help="local or spark.")] = "local",
    reasons: Annotated[str, typer.Option(help="Reason codes for: action (the model behind each action), actionable, all, none.")] = "action",
    config: ConfigOption = None,
) -> None:
    """Score every active customer at a month with the bento's models; write partitioned parquet atomically."""
    from serving.batch import ReconciliationError
    from serving.jobs import ServingSetupError, score as score_base

    if engine not in ("local", "spark"):
        _fail(f"--engine must be local or spark, not {engine!r}")
    cfg = _config(config)
    try:
        summary = score_base(cfg, as_of=as_of, out=out or cfg.paths.scores_dir, raw=raw, features_path=features,
                             engine=engine, reasons=reasons)
    except ReconciliationError as err:
        _fail(f"counts do not reconcile: {err}")
    except (ServingSetupError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(summary.render())


campaign_app = typer.Typer(help="Campaign lists by expected incremental value, backtests against the truth, read-outs.",
                            no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


def _campaign_command(kind: str):
    def command(
        budget: Annotated[Optional[int], typer.Option(help="How many customers the campaign can contact.")] = None,
        budget_amount: Annotated[Optional[float], typer.Option("--budget-amount", help="Money the campaign can spend (contacts + offers).")] = None,
        out: Annotated[Optional[Path], typer.Option(help="CSV file to write (default: paths.campaigns_dir/<kind>.csv).")] = None,
        scores: Annotated[Optional[Path], typer.Option(help="Scores folder (default: paths.scores_dir).")] = None,
        features: FeaturesOption = None,
        config: ConfigOption = None,
    ) -> None:
        _campaign(kind, budget, budget_amount, out, scores, features, config)

    command.__doc__ = f"{kind.capitalize()} list: customers whose best offer is {kind}, by expected incremental value, with a holdout."
    return command


for _kind in ("retention", "upgrade"):
    campaign_app.command(_kind)(_campaign_command(_kind))


def _campaign(kind, budget, budget_amount, out, scores, features, config) -> None:
    from serving.jobs import ServingSetupError, campaign as write_campaign

    if (budget is None) == (budget_amount is None):
        _fail("give exactly one of --budget N (contacts) or --budget-amount X (money)")
    cfg = _config(config)
    try:
        path, summary = write_campaign(cfg, kind, budget=budget, budget_amount=budget_amount,
                                       out=out or cfg.paths.campaigns_dir / f"{kind}.csv", scores_dir=scores, features_path=features)
    except (ServingSetupError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(f"{summary.render()}\n  -> {path} (summary {path.with_suffix('.summary.json')})")


@campaign_app.command("backtest")
def campaign_backtest(
    kind: Annotated[str, typer.Argument(help="retention or upgrade.")],
    budget: Annotated[int, typer.Option(help="Contacts per month every strategy may make.")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the strategies' figures to this JSON file.")] = None,
    features: FeaturesOption = None,
    raw: Annotated[Optional[Path], typer.Option(help="Raw tables (contacts, ground truth); default: the table's source.")] = None,
    config: ConfigOption = None,
) -> None:
    """Random, risk top-N, risk x value, uplift x value and (simulated bank) the oracle at the same budget."""
    from serving.backtest import run_backtest, write_backtest_json

    cfg = _config(config)
    try:
        result = run_backtest(kind, cfg, budget=budget, features_path=features or cfg.paths.features_path, raw_dir=raw)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(result.render())
    if json_path:
        typer.echo(f"  -> {write_backtest_json(result, json_path)}")


@campaign_app.command("readout")
def campaign_readout(
    campaign_id: Annotated[str, typer.Option("--campaign", help="campaign_id in campaign_contacts.")],
    features: FeaturesOption = None,
    raw: Annotated[Optional[Path], typer.Option(help="Raw tables with campaign_contacts (default: paths.raw_dir).")] = None,
    config: ConfigOption = None,
) -> None:
    """Treated against holdout: response, churn and value by tier, with 95% confidence intervals."""
    from features.feature_set import read_feature_table
    from serving.readout import campaign_readout as readout
    from training.uplift import read_contacts

    cfg = _config(config)
    try:
        frame, metadata = read_feature_table(features or cfg.paths.features_path)
        contacts = read_contacts(Path(raw or metadata.get("raw_dir") or cfg.paths.raw_dir))
        result = readout(campaign_id, contacts, frame, currency=cfg.value_tiers.currency)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(result.render())


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Customers in the simulated bank.")] = 5_000,
    trials: Annotated[int, typer.Option(help="Optuna trials per model.")] = 5,
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, scores and campaign lists.")] = Path("data/demo"),
    config: ConfigOption = None,
) -> None:
    """The main job on a simulated bank: simulate, validate, features, train x3, promote, build, score, campaigns."""
    from custbase.demo import run_demo

    run_demo(_config(config), customers=customers, trials=trials, out=out)


import_app = typer.Typer(help="Bring your own data into the raw-data contract.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("csv")
def import_csv(
    mapping: Annotated[Path, typer.Option(help="YAML column mapping (see features/importers/example_mapping.yaml).")],
    out: Annotated[Path, typer.Option(help="Raw folder to write.")],
    config: ConfigOption = None,
) -> None:
    """Map CSV or parquet extracts onto the raw-data contract with no code, then validate them."""
    from features.importers import import_mapped

    summary = import_mapped(mapping, out, _config(config))
    typer.echo(summary.render())
    if not summary.ok:
        raise typer.Exit(1)


@import_app.command("berka")
def import_berka(
    src: Annotated[Path, typer.Option(help="Folder of the PKDD'99 Berka files.")] = Path("../shared/data/berka"),
    out: Annotated[Path, typer.Option(help="Raw folder to write.")] = Path("data/berka"),
    slices: Annotated[str, typer.Option(help="1993-1994, 1995-1998 or both, comma-separated.")] = "1993-1994,1995-1998",
    config: ConfigOption = None,
) -> None:
    """Import the Berka data of a real Czech bank (PKDD'99) into contract tables, then validate them."""
    from features.importers import import_berka as run_import

    summary = run_import(src, out, _config(config), slices=tuple(s.strip() for s in slices.split(",")))
    typer.echo(summary.render())
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def contract() -> None:
    """Print the raw-data contract (tables, columns, rules) as Markdown."""
    from features.contract import contract_markdown

    typer.echo(contract_markdown())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
