"""``custbase``: the one command-line interface. Every Makefile target is a one-line call to it.

Commands load the configuration once, here at the edge, and pass it down; the work lives in
``features``, ``training`` and ``serving``. This module imports only typer at load time, so ``--help`` and
argument errors answer at once; each command imports what it needs. A user's mistake (a wrong path, a bad
month, an unknown model, a setting that does not exist, a step not run yet) is one line on stderr naming the
thing and what to do, exit status 2, and is caught before any slow work.
"""

from __future__ import annotations

import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer
from typer import _click as click  # typer's vendored click (its exceptions are what typer raises)
from typer.core import TyperGroup

from custbase import hints

if TYPE_CHECKING:
    from custbase.config import Config

#: Exit status of a user's mistake (as click's usage errors); 1 is left for "ran, and the data is invalid".
USAGE_ERROR = 2


class _Group(TyperGroup):
    """Usage errors as one line (``error: custbase train: ...``) instead of click's boxed usage text."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as err:
            path = err.ctx.command_path if err.ctx is not None else "custbase"
            command = path.split(" ", 1)[1] if " " in path else ""
            help_hint = hints.custbase(f"{command} --help".strip())
            detail = err.format_message().replace("Value error, ", "")
            message = f"error: {path}: {detail} (see `{help_hint}`)"
            if not standalone_mode:
                raise
            typer.secho(message, fg=typer.colors.RED, err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("aborted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="custbase",
    cls=_Group,
    help="Churn, upgrade-propensity and CLV models for a retail bank's personal customers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: rich would add ~0.3 s to every --help
)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML file overriding the defaults (default: ./custbase.yaml if present).")]


class ModelName(str, Enum):
    """The three models (``training.spec.SPECS``; a test keeps the two in step)."""

    churn = "churn"
    upgrade = "upgrade"
    clv = "clv"


def _fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _config(path: Path | None) -> "Config":
    from custbase.config import ConfigError, load_config
    from features.contract import check_revenue_names

    try:
        config = load_config(path)
        check_revenue_names(config.revenue)
    except ConfigError as err:
        _fail(str(err))
    except ValueError as err:  # the configuration names something the raw-data contract does not know
        _fail(f"{path or 'the configuration'}: {err}")
    return config


_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _month(value: str | None, option: str) -> str | None:
    """``value`` if it is exactly ``YYYY-MM`` (or None); a one-line error otherwise."""
    if value is not None and not _MONTH.fullmatch(value):
        _fail(f"{option} must be a month written YYYY-MM (e.g. 2025-12), not {value!r}")
    return value


def _existing(path: Path, what: str, how: str, *, folder: bool = False) -> Path:
    """``path`` if it exists (as a folder when ``folder``); else a one-line error naming it and how to make it."""
    ok = path.is_dir() if folder else path.exists()
    if not ok:
        kind = "folder" if folder else "file"
        problem = "is not a folder" if path.exists() else "does not exist"
        _fail(f"{what} {kind} {path} {problem}; {how}")
    return path


def _raw_dir(raw: Path | None, cfg: "Config") -> Path:
    path = raw or cfg.paths.raw_dir
    return _existing(path, "raw-data", f"give --raw DIR, or create it with `{hints.make('simulate')}` "
                                       f"(or `{hints.custbase(f'simulate --out {path}')}`)", folder=True)


def _database_uri(uri: str, option: str) -> str:
    """``uri`` if it is a PostgreSQL URI without a password; a one-line error otherwise (the secret not echoed)."""
    from custbase.config import check_database_uri

    try:
        return check_database_uri(uri, setting=option)
    except ValueError as err:
        _fail(str(err))


def _database(raw: Path | None, cfg: "Config"):
    """The database source when the configuration names one (``raw.source``) and ``--raw`` does not override it."""
    if raw is not None or cfg.raw.source is None:
        return None
    from features.database import DatabaseError, DatabaseSource

    try:
        return DatabaseSource.from_config(cfg)
    except DatabaseError as err:
        _fail(str(err))


def _features_path(features: Path | None, cfg: "Config") -> Path:
    path = features or cfg.paths.features_path
    return _existing(path, "customer-month table", f"give --features FILE, or build it with `{hints.make('features')}` "
                                                   f"(or `{hints.custbase(f'features --out {path}')}`)")


def _tracking_store(cfg: "Config") -> None:
    """Refuse commands that read the MLflow registry when it holds nothing yet (and create nothing)."""
    from training.tracking import TrackingError, check_tracking_store

    try:
        check_tracking_store(cfg)
    except TrackingError as err:
        _fail(str(err))


@app.command()
def simulate(
    customers: Annotated[Optional[int], typer.Option(min=1, help="Number of customers (default: simulation.customers).")] = None,
    months: Annotated[Optional[int], typer.Option(min=1, help="Number of months of history (default: simulation.months).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; the same seed gives the same bank (default: simulation.seed).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder to write the raw tables to (default: paths.raw_dir, data/bank).")] = None,
    start: Annotated[Optional[str], typer.Option(help="First month, YYYY-MM.")] = None,
    transaction_intensity: Annotated[Optional[float], typer.Option(help="Scales how many transactions customers make.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Write the history only through this month (YYYY-MM); --continue writes the next ones.")] = None,
    continue_: Annotated[bool, typer.Option("--continue", help="Write the next month (or through --until) of the bank in OUT, from its saved settings.")] = False,
    to_database: Annotated[Optional[str], typer.Option("--to-database", help="Also load the contract tables into this PostgreSQL database "
                                                       "(postgresql://user@host:port/db; password from PGPASSWORD or ~/.pgpass); "
                                                       "the files go to a temporary folder unless --out is given.")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a simulated retail bank (all contract tables plus ground truth) to OUT, whole or month by month, or
    load it into a database."""
    _month(start, "--start")
    _month(until, "--until")
    database = _database_uri(to_database, "--to-database") if to_database is not None else None
    cfg = _config(config)
    from features.simulate import SimulationError, continue_bank, simulate_bank

    given = {"customers": customers, "months": months, "seed": seed}
    overrides = {k: v for k, v in given.items() if v is not None}  # the rest: the configuration's
    if start:
        overrides["start_month"] = start
    if transaction_intensity is not None:
        overrides["transaction_intensity"] = transaction_intensity
    if database is not None and (continue_ or until):
        _fail("--to-database loads a whole simulated bank: drop --continue / --until")
    if database is not None:
        import tempfile

        from features.database import DatabaseError, DatabaseSource, load_raw_folder

        settings = cfg.simulation.model_copy(update=overrides)
        source = DatabaseSource(uri=database, tables=dict(cfg.raw.tables) if cfg.raw.source == database else {})
        with tempfile.TemporaryDirectory(prefix="custbase-bank-") as folder:
            raw_dir = out or Path(folder) / "bank"
            typer.echo(simulate_bank(settings, raw_dir, config=cfg).render())
            try:
                typer.echo(load_raw_folder(raw_dir, source).render())
            except DatabaseError as err:
                _fail(str(err))
        return
    target = out or cfg.paths.raw_dir
    try:
        if continue_:
            if overrides:
                _fail(f"--continue takes the bank's settings from {target}/manifest.json: drop "
                      + ", ".join(f"--{k.replace('_', '-')}" for k in overrides))
            summary = continue_bank(target, config=cfg, until=until)
        else:
            settings = cfg.simulation.model_copy(update=overrides)
            summary = simulate_bank(settings, target, config=cfg, until=until)
    except SimulationError as err:
        _fail(str(err))
    typer.echo(summary.render())


