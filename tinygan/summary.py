"""Parameter and multiply-accumulate (MAC) counts, measured by torch's ``FlopCounterMode``.

One eval-mode, no-grad forward runs under ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs
per multiply-add of every convolution and matrix product and nothing else; MACs = FLOPs / 2, per image
(total over the example batch / batch size):
    Conv2d:  output elements * (in_channels / groups) * kh * kw   (depthwise: groups = in_channels)
    Linear:  output elements * in_features   (i.e. out_features * in_features per row)
Not counted: biases, Embedding lookups (0), BatchNorm, activations, upsampling, additions, the
projection inner product of the discriminator and spectral norm's power iteration (vector products) —
all O(activations) or O(weights), small next to the convolutions.
This is the convention of the paper's "FLOPs" (multiply-adds of conv/linear layers).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

LAYER_TYPES = (nn.Conv2d, nn.Linear, nn.Embedding, nn.BatchNorm2d)  # the rows of the per-layer table


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not); spectral-norm weights count once (the raw weight)."""
    return sum(p.numel() for p in module.parameters())


def _profile(model: nn.Module, example_inputs: tuple) -> tuple[int, list[dict[str, Any]]]:
    """Run ``model(*example_inputs)`` once in eval mode, no grad, under FlopCounterMode: (MACs per image, one
    row per layer of LAYER_TYPES in call order, with its output shape (forward hooks), params and MACs; a
    layer called twice has one row with the MACs of both calls)."""
    batch = next(x for x in example_inputs if isinstance(x, torch.Tensor)).shape[0]
    names = {m: name for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)}
    rows: dict[str, dict[str, Any]] = {}

    def hook(module, inputs, output):
        rows.setdefault(names[module], dict(name=names[module], type=type(module).__name__.replace("Parametrized", ""),
                                            out_shape=tuple(output.shape[1:]), params=count_params(module)))

    handles = [m.register_forward_hook(hook) for m in names]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    per_module = counter.get_flop_counts()  # "<RootClass>.<module name>" -> op -> FLOPs, whole batch
    for r in rows.values():
        r["macs"] = sum(per_module.get(f"{type(model).__name__}.{r['name']}", {}).values()) // (2 * batch)
    return counter.get_total_flops() // (2 * batch), list(rows.values())


def count_macs(model: nn.Module, *example_inputs: torch.Tensor) -> int:
    """Multiply-accumulates per image of one forward on ``example_inputs`` (see module docstring)."""
    return _profile(model, example_inputs)[0]


def summary(model: nn.Module, example_inputs: tuple) -> dict[str, Any]:
    """Parameters, MACs per image and a per-layer table (string) of ``model`` on ``example_inputs``.

    Returns {"params": int, "macs_per_image": int, "layers": list of row dicts, "table": str}.
    """
    macs, rows = _profile(model, tuple(example_inputs))
    params = count_params(model)
    header = f"{'layer':<32} {'type':<12} {'output':<18} {'params':>10} {'MACs/img':>14}"
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(str(s) for s in r["out_shape"])
        lines.append(f"{r['name']:<32} {r['type']:<12} {shape:<18} {r['params']:>10,} {r['macs']:>14,}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<32} {'':<12} {'':<18} {params:>10,} {macs:>14,}")
    return {"params": params, "macs_per_image": macs, "layers": rows, "table": "\n".join(lines)}
