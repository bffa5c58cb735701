"""User-facing errors: one clear line (what, where, how to fix), non-zero exit, no traceback; and the wrapper
every `stages/*.py` script runs under (``run_stage``)."""
from __future__ import annotations

import functools
from typing import Annotated, Callable

import typer


class TinyGANError(Exception):
    """A mistake the user can fix (bad param, missing asset, corrupt file).

    The CLI and every stage print ``error: <message>`` on one line and exit with code 2.
    """


EXIT_USER_ERROR = 2


def report_errors(fn: Callable) -> Callable:
    """Run ``fn``; turn a TinyGANError into one line on stderr and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TinyGANError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
    return wrapper


PARAMS_HELP = "the params file to read (default: the pipeline's params.yaml)"
# The one spelling of the params-file option, for `tinygan` commands and every `stages/*.py` script:
# ``def main(params_file: ParamsFile = "params.yaml")`` gives ``--params FILE`` (a plain default when called).
ParamsFile = Annotated[str, typer.Option("--params", help=PARAMS_HELP)]


def run_stage(fn: Callable) -> None:
    """Entry point of a `stages/<name>.py` script: typer CLI (with --help) around ``fn``."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=fn.__doc__)
    app.command(help=fn.__doc__)(report_errors(fn))
    app()