@app.command()
def validate(
    raw: Annotated[Optional[Path], typer.Option(help="Folder of raw tables (default: the database of raw.source if set, else paths.raw_dir, data/bank).")] = None,
    config: ConfigOption = None,
) -> None:
    """Check every raw table (a folder, or the database of raw.source) against the contract; exit non-zero on any violation."""
    cfg = _config(config)
    database = _database(raw, cfg)
    if database is not None:
        from features.database import DatabaseError, validate_database

        try:
            report, read = validate_database(database, cfg, progress=True)
        except DatabaseError as err:
            _fail(str(err))
        typer.echo(read.render())
    else:
        from features.validate import validate_raw

        report = validate_raw(_raw_dir(raw, cfg), cfg, progress=True)
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


class Engine(str, Enum):
    duckdb = "duckdb"
    spark = "spark"


@app.command()
def features(
    raw: Annotated[Optional[Path], typer.Option(help="Folder of raw tables (default: the database of raw.source if set, else paths.raw_dir, data/bank).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Customer-month table to write (default: paths.features_path).")] = None,
    from_month: Annotated[Optional[str], typer.Option("--from", help="First as_of month, YYYY-MM.")] = None,
    to_month: Annotated[Optional[str], typer.Option("--to", help="Last as_of month, YYYY-MM.")] = None,
    engine: Annotated[Optional[Engine], typer.Option(help="duckdb (embedded) or spark (default: features.engine).")] = None,
    config: ConfigOption = None,
    list_: Annotated[bool, typer.Option("--list", help="Print every feature column with its family, dtype and meaning; build nothing.")] = False,
    family: Annotated[Optional[str], typer.Option(help="With --list: only this feature family (e.g. balances).")] = None,
    append: Annotated[bool, typer.Option("--append", help="Add the raw data's new months (and the labels that matured "
                                                          "with them) to the existing table --out; rewrite nothing else.")] = False,
) -> None:
    """Build point-in-time customer-month features and labels from validated raw tables (or --list them, or --append a month)."""
    if list_ or family:
        from features.feature_set import render_features

        try:
            typer.echo(render_features(family))
        except KeyError as err:
            _fail(f"--family: {err.args[0]}")
        return
    _month(from_month, "--from")
    _month(to_month, "--to")
    if append and (from_month or to_month or (engine is not None and engine.value != "duckdb")):
        _fail("--append adds the raw data's new months with DuckDB: give it without --from, --to and --engine spark")
    cfg = _config(config)
    database = _database(raw, cfg)
    if database is not None:
        _features_from_database(database, out or cfg.paths.features_path, cfg, from_month, to_month,
                                engine.value if engine else cfg.features.engine, append)
        return
    raw_dir = _raw_dir(raw, cfg)
    from features.build import AppendError, append_month, build_customer_months
    from features.raw import RawDataError
    from features.validate import RawDataInvalid

    if append:
        try:
            typer.echo(append_month(raw_dir, out or cfg.paths.features_path, cfg).render())
        except RawDataInvalid as err:
            typer.echo(err.report.render())
            _fail("the raw data is invalid; fix the violations above and run again", code=1)
        except (AppendError, RawDataError) as err:
            _fail(str(err))
        return
    try:
        summary = build_customer_months(raw_dir, out or cfg.paths.features_path, cfg, start=from_month, end=to_month,
                                        engine=engine.value if engine else cfg.features.engine)
    except RawDataInvalid as err:
        typer.echo(err.report.render())
        _fail("the raw data is invalid; fix the violations above and run again", code=1)
    except RawDataError as err:
        _fail(str(err))
    typer.echo(summary.render())


