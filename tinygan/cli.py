"""The `tinygan` command. User mistakes (TinyGANError) print one line `error: ...` and exit 2 — never a traceback."""
from __future__ import annotations

from typing import Optional

import typer

from tinygan.classes import N_CLASSES
from tinygan.errors import TinyGANError, report_errors
from tinygan.teacher import RESOLUTION, Z_DIM

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="tinygan: distil BigGAN-deep-128 into a TinyGAN student. The pipeline itself runs with `dvc repro`; "
         "these commands inspect its artifacts and use the exported model.",
)


@app.command("check-params")
@report_errors
def check_params(params_file: str = typer.Option("params.yaml", "--params", help="params file to validate"),
                 explain: bool = typer.Option(False, "--explain", help="list every param: values, meaning")):
    """Validate a params file (types, ranges, unknown keys) and print the normalised values."""
    import json

    from tinygan import params

    if explain:
        for key, doc, text in params.describe():
            typer.echo(f"{key:34} {text}  [{doc}]")
        return
    typer.echo(json.dumps(params.load(params_file), indent=2))


def _load_for_doctor(arg: str, overrides: list[str]) -> dict:
    """The validated params `tinygan doctor ARG` checks: ARG is a profile of conf/ (composed with the
    ``-S`` overrides, as `dvc exp run -S profile=ARG` would) or a params file."""
    from pathlib import Path

    import yaml

    from tinygan import params, profiles

    if Path(profiles.CONF_DIR, "profile", f"{arg}.yaml").is_file():
        return params.validate(yaml.safe_load(profiles.compose_yaml(arg, overrides)))
    if overrides:
        raise TinyGANError(f"doctor: -S overrides apply to a profile; {arg!r} is not one of "
                           f"{', '.join(profiles.names()) or 'the profiles in conf/profile/'}")
    if not Path(arg).is_file():
        raise TinyGANError(f"doctor: {arg} is neither a profile ({', '.join(profiles.names())}) nor a params file; "
                           f"give the profile or params file of the run to check (default params.yaml)")
    return params.load(arg)


@app.command()
@report_errors
def doctor(target: str = typer.Argument("params.yaml", help="a profile (paper, demo) or a params file"),
           overrides: list[str] = typer.Option([], "--set", "-S", help="profile override, as `dvc exp run -S`")):
    """Before a (paper-scale) run: teacher loadable offline, ImageNet class folders, Inception file and its
    sha256, free disk for the shards, CUDA. Prints `ok: ...` / `problem: ...` lines; exit code 1 on problems."""
    from tinygan.doctor import run_checks

    results = run_checks(_load_for_doctor(target, overrides))
    for passed, problems in results:
        for line in [f"problem: {x}" for x in problems] or [f"ok: {passed}"]:
            typer.echo(line)
    if any(problems for _, problems in results):
        raise typer.Exit(1)


@app.command()
@report_errors
def profile(name: Optional[str] = typer.Argument(None, help="a profile in conf/profile/ (default: the default)"),
            overrides: list[str] = typer.Option([], "--set", "-S", help="override like `dvc exp run -S`: key=value")):
    """Print the params.yaml that `dvc exp run -S profile=NAME` composes from conf/ (validated first)."""
    import yaml

    from tinygan import params, profiles

    text = profiles.compose_yaml(name, overrides)
    params.validate(yaml.safe_load(text))
    typer.echo(text, nl=False)


@app.command()
@report_errors
def verify(directory: str = typer.Argument(..., help="a shard directory (data/real, data/teacher)"),
           rehash: bool = typer.Option(False, "--rehash", help="hash every shard again, even those the verify "
                                       "record has seen unchanged, and renew the record")):
    """Check every shard's sha256, length and layout against its manifest.json (shards verified before and
    unchanged since are trusted from the verify record unless --rehash)."""
    from tinygan import shards

    report = shards.verify(directory, rehash=rehash)
    how = "rehashed, " if rehash else ""
    typer.echo(f"ok: {directory}: {report['n']} samples in {len(report['shards'])} shards, {how}checksums match")


@app.command()
@report_errors
def summary(
    variant: str = typer.Option("dw", help="dw (TinyGAN-dw) | std (TinyGAN-std)"),
    ch: int = typer.Option(32, help="generator channel multiplier (paper: 32)"),
    d_ch: int = typer.Option(32, help="discriminator channel multiplier"),
    resolution: int = typer.Option(RESOLUTION, help="image size: a power of two in 8-1024 (the teacher's)"),
    n_classes: int = typer.Option(N_CLASSES, help="class count (the teacher's); 0: unconditional"),
    z_dim: int = typer.Option(Z_DIM, help="noise size (the teacher's)"),
    layers: bool = typer.Option(False, "--layers", help="print the per-layer table"),
):
    """Parameters and MACs per image of the student G and D, measured with a counter."""
    import json

    import torch

    from tinygan import summary as summ
    from tinygan.models import Discriminator, Generator

    G = Generator(variant, ch, n_classes, z_dim, resolution=resolution)
    D = Discriminator(d_ch, n_classes, resolution)
    z, y = torch.zeros(1, z_dim), torch.zeros(1, dtype=torch.long)
    g = summ.summary(G, (z, y))
    d = summ.summary(D, (torch.zeros(1, 3, resolution, resolution), y))
    if layers:
        typer.echo(g["table"])
        typer.echo(d["table"])
    shape = {"resolution": resolution, "n_classes": n_classes, "z_dim": z_dim}
    typer.echo(json.dumps({"generator": {"variant": variant, "ch": ch, **shape, "params": g["params"],
                                         "macs_per_image": g["macs_per_image"]},
                           "discriminator": {"ch": d_ch, **shape, "params": d["params"],
                                             "macs_per_image": d["macs_per_image"]}}, indent=2))


@app.command()
@report_errors
def generate(
    model: str = typer.Argument(..., help="exported generator.safetensors or generator.onnx (ONNX needs no torch)"),
    classes: list[str] = typer.Option(..., "--class", "-c", help="class by index (207), wnid (n02099601) or "
                                      "name (golden_retriever); repeat for several"),
    n: int = typer.Option(8, "-n", help="images per class"),
    truncation: float = typer.Option(0.5, help="z = truncation x truncated normal; in [0.02, 1]"),
    seed: int = typer.Option(0, help="seed of the noise"),
    out: str = typer.Option("samples.png", "--out", "-o", help="grid .png path, or a directory"),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="one grid PNG, or one PNG per image (out = dir)"),
    interpolate: Optional[str] = typer.Option(None, help="classes:A,B (z fixed) or seeds:S1,S2 (class fixed)"),
    steps: int = typer.Option(8, help="columns of an interpolation sheet"),
    synsets: Optional[str] = typer.Option(None, help="LOC_synset_mapping.txt-style file for class names"),
):
    """Make images with an exported student (see `dvc repro export`)."""
    from tinygan.generate import generate as run

    for path in run(model, out, classes, n=n, truncation=truncation, seed=seed, grid=grid,
                    interpolate=interpolate, steps=steps, synsets=synsets):
        typer.echo(path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
