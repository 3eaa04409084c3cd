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