def _features_from_database(database, out: Path, cfg: "Config", from_month: str | None, to_month: str | None, engine: str,
                            append: bool) -> None:
    from features.build import AppendError
    from features.database import DatabaseError, append_from_database, build_from_database
    from features.validate import RawDataInvalid

    try:
        if append:
            summary, read = append_from_database(database, out, cfg)
        else:
            summary, read = build_from_database(database, out, cfg, start=from_month, end=to_month, engine=engine)
    except RawDataInvalid as err:
        typer.echo(err.report.render())
        _fail("the raw data is invalid; fix the violations above and run again", code=1)
    except (AppendError, DatabaseError, ValueError) as err:  # no month to build is a ValueError, as for a folder
        _fail(str(err))
    typer.echo(read.render())
    typer.echo(summary.render())


ModelArg = Annotated[ModelName, typer.Argument(help="churn, upgrade or clv.", show_default=False)]


class TrainableModel(str, Enum):
    """What ``custbase train`` tunes: the three models and the two offers' uplift models (``training.uplift``)."""

    churn = "churn"
    upgrade = "upgrade"
    clv = "clv"
    retention_uplift = "retention-uplift"
    upgrade_uplift = "upgrade-uplift"
FeaturesOption = Annotated[Optional[Path], typer.Option("--features", help="Customer-month table (default: paths.features_path).")]


