"""Feature extractors for the metrics: the NVlabs TorchScript Inception, or a judge (the demo's classifier).

Both are TorchScript files with the StyleGAN2-ADA Inception call signature

    forward(img uint8 [N,3,H,W] in [0,255], return_features=False, use_fp16=False,
            no_output_bias=False) -> features [N,d] (return_features) or softmax probs [N,K]

and resize inside. ``load_extractor`` wraps one in an ``Extractor``:

    feats, probs = extractor(images_uint8_nchw)   # numpy float32 [N,d], [N,K]

Inception: ``inception-2015-12-05.pt`` (d = 2048 pool features, K = 1008 classes), the file
StyleGAN2-ADA and clean-fid use; its sha256 is checked before loading. IS probabilities are taken
with no_output_bias=True as in StyleGAN2-ADA. clean-fid's ``InceptionV3W`` wrapper is not used:
it downloads by default, takes a directory rather than a file, and returns features only.

An extractor's name and note come from the extractor itself: Inception is the fixed NVlabs file; a judge
module names itself in its string attributes ``extractor_name`` and, optionally, ``extractor_note`` (a
caveat about its figures, e.g. "not Inception; demo figures only"), and ``imagenet_classes`` maps its outputs.

Probabilities come from the same forward pass as the features when the module exposes its final
layer as ``output`` (a Linear: probs = softmax(features @ W^T [+ b])). This is checked once against
the module's own probs forward on a probe batch; if it does not match, two passes are made.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinygan.errors import TinyGANError
from tinygan.io import sha256_file

INCEPTION_NAME = "inception-2015-12-05"
INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")
# sha256 of that file (95,607,719 bytes), as pinned by e.g. crowsonkb/k-diffusion
# (k_diffusion/evaluation.py) for the same URL.
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"


class Extractor:
    """A TorchScript feature extractor with the Inception call signature.

    Attributes: ``name`` (what metrics are labelled with: the extractor's own name, followed by its note
    in brackets when it has one), ``note`` (its caveat, or None), ``feature_dim`` (d), ``num_classes`` (K),
    ``class_map`` (ImageNet index of each of the K outputs, or None for Inception's own 1008 classes),
    ``device``.
    """

    def __init__(self, module: torch.jit.ScriptModule, name: str, device: str | torch.device = "cpu",
                 no_output_bias: bool = False, class_map: list[int] | None = None, note: str | None = None):
        self.module = _frozen(module.to(device))
        self.name = f"{name} ({note})" if note else name
        self.note = note
        self.device = torch.device(device)
        self.no_output_bias = bool(no_output_bias)
        self.class_map = class_map
        self._one_pass = False
        probe = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
        feats, probs = self._two_pass(probe)
        self.feature_dim = int(feats.shape[1])
        self.num_classes = int(probs.shape[1])
        try:
            with torch.inference_mode():
                one = self._probs_from_features(feats)
            self._one_pass = bool(torch.allclose(one, probs, rtol=1e-4, atol=1e-6))
        except (AttributeError, RuntimeError):
            self._one_pass = False

    def _run(self, images: torch.Tensor, return_features: bool) -> torch.Tensor:
        return self.module(images.to(self.device), return_features=return_features,
                           no_output_bias=self.no_output_bias).float()

    def _two_pass(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return self._run(images, True), self._run(images, False)

    def _probs_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.module.output
        logits = feats @ out.weight.float().t()
        if not self.no_output_bias and getattr(out, "bias", None) is not None:
            logits = logits + out.bias.float()
        return F.softmax(logits, dim=1)

    def __call__(self, images: torch.Tensor, need_probs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """images: uint8 [N,3,H,W] in [0,255] -> (features float32 [N,d], probs float32 [N,K] or None)."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
                or images.shape[1] != 3:
            raise ValueError(f"expected a uint8 tensor [N,3,H,W], got "
                             f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
        with torch.inference_mode():
            feats = self._run(images, True)
            probs = None
            if need_probs:
                probs = self._probs_from_features(feats) if self._one_pass else self._run(images, False)
        return (feats.cpu().numpy().astype(np.float32),
                None if probs is None else probs.cpu().numpy().astype(np.float32))


def _check_file(path: Path, what: str, how: str) -> None:
    if not path.is_file():
        raise TinyGANError(f"{what} not found at {path}: {how}")


def load_extractor(path: str | os.PathLike, kind: str, sha256: str | None = None,
                   device: str | torch.device = "cpu") -> Extractor:
    """Load the Inception (kind="inception") or demo judge (kind="judge") TorchScript extractor.

    Inception: ``sha256`` defaults to INCEPTION_SHA256; a missing or mismatching file raises one
    TinyGANError line with where to put it, the URL to fetch it from, and the sha256 it must have.
    Judge: ``sha256`` is checked if given; its name, note and class map are read from the module.
    """
    path = Path(path)
    if kind == "inception":
        expected = (sha256 or INCEPTION_SHA256).lower()
        fetch = (f"on a connected machine download {INCEPTION_URL} and put it at {path} "
                 f"(it must have sha256 {expected})")
        _check_file(path, "Inception weights", fetch)
        actual = sha256_file(path)
        if actual != expected:
            raise TinyGANError(f"Inception weights at {path} have sha256 {actual}, expected {expected} "
                               f"(corrupt or a different file): {fetch}")
        module = _jit_load(path, device, fetch)
        return Extractor(module, INCEPTION_NAME, device=device, no_output_bias=True)
    if kind == "judge":
        redo = "rebuild it with the demo stage (dvc repro demo)"
        _check_file(path, "demo judge", redo)
        if sha256 is not None:
            actual = sha256_file(path)
            if actual != sha256.lower():
                raise TinyGANError(f"demo judge at {path} has sha256 {actual}, expected {sha256}: {redo}")
        module = _jit_load(path, device, redo)
        name, note = getattr(module, "extractor_name", None), getattr(module, "extractor_note", None)
        if not isinstance(name, str) or not (note is None or isinstance(note, str)):
            raise TinyGANError(f"demo judge at {path} does not name itself (no string attribute extractor_name): "
                               f"{redo}")
        class_map = [int(c) for c in module.imagenet_classes.tolist()]
        return Extractor(module, name, device=device, no_output_bias=False, class_map=class_map, note=note)
    raise TinyGANError(f"unknown extractor kind {kind!r}: use 'inception' or 'judge'")


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript image encoder with the call signature above, frozen (eval mode, no parameter gradients)
    for use inside a training loss (L_DiME, ``tinygan.losses.dime``): unlike ``Extractor`` it is called
    directly, with gradients flowing to its float input in [0, 255]: the demo judge casts its input to float32
    first (tests/test_losses.py checks the gradient), as NVlabs' Inception does (not checked: no file here)."""
    path = Path(path)
    how = "set train.dime_encoder to a TorchScript encoder file, or lambda_dime: 0 to train without L_DiME"
    _check_file(path, "L_DiME encoder (train.dime_encoder)", how)
    return _frozen(_jit_load(path, device, how))


def _frozen(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def _jit_load(path: Path, device, how: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as e:  # torch raises RuntimeError / ValueError for bad archives
        raise TinyGANError(f"cannot load TorchScript file {path} ({type(e).__name__}): {how}") from None
