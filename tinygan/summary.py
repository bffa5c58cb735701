"""Parameter and multiply-accumulate (MAC) counts, measured with forward hooks.

Counted per image (total over the example batch / batch size):
    Conv2d:  output elements * (in_channels / groups) * kh * kw
    Linear:  output elements * in_features   (i.e. out_features * in_features per row)
Not counted: biases, Embedding lookups (0), BatchNorm, activations, upsampling, additions, the
projection inner product of the discriminator — all O(activations), small next to the convolutions.
This is the convention of the paper's "FLOPs" (multiply-adds of conv/linear layers).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

LAYER_TYPES = (nn.Conv2d, nn.Linear, nn.Embedding, nn.BatchNorm2d)


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not); spectral-norm weights count once (the raw weight)."""
    return sum(p.numel() for p in module.parameters())


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call of ``module`` that produced ``output`` (whole batch)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _profile(model: nn.Module, example_inputs: tuple) -> list[dict[str, Any]]:
    """Run ``model(*example_inputs)`` once in eval mode, no grad; one row per call of a counted layer."""
    batch = next(x for x in example_inputs if isinstance(x, torch.Tensor)).shape[0]
    rows: list[dict[str, Any]] = []
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            rows.append(
                dict(
                    name=name,
                    type=type(module).__name__.replace("Parametrized", ""),
                    out_shape=tuple(output.shape[1:]),
                    params=count_params(module),
                    macs=layer_macs(module, output) // batch,
                )
            )

        return hook

    for name, module in model.named_modules():
        if isinstance(module, LAYER_TYPES):
            handles.append(module.register_forward_hook(make_hook(name)))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return rows


def count_macs(model: nn.Module, *example_inputs: torch.Tensor) -> int:
    """Multiply-accumulates per image of one forward on ``example_inputs`` (see module docstring)."""
    return sum(r["macs"] for r in _profile(model, example_inputs))


def summary(model: nn.Module, example_inputs: tuple) -> dict[str, Any]:
    """Parameters, MACs per image and a per-layer table (string) of ``model`` on ``example_inputs``.

    Returns {"params": int, "macs_per_image": int, "layers": list of row dicts, "table": str}.
    """
    rows = _profile(model, tuple(example_inputs))
    params = count_params(model)
    macs = sum(r["macs"] for r in rows)
    header = f"{'layer':<32} {'type':<12} {'output':<18} {'params':>10} {'MACs/img':>14}"
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(str(s) for s in r["out_shape"])
        lines.append(f"{r['name']:<32} {r['type']:<12} {shape:<18} {r['params']:>10,} {r['macs']:>14,}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<32} {'':<12} {'':<18} {params:>10,} {macs:>14,}")
    return {"params": params, "macs_per_image": macs, "layers": rows, "table": "\n".join(lines)}