@app.command()
def train(
    model: Annotated[TrainableModel, typer.Argument(help="churn, upgrade, clv, retention-uplift or upgrade-uplift.", show_default=False)],
    features: FeaturesOption = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="Optuna trials to run (default: training.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Tuning budget in seconds.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the newest Optuna study of this model and data.")] = False,
    table: Annotated[Optional[Path], typer.Option(help="A prepared customer-month or snapshot table (parquet or CSV) built elsewhere.")] = None,
    target: Annotated[Optional[str], typer.Option(help="With --table: the label column.")] = None,
    id_column: Annotated[Optional[str], typer.Option("--id", help="With --table: the customer id column (omit: row number).")] = None,
    as_of_column: Annotated[Optional[str], typer.Option("--as-of", help="With --table: the as_of column (omit for one snapshot).")] = None,
    positive: Annotated[Optional[str], typer.Option(help="With --table: the target value that means 1 (e.g. 'Attrited Customer').")] = None,
    sep: Annotated[Optional[str], typer.Option(help="With --table: CSV separator (default: sniffed from the file).")] = None,
    raw: Annotated[Optional[Path], typer.Option(help="Uplift models: raw tables with campaign_contacts (default: the table's source).")] = None,
    retention_clv: Annotated[str, typer.Option("--retention-clv", help="churn: the CLV its retention-profit figures use: champion (the CLV champion's version, recorded in the run), a custbase-clv version number, or carried-forward.")] = "champion",
    config: ConfigOption = None,
) -> None:
    """Tune, evaluate and log a model in MLflow; register it with alias 'challenger' (uplift models: gated to champion)."""
    if table is not None and not target:
        _fail("--table needs --target COLUMN")
    if not (retention_clv in ("champion", "carried-forward") or retention_clv.isdigit()):
        _fail(f"--retention-clv must be champion, carried-forward or a custbase-clv version number, not {retention_clv!r}")
    cfg = _config(config)
    if model.value.endswith("-uplift"):
        from training.uplift import train_uplift

        try:
            result = train_uplift(model.value, cfg, features_path=_features_path(features, cfg), raw_dir=raw, trials=trials)
        except (FileNotFoundError, ValueError) as err:
            _fail(str(err))
        typer.echo(result.render())
        return
    if table is not None:
        _existing(table, "--table", "give the path of a parquet or CSV file")
    else:
        features_path = _features_path(features, cfg)
    from training.tracking import TrackingError, check_tracking_store

    try:
        check_tracking_store(cfg, must_exist=False)
        if table is not None:
            from training.prepared import train_prepared_table

            result = train_prepared_table(model.value, cfg, table=table, target=target, id_column=id_column,
                                          as_of_column=as_of_column, positive=positive, sep=sep,
                                          trials=trials, timeout=timeout, resume=resume)
        else:
            from training.jobs import train_model

            result = train_model(model.value, cfg, features_path=features_path, trials=trials, timeout=timeout, resume=resume,
                                 clv=retention_clv)
    except (TrackingError, FileNotFoundError, ValueError) as err:  # SplitError and BundleError are ValueErrors
        _fail(str(err))
    typer.echo(result.render())


@app.command()
def oracle(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models whose test months to cover (default: clv).")] = None,
    raw: Annotated[Optional[Path], typer.Option(help="Folder of a simulated bank (default: paths.raw_dir).")] = None,
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
        path, checks, seconds = write_continuation_oracle(raw or cfg.paths.raw_dir, features or cfg.paths.features_path, chosen, cfg,
                                                          replications=replications)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"continuation oracle ({replications} replications) written to {path} in {seconds:.0f} s; on the test rows:")
    typer.echo(f"  {'model':<8}{'rows':>9}{'label mean':>12}{'ground truth':>14}{'continuation':>14}{'mean s.e.':>12}")
    for check in checks:
        typer.echo(check.render())


