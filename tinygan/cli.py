"""The `tinygan` command. User mistakes (TinyGANError) print one line `error: ...` and exit 2 — never a traceback."""
from __future__ import annotations

from typing import Literal, Optional

import typer

from tinygan import __version__
from tinygan.classes import N_CLASSES
from tinygan.errors import ParamsFile, TinyGANError, report_errors
from tinygan.generate import VARIANTS
from tinygan.teacher import RESOLUTION, Z_DIM

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="tinygan: distil BigGAN-deep-128 into a TinyGAN student. The pipeline itself runs with `dvc repro`; "
         "these commands inspect its artifacts and use the exported model.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tinygan {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """tinygan's commands (see --help)."""


@app.command("check-params")
@report_errors
def check_params(params_file: ParamsFile = "params.yaml",
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
    variant: Literal[VARIANTS] = typer.Option("dw", help="dw (TinyGAN-dw) | std (TinyGAN-std)"),
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
    model: str = typer.Argument(..., help="an exported generator: .safetensors, .torchscript.pt, .onnx (also "
                                "the .int8.onnx / .fp16.onnx), .openvino.xml (ONNX / OpenVINO need no torch)"),
    classes: list[str] = typer.Option(..., "--class", "-c", help="class by index (207), wnid (n02099601) or any "
                                      "of its names (golden_retriever; tabby or tabby_cat); repeat for several"),
    n: int = typer.Option(8, "-n", help="images per class"),
    truncation: float = typer.Option(0.5, help="z = truncation x truncated normal; in [0.02, 1]"),
    seed: int = typer.Option(0, help="seed of the noise"),
    out: str = typer.Option("samples.png", "--out", "-o", help="grid image path (.png, or .jpg / .jpeg: a JPEG), "
                            "or a directory"),
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


refstats_app = typer.Typer(no_args_is_help=True, help="Reference statistics as a mu/sigma .npz (the pytorch-fid / "
                           "clean-fid format), with the extractor and preprocessing recorded.")
app.add_typer(refstats_app, name="refstats")


def _eval_config(params_file: str, protocol: Optional[str], extractor: Optional[str], extractor_path: Optional[str]):
    """EvalConfig from a params file, with the CLI's extractor / protocol overrides (validated as params)."""
    import dataclasses

    from tinygan import params
    from tinygan.evaluate import EvalConfig

    cfg = EvalConfig.from_params(params.load(params_file), progress=True)
    changes = {k: v for k, v in (("protocol", protocol), ("extractor_kind", extractor),
                                 ("extractor_path", extractor_path)) if v is not None}
    for key, value in (("protocol", protocol), ("extractor", extractor)):
        if value is not None:
            params.SCHEMA["evaluate"][key].check(f"--{key}", value)
    return dataclasses.replace(cfg, **changes)


PARAMS_OPT = typer.Option("params.yaml", "--params", help="params file: classes, seed, truncation, evaluate.*")
PROTOCOL_OPT = typer.Option(None, "--protocol", help="authors | stylegan2-ada (default: evaluate.protocol)")
EXTRACTOR_OPT = typer.Option(None, "--extractor", help="inception | judge | torchscript (default: evaluate.extractor)")
EXTRACTOR_PATH_OPT = typer.Option(None, "--extractor-path",
                                  help="the extractor's file (default: evaluate.extractor_path)")


@refstats_app.command("export")
@report_errors
def refstats_export(
    refstats_dir: str = typer.Argument(..., help="a reference statistics directory (data/refstats)"),
    out: str = typer.Argument(..., help="the .npz to write (mu, sigma, n, kid_reservoir, extractor, protocol, ...)"),
    cls: Optional[int] = typer.Option(None, "--class", help="one class's statistics instead of the overall ones"),
):
    """Write reference statistics as a mu/sigma .npz that pytorch-fid and clean-fid read."""
    import json

    from tinygan.reference import export_npz

    typer.echo(json.dumps(export_npz(refstats_dir, out, cls), indent=2))


@refstats_app.command("import")
@report_errors
def refstats_import(
    npz: str = typer.Argument(..., help="a mu/sigma .npz (ours, pytorch-fid's or clean-fid's)"),
    out_dir: str = typer.Argument(..., help="the reference statistics directory to write (overall stats only)"),
    params_file: str = PARAMS_OPT, protocol: Optional[str] = PROTOCOL_OPT, extractor: Optional[str] = EXTRACTOR_OPT,
    extractor_path: Optional[str] = EXTRACTOR_PATH_OPT,
    assume: bool = typer.Option(False, "--assume-extractor", help="the file records no extractor (pytorch-fid, "
                                "clean-fid): vouch that it was made with this extractor and preprocessing"),
):
    """Reference statistics from a mu/sigma .npz made with the same extractor and protocol (for `tinygan score`)."""
    import json

    from tinygan import runtime
    from tinygan.extractors import load_extractor
    from tinygan.reference import import_npz

    cfg = _eval_config(params_file, protocol, extractor, extractor_path)
    ext = load_extractor(cfg.extractor_path, cfg.extractor_kind, sha256=cfg.extractor_sha256,
                         device=runtime.device(cfg.device, "runtime.evaluate.device"), protocol=cfg.protocol,
                         encoder=cfg.encoder)
    typer.echo(json.dumps(import_npz(npz, out_dir, ext, cfg.extractor_path, assume=assume), indent=2))


@app.command()
@report_errors
def score(
    source: str = typer.Argument(..., help="exported generator (.safetensors, .onnx, TorchScript .pt), a folder of "
                                 "images, or an .npz of uint8 images [N,H,W,3]"),
    refstats: str = typer.Option("data/refstats", "--refstats", help="reference statistics directory (the refstats "
                                 "stage's, or `tinygan refstats import`)"),
    params_file: str = PARAMS_OPT, protocol: Optional[str] = PROTOCOL_OPT, extractor: Optional[str] = EXTRACTOR_OPT,
    extractor_path: Optional[str] = EXTRACTOR_PATH_OPT,
    n: Optional[int] = typer.Option(None, "-n", help="images to generate (default evaluate.n_samples) or the most "
                                    "to read from a folder / npz (default all)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="also write the JSON to this file"),
):
    """IS, FID and KID of a generator, a folder or an .npz of images, measured as the evaluate stage does; prints
    JSON."""
    import json

    from tinygan.io import write_json
    from tinygan.score import score as run

    if n is not None and n < 1:
        raise TinyGANError(f"score: -n must be at least 1, got {n}")
    metrics = run(source, refstats, _eval_config(params_file, protocol, extractor, extractor_path), n=n)
    if out:
        write_json(out, metrics)
    typer.echo(json.dumps(metrics, indent=2, sort_keys=True))


@app.command("fetch-web-runtime")
@report_errors
def fetch_web_runtime(
    vendor: Optional[str] = typer.Option(None, help="where to put the files (default: where the export stage "
                                                    "reads them, vendor/onnxruntime-web)"),
):
    """Get the pinned onnxruntime-web files for the export's browser page (npm pack; sha256-checked)."""
    from tinygan.page import ORT_WEB_VERSION, VENDOR_DIR, fetch_runtime

    for path in fetch_runtime(vendor or VENDOR_DIR):
        typer.echo(path)
    typer.echo(f"onnxruntime-web {ORT_WEB_VERSION}: ok")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
