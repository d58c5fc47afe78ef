"""Command line: thin wrappers that format results; user mistakes print ``Error: ...`` and exit 1."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(help="deleverage: batch liquidation engine and stress lab.", no_args_is_help=True)


@app.command()
def demo(out: str = typer.Option("out/demo", help="output directory")) -> None:
    """Run the bundled demonstration (replaced by the crash replay once the lab lands)."""
    typer.echo("deleverage demo: nothing to run yet")


@app.command()
def version() -> None:
    """Print the installed version."""
    from deleverage import __version__

    typer.echo(__version__)


def main() -> None:
    from deleverage.errors import DeleverageError

    try:
        app()
    except DeleverageError as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