@app.command()
def promote(model: ModelArg, features: FeaturesOption = None, config: ConfigOption = None) -> None:
    """Move 'champion' to the challenger only if it beats its baseline and the champion on the newest test months."""
    cfg = _config(config)
    features_path = _features_path(features, cfg)
    _tracking_store(cfg)
    from training.jobs import promote_model
    from training.registry import RegistryError

    try:
        decision = promote_model(model.value, cfg, features_path=features_path)
    except (RegistryError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(decision.render())


@app.command()
def rollback(model: ModelArg, config: ConfigOption = None) -> None:
    """Restore the previous champion (from the audit log)."""
    cfg = _config(config)
    _tracking_store(cfg)
    from training.registry import RegistryError, rollback as rollback_model

    try:
        typer.echo(rollback_model(model.value, cfg))
    except (RegistryError, ValueError) as err:
        _fail(str(err))


@app.command()
def models(config: ConfigOption = None) -> None:
    """Each model's aliases, champion history, model card and figures."""
    cfg = _config(config)
    _tracking_store(cfg)
    from training.registry import model_history

    typer.echo(model_history(cfg))


@app.command("mlflow-ui")
def mlflow_ui(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000, config: ConfigOption = None) -> None:
    """Start the MLflow UI on the project's tracking store (mlruns/)."""
    cfg = _config(config)
    _tracking_store(cfg)
    from training.tracking import ui_command

    command = ui_command(cfg, port=port)
    os.execvp(command[0], command)


@app.command()
def build(config: ConfigOption = None) -> None:
    """Package the pinned champion models, the service, the feature set and the policy as a bento."""
    cfg = _config(config)
    _tracking_store(cfg)
    from serving.jobs import ServingSetupError, build as build_bento

    try:
        tag = build_bento(cfg)
    except ServingSetupError as err:
        _fail(str(err))
    typer.echo(f"built bento {tag}; serve it with `CUSTBASE_API_KEYS=secret {hints.make('serve')}`")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 3000,
    bento: Annotated[Optional[str], typer.Option(help="Bento tag (default: the newest custbase bento).")] = None,
    config: ConfigOption = None,
) -> None:
    """Start the online scoring service of the newest bento (POST /score, POST /score_customers)."""
    if not os.environ.get("CUSTBASE_API_KEYS", "").strip():
        _fail(f"set CUSTBASE_API_KEYS (comma-separated API keys) first, e.g. `CUSTBASE_API_KEYS=secret {hints.make('serve')}`: "
              "the endpoints refuse every request without one")
    from serving.jobs import ServingSetupError, latest_bento

    try:
        tag, _ = latest_bento(bento)
    except ServingSetupError as err:
        _fail(str(err))
    # The snapshot `custbase score` refreshes, resolved here: the bento's own folder is the service's working dir.
    os.environ.setdefault("CUSTBASE_SNAPSHOT", str(_config(config).paths.online_snapshot.resolve()))
    typer.echo(f"serving {tag} on http://127.0.0.1:{port} (OpenAPI docs at http://127.0.0.1:{port}/docs); online "
               f"feature snapshot {os.environ['CUSTBASE_SNAPSHOT']}")
    # this interpreter's bentoml: the venv's bin folder need not be on PATH
    os.execv(sys.executable, [sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)])


class ScoreEngine(str, Enum):
    local = "local"
    spark = "spark"


class Reasons(str, Enum):
    action = "action"
    actionable = "actionable"
    all = "all"
    none = "none"


