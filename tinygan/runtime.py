"""The runtime side of a run (params `runtime:`): which device a stage computes on. One choice for every stage:
"auto" is CUDA when torch sees a GPU, else CPU; "cuda" without a visible GPU is a one-line error. And how float32
convolutions and matrix products compute on CUDA (``float32_math``)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

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


# glibc mallopt parameters, and their defaults (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def keep_freed_memory(on: bool = True) -> bool:
    """Speed only (CPU training): with ``on``, glibc's malloc serves large blocks from its heap and keeps freed
    memory there, so each step's big activations reuse pages already mapped instead of an mmap, fresh zeroed
    page faults and an munmap per tensor; the process keeps its peak memory until it exits. ``on=False`` puts
    glibc's defaults back and returns the free heap to the system. Returns False (and changes nothing) where
    the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return False
    mallopt(_M_MMAP_MAX, 0 if on else _DEFAULT_MMAP_MAX)
    mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1 if on else _DEFAULT_TRIM_THRESHOLD)
    if not on:
        trim(0)
    return True


@contextmanager
def float32_math(tf32: bool = False) -> Iterator[None]:
    """float32 convolutions and matrix products on CUDA for the block: IEEE float32 (``tf32=False``), as the
    authors' GPU (a 2080 Ti, which has no TF32) computed them and as every metric is measured; or TensorFloat-32
    tensor-core math (Ampere and later: float32 storage, 10-bit mantissa products; ``train.precision: tf32``).
    PyTorch's own default is TF32 convolutions (cuDNN) with IEEE matrix products, so without this an fp32 run on a
    recent GPU would silently round its convolutions. The settings from before come back afterwards. They concern
    CUDA only: CPU results are the same either way."""
    knobs = (torch.backends.cudnn, torch.backends.cuda.matmul)
    before = [k.allow_tf32 for k in knobs]
    for k in knobs:
        k.allow_tf32 = tf32
    try:
        yield
    finally:
        for k, v in zip(knobs, before):
            k.allow_tf32 = v
