"""The runtime side of a run (params `runtime:`): which device a stage computes on. One choice for every stage:
"auto" is CUDA when torch sees a GPU, else CPU; "cuda" without a visible GPU is a one-line error."""
from __future__ import annotations

import torch

from tinygan.errors import TinyGANError


def device(name: str | torch.device, key: str = "device", index: int = 0) -> torch.device:
    """The torch device for the setting ``name`` ("auto", "cpu", "cuda" or "cuda:N") of params ``key``;
    ``index`` picks the GPU for "auto"/"cuda" (e.g. LOCAL_RANK under torchrun)."""
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TinyGANError(f"{key} is {name!r} but torch sees no CUDA device; set {key}: auto or cpu")
        if dev.index is None:
            dev = torch.device("cuda", index)
    return dev