@app.command()
def score(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Month to score, YYYY-MM (default with --features: its latest month).")] = None,
    raw: Annotated[Optional[Path], typer.Option(help="Raw tables to build the month's features from (needs --as-of).")] = None,
    features: Annotated[Optional[Path], typer.Option(help="A prepared customer-month table instead of --raw (default: paths.features_path).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: paths.scores_dir; only then is the online snapshot refreshed).")] = None,
    engine: Annotated[ScoreEngine, typer.Option(help="local or spark.")] = ScoreEngine.local,
    reasons: Annotated[Reasons, typer.Option(help="Reason codes for: action (the model behind each action), actionable, all, none.")] = Reasons.action,
    config: ConfigOption = None,
) -> None:
    """Score every active customer at a month with the bento's models; write partitioned parquet atomically."""
    _month(as_of, "--as-of")
    if raw is not None and features is not None:
        _fail("give --raw or --features, not both")
    if raw is not None and as_of is None:
        _fail("--raw needs --as-of YYYY-MM (the month to build features for and score)")
    cfg = _config(config)
    if raw is not None:
        raw_dir, features_path = _raw_dir(raw, cfg), None
    else:
        raw_dir, features_path = None, _features_path(features, cfg)
    from serving.jobs import ServingSetupError, require_bento, score as score_base, score_plan

    try:
        plan = score_plan(cfg, as_of=as_of, out=out, raw=raw_dir, features_path=features_path)
        require_bento()
    except (ServingSetupError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    typer.echo(plan.render())
    from serving.batch import ReconciliationError

    try:
        summary = score_base(cfg, plan, engine=engine.value, reasons=reasons.value)
    except ReconciliationError as err:
        _fail(f"counts do not reconcile: {err}", code=1)
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
    from serving.readout import campaign_value

    try:
        typer.echo(campaign_value(campaign_id, result.offer, contacts, frame, cfg).render())
    except ValueError as err:
        typer.echo(f"  value: not estimated: {err}")


@app.command()
def demo(
    customers: Annotated[Optional[int], typer.Option(min=1, help="Customers in the simulated bank (default: simulation.customers).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials per model (the demo's own short budget, not training.trials).")] = 5,
    config: ConfigOption = None,
) -> None:
    """The main job on a simulated bank, into the configured paths (data/, mlruns/): simulate, validate, features,
    train x3, promote, build, score, campaigns; ends with the commands to go on."""
    cfg = _config(config)
    from training.tracking import TrackingError, check_tracking_store

    try:
        check_tracking_store(cfg, must_exist=False)
    except TrackingError as err:
        _fail(str(err))
    from custbase.demo import run_demo

    run_demo(cfg, customers=customers or cfg.simulation.customers, trials=trials, config_file=config)


@app.command()
def cycle(
    month: Annotated[str, typer.Option("--month", help="The month that has just landed, YYYY-MM.", show_default=False)],
    trials: Annotated[Optional[int], typer.Option(min=1, help="Optuna trials per model when the cycle trains (default: training.trials).")] = None,
    config: ConfigOption = None,
) -> None:
    """The month's work in order (validate, features, score, drift, campaign lists, read-outs, retraining when due),
    resumable, recorded in the ledger (paths.ledger_path); a month already done is a no-op."""
    _month(month, "--month")
    cfg = _config(config)
    _raw_dir(None, cfg)
    from training.tracking import TrackingError, check_tracking_store

    try:
        check_tracking_store(cfg, must_exist=False)
    except TrackingError as err:
        _fail(str(err))
    from custbase.cycle import CycleDataInvalid, CycleRefused, run_cycle
    from features.build import AppendError
    from features.raw import RawDataError
    from serving.jobs import ServingSetupError

    try:
        run_cycle(cfg, month, trials=trials, echo=typer.echo)
    except CycleRefused as err:
        _fail(str(err))
    except (AppendError, RawDataError, ServingSetupError) as err:  # a step needs the user (e.g. a table to rebuild)
        _fail(f"the cycle of {month} stopped: {err}; then `{hints.custbase(f'cycle --month {month}')}` resumes at that step")
    except CycleDataInvalid as err:
        typer.echo(err.report.render())
        _fail(f"the raw data of {month} is invalid; fix the violations above and rerun `{hints.custbase(f'cycle --month {month}')}`",
              code=1)
    except Exception as err:
        typer.secho(f"error: the cycle of {month} stopped: {type(err).__name__}: {err}; the ledger "
                    f"{cfg.paths.ledger_path} marks the step failed, and `{hints.custbase(f'cycle --month {month}')}` "
                    "resumes at it", fg=typer.colors.RED, err=True)
        raise


report_app = typer.Typer(help="HTML reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


DataOption = Annotated[Optional[Path], typer.Option(
    "--data", help="A folder laid out like the demo's (customer_months.parquet, scores/, campaigns/, monitoring/); "
                   "default: the configured paths.")]


def _data_config(cfg: Config, data: Path | None) -> Config:
    from custbase.demo import paths_under

    return paths_under(cfg, data) if data is not None else cfg


@report_app.command("base")
def report_base(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Month to report, YYYY-MM (default: the newest month).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file to write (default: <data>/report/base_report.html).")] = None,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """One self-contained HTML page on the customer base: tiers, migration, concentration, stickiness, risk, drift."""
    from serving.report import write_base_report

    cfg = _data_config(_config(config), data)
    try:
        path = write_base_report(cfg, as_of=as_of, out=out or cfg.paths.data_dir / "report" / "base_report.html",
                                 features_path=cfg.paths.features_path, scores_dir=cfg.paths.scores_dir)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"base report -> {path}")


monitor_app = typer.Typer(help="Drift and backtest monitoring.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("backtest")
def monitor_backtest(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for backtest.csv and backtest.png (default: <data>/monitoring).")] = None,
    months: Annotated[Optional[int], typer.Option(help="Newest matured months to score (default: monitoring.backtest_months).")] = None,
    config: ConfigOption = None,
) -> None:
    """Score the months whose label horizons have closed with the champion of that time; realized vs predicted."""
    from serving.monitoring import backtest, render_backtest

    cfg = _data_config(_config(config), data)
    _tracking_store(cfg)
    features = cfg.paths.features_path
    try:
        table, figure = backtest(cfg, features_path=features,
                                 out_dir=out or cfg.paths.data_dir / "monitoring", months=months)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(render_backtest(table))
    typer.echo(f"backtest chart -> {figure}")


@app.command()
def notebooks(
    data: Annotated[Optional[Path], typer.Option("--data", help="Data folder laid out like the demo's (default: paths.data_dir).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the executed notebooks (default: <data>/notebooks).")] = None,
    config: ConfigOption = None,
) -> None:
    """Execute every notebook under notebooks/ on DATA; write the executed copies with their outputs."""
    data = Path(data or _config(config).paths.data_dir)
    try:
        from custbase.notebooks import run_notebooks
    except ImportError as err:
        _fail(f"{err.name} is missing: install the notebooks extra (`uv sync --all-extras`)")
    try:
        runs = run_notebooks(data, out or data / "notebooks")
    except FileNotFoundError as err:
        _fail(str(err))
    for run in runs:
        typer.echo(f"{run.name}: {run.cells} cells, {run.images} figures, {run.seconds:.1f} s -> {run.path}")


import_app = typer.Typer(help="Bring your own data into the raw-data contract.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(import_app, name="import")


@import_app.command("csv")
def import_csv(
    mapping: Annotated[Path, typer.Option(help="YAML column mapping (see features/importers/example_mapping.yaml).")],
    out: Annotated[Path, typer.Option(help="Raw folder to write.")],
    config: ConfigOption = None,
) -> None:
    """Map CSV or parquet extracts onto the raw-data contract with no code, then validate them."""
    cfg = _config(config)
    _existing(mapping, "mapping", "start from features/importers/example_mapping.yaml")
    from features.importers import import_mapped

    summary = import_mapped(mapping, out, cfg)
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
    cfg = _config(config)
    _existing(src, "Berka", "put the PKDD'99 files there or give --src DIR", folder=True)
    from features.importers import import_berka as run_import

    summary = run_import(src, out, cfg, slices=tuple(s.strip() for s in slices.split(",")))
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
