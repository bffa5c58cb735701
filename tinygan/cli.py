"""The `tinygan` command, and the wrapper every `stages/*.py` script runs under.

User mistakes (TinyGANError) print one line `error: ...` and exit 2 — never a traceback.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides real messages

import typer

from tinygan.errors import TinyGANError

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


def run_stage(fn: Callable) -> None:
    """Entry point of a `stages/<name>.py` script: typer CLI (with --help) around ``fn``."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=fn.__doc__)
    app.command(help=fn.__doc__)(report_errors(fn))
    app()


app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="tinygan: distil BigGAN-deep-128 into a TinyGAN student. The pipeline itself runs with `dvc repro`; "
         "these commands inspect its artifacts and use the exported model.",
)


@app.command("check-params")
@report_errors
def check_params(params_file: str = typer.Option("params.yaml", "--params", help="params file to validate")):
    """Validate a params file (types, ranges, unknown keys) and print the normalised values."""
    import json

    from tinygan import params

    typer.echo(json.dumps(params.load(params_file), indent=2))


@app.command()
@report_errors
def verify(directory: str = typer.Argument(..., help="a shard directory (data/real, data/teacher)")):
    """Check every shard's sha256, length and layout against its manifest.json."""
    from tinygan import shards

    report = shards.verify(directory)
    typer.echo(f"ok: {directory}: {report['n']} samples in {len(report['shards'])} shards, checksums match")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
