"""Feature extractors for the metrics: the NVlabs TorchScript Inception, a judge (the demo's classifier), or any
TorchScript image encoder (features only), each measured under an evaluation protocol.

Inception and judges are TorchScript files with the StyleGAN2-ADA Inception call signature

    forward(img [N,3,H,W] in [0,255] (uint8, or float: both cast to float32 first), return_features=False,
            use_fp16=False, no_output_bias=False) -> features [N,d] (return_features) or softmax probs [N,K]

and resize inside. ``load_extractor`` wraps one in an ``Extractor``:

    feats, probs = extractor(images)   # images: uint8 NCHW [0,255] or float NCHW [-1,1]; numpy float32 [N,d], [N,K']

Inception: ``inception-2015-12-05.pt`` (d = 2048 pool features, K = 1008 classes), the file
StyleGAN2-ADA and clean-fid use; its sha256 is checked before loading. Its module exposes ``layers`` and the
final ``output`` Linear(2048, 1008); it maps its input x to (x - 128) / 128 after a TF-style bilinear resize to
299. clean-fid's ``InceptionV3W`` wrapper is not used: it downloads by default, takes a directory rather than
a file, and returns features only.

Protocols (``PROTOCOLS``; evaluate.protocol):

- ``stylegan2-ada``: float images are quantised to uint8 first (``tinygan.teacher.quantize``, as the student's
  images always were) and the module sees uint8 [0, 255]; IS probabilities are the softmax over all K outputs,
  for Inception without the output bias (no_output_bias=True, as StyleGAN2-ADA), for a judge with it.
- ``authors`` (TF-GAN on the 2015-12-05 graph, as the TinyGAN authors evaluated): no uint8 round trip: a float
  image t in [-1, 1] is fed as ``scale * t + offset`` so that the module's own first step gives back t exactly
  (Inception 128 t + 128, the judge 127.5 t + 127.5); uint8 images (real, stored teacher samples) enter as
  t = u / 127.5 - 1. FID features come from that float input. IS probabilities are the softmax over the first
  ``AUTHORS_LOGITS`` = 1000 logits (features @ W^T + b of ``output``; a judge has fewer than 1000 outputs and
  keeps them all); a module without a matching ``output`` layer is refused under this protocol.

``Extractor.preprocessing`` says this in words; it is recorded with reference statistics and checked on use.

An extractor's name and note come from the extractor itself: Inception is the fixed NVlabs file; a judge
module names itself in its string attributes ``extractor_name`` and, optionally, ``extractor_note`` (a
caveat about its figures, e.g. "not Inception; demo figures only"), and ``imagenet_classes`` maps its outputs.
A generic encoder (kind "torchscript": ``forward(x float [N,3,S,S]) -> [N,d]``, e.g. a DINOv2 or CLIP image
encoder export) names itself the same way, or is named ``torchscript <file name>``; its input is resized to
``evaluate.encoder.input_size``, scaled to ``input_range`` and normalised by ``mean`` / ``std``. It gives no
class probabilities: IS is n/a with it.

Probabilities come from the same forward pass as the features when the module exposes its final
layer as ``output`` (a Linear: probs = softmax(features @ W^T [+ b])). This is checked once against
the module's own probs forward on a probe batch; if it does not match, two passes are made (stylegan2-ada).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinygan import runtime
from tinygan.errors import TinyGANError
from tinygan.io import sha256_file
from tinygan.teacher import quantize

INCEPTION_NAME = "inception-2015-12-05"
INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")
# sha256 of that file (95,607,719 bytes), as pinned by e.g. crowsonkb/k-diffusion
# (k_diffusion/evaluation.py) for the same URL.
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
KINDS = ("inception", "judge", "torchscript")
PROTOCOLS = ("stylegan2-ada", "authors")  # evaluate.protocol: see the module docstring
AUTHORS_LOGITS = 1000  # TF-GAN's IS: softmax over the first 1,000 of the 2015-12-05 graph's 1,008 logits
INPUT_RANGES = {"unit": (0.0, 1.0), "signed": (-1.0, 1.0), "byte": (0.0, 255.0)}  # evaluate.encoder.input_range


class Extractor:
    """A TorchScript feature extractor with the Inception call signature, measured under a ``protocol``.

    Attributes: ``name`` (what metrics are labelled with: the extractor's own name, followed by its note
    in brackets when it has one), ``note`` (its caveat, or None), ``feature_dim`` (d), ``num_classes`` (K, 0 for
    a features-only encoder), ``has_probs`` (whether it gives IS probabilities), ``class_map`` (ImageNet index of
    each of the K outputs, or None for Inception's own 1008 classes), ``protocol``, ``preprocessing`` (what the
    protocol does with pixels and logits, in words: recorded with every statistic), ``device``.

    ``unit`` = (scale, offset) maps a generator-range float image t in [-1, 1] to the module's float input
    ``scale * t + offset``, chosen so that the module's own first step gives back t exactly (Inception:
    (x - 128) / 128, so 128 t + 128; the judge: x / 127.5 - 1, so 127.5 t + 127.5).
    """

    def __init__(self, module: torch.nn.Module, name: str, device: str | torch.device = "cpu",
                 no_output_bias: bool = False, class_map: list[int] | None = None, note: str | None = None,
                 protocol: str = "stylegan2-ada", unit: tuple[float, float] = (128.0, 128.0),
                 has_probs: bool = True):
        if protocol not in PROTOCOLS:
            raise TinyGANError(f"unknown evaluation protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
        self.module = _frozen(module.to(device))
        self.name = f"{name} ({note})" if note else name
        self.note, self.device, self.class_map = note, torch.device(device), class_map
        self.protocol, self.unit, self.has_probs = protocol, unit, has_probs
        self.no_output_bias = bool(no_output_bias) and protocol != "authors"  # TF-GAN's logits include the bias
        self._one_pass = False
        probe = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
        with torch.inference_mode():
            feats = self._run(self._module_input(probe), True)
            probs = self._run(self._module_input(probe), False) if has_probs else None
        self.feature_dim = int(feats.shape[1])
        self.num_classes = int(probs.shape[1]) if has_probs else 0
        if has_probs:
            self._one_pass = self._check_one_pass(feats, probs)
        if protocol == "authors" and has_probs and not self._one_pass:
            raise TinyGANError(f"extractor {self.name}: the authors' protocol takes IS from the logits, but the "
                               f"module exposes no final linear layer `output` that reproduces its probabilities; "
                               f"use evaluate.protocol=stylegan2-ada with it")
        self.preprocessing = self._describe()

    def _check_one_pass(self, feats: torch.Tensor, probs: torch.Tensor) -> bool:
        try:
            with torch.inference_mode():
                return bool(torch.allclose(F.softmax(self._logits(feats), dim=1), probs, rtol=1e-4, atol=1e-6))
        except (AttributeError, RuntimeError):
            return False

    def _describe(self) -> str:
        if self.protocol == "authors":
            pixels = "float images in [-1, 1] (the generator's output as is; uint8 images as u / 127.5 - 1)"
            head = f"softmax over the first {AUTHORS_LOGITS} logits (output bias included)"
        else:
            pixels = "uint8 images (float images quantised first, round(127.5 (t + 1)))"
            head = f"softmax over all outputs ({'without' if self.no_output_bias else 'with'} the output bias)"
        return f"{self.protocol}: {pixels}; IS: " + (head if self.has_probs else "n/a (features only)")

    def _module_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the module is fed: uint8 [0, 255] (stylegan2-ada) or float ``scale * t + offset`` (authors)."""
        if images.dtype == torch.uint8:
            if self.protocol != "authors":
                return images
            t = images.to(self.device, torch.float32) / 127.5 - 1.0
        else:
            if self.protocol != "authors":
                return torch.from_numpy(quantize(images.detach().float().cpu().numpy()))
            t = images.to(self.device, torch.float32)
        return t * self.unit[0] + self.unit[1]

    def _run(self, images: torch.Tensor, return_features: bool) -> torch.Tensor:
        """The module on ``images``, in IEEE float32 on CUDA too (no TF32: ``runtime.float32_math``)."""
        with runtime.float32_math():
            return self.module(images.to(self.device), return_features=return_features,
                               no_output_bias=self.no_output_bias).float()

    def _logits(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.module.output
        with runtime.float32_math():
            logits = feats @ out.weight.float().t()
        if not self.no_output_bias and getattr(out, "bias", None) is not None:
            logits = logits + out.bias.float()
        return logits

    def _probs(self, feats: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.protocol == "authors":  # TF-GAN: softmax over the first 1,000 of the 1,008 logits
            return F.softmax(self._logits(feats)[:, :AUTHORS_LOGITS], dim=1)
        return F.softmax(self._logits(feats), dim=1) if self._one_pass else self._run(images, False)

    def __call__(self, images: torch.Tensor, need_probs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """images: uint8 [N,3,H,W] in [0, 255], or float [N,3,H,W] in [-1, 1] (a generator's output)
        -> (features float32 [N,d], probs float32 [N,K'] or None). K' is K, or 1000 under the authors'
        protocol when K > 1000. Features-only extractors give None probs."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or not (
                images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"expected a uint8 or float tensor [N,3,H,W], got "
                             f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
        with torch.inference_mode():
            x = self._module_input(images)
            feats = self._run(x, True)
            probs = self._probs(feats, x) if need_probs and self.has_probs else None
        return (feats.cpu().numpy().astype(np.float32),
                None if probs is None else probs.cpu().numpy().astype(np.float32))


def _check_file(path: Path, what: str, how: str) -> None:
    if not path.is_file():
        raise TinyGANError(f"{what} not found at {path}: {how}")


def load_extractor(path: str | os.PathLike, kind: str, sha256: str | None = None,
                   device: str | torch.device = "cpu", protocol: str = "stylegan2-ada",
                   encoder: dict | None = None) -> Extractor:
    """Load the Inception (kind="inception"), demo judge (kind="judge") or a generic image encoder
    (kind="torchscript", ``encoder`` = evaluate.encoder: input_size, input_range, mean, std) as an
    ``Extractor`` measuring under ``protocol``.

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
        return Extractor(module, INCEPTION_NAME, device=device, no_output_bias=True, protocol=protocol)
    if kind == "judge":
        redo = "rebuild it with the demo stage (dvc repro demo)"
        module, name, note = _named_module(path, "demo judge", sha256, device, redo)
        class_map = [int(c) for c in module.imagenet_classes.tolist()]
        return Extractor(module, name, device=device, no_output_bias=False, class_map=class_map, note=note,
                         protocol=protocol, unit=(127.5, 127.5))
    if kind == "torchscript":
        return _encoder_extractor(path, sha256, device, protocol, encoder)
    raise TinyGANError(f"unknown extractor kind {kind!r}: use one of {', '.join(KINDS)}")


def _named_module(path: Path, what: str, sha256: str | None, device, redo: str,
                  default_name: str | None = None) -> tuple[torch.jit.ScriptModule, str, str | None]:
    """The TorchScript file at ``path`` (sha256 checked if given), which names itself in its string attributes
    ``extractor_name`` (``default_name`` when it has none) and optionally ``extractor_note``: (module, name,
    note)."""
    _check_file(path, what, redo)
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256.lower():
            raise TinyGANError(f"{what} at {path} has sha256 {actual}, expected {sha256}: {redo}")
    module = _jit_load(path, device, redo)
    name = getattr(module, "extractor_name", default_name)
    note = getattr(module, "extractor_note", None)
    if not isinstance(name, str) or not (note is None or isinstance(note, str)):
        raise TinyGANError(f"{what} at {path} does not name itself (no string attribute extractor_name): {redo}")
    return module, name, note


class _Encoder(torch.nn.Module):
    """A generic image encoder ``forward(x float [N,3,S,S]) -> features [N,d]`` behind the Inception call
    signature (features only): input float [0, 255] -> bilinear (antialiased) resize to S -> the encoder's
    input range -> (x - mean) / std per channel."""

    def __init__(self, module: torch.nn.Module, size: int, input_range: str, mean, std):
        super().__init__()
        self.encoder, self.size = module, int(size)
        self.low, self.high = INPUT_RANGES[input_range]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, img: torch.Tensor, return_features: bool = True, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        if not return_features:
            raise RuntimeError("a generic encoder gives features only")
        x = img.to(torch.float32)
        if x.shape[2] != self.size or x.shape[3] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = self.low + (self.high - self.low) * (x / 255.0)
        out = self.encoder((x - self.mean) / self.std)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise RuntimeError(f"the encoder must return features [N, d], got "
                               f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        return out


def _encoder_extractor(path: Path, sha256: str | None, device, protocol: str, encoder: dict | None) -> Extractor:
    how = ("set evaluate.extractor_path to a TorchScript image encoder (forward(x [N,3,S,S]) -> [N,d]) and "
           "evaluate.encoder to its input_size, input_range, mean and std")
    if not encoder:
        raise TinyGANError(f"evaluate.extractor=torchscript needs evaluate.encoder settings: {how}")
    module, name, note = _named_module(path, "image encoder", sha256, device, how,
                                       default_name=f"torchscript {path.name}")
    size, rng, mean, std = (encoder[k] for k in ("input_size", "input_range", "mean", "std"))
    wrapped = _Encoder(module, size, rng, mean, std)
    pre = (f"resized to {size}x{size} (bilinear, antialiased), range {rng} {list(INPUT_RANGES[rng])}, "
           f"mean {list(mean)}, std {list(std)}")
    try:
        ext = Extractor(wrapped, name, device=device, note=note, protocol=protocol, unit=(127.5, 127.5),
                        has_probs=False)
    except RuntimeError as e:
        raise TinyGANError(f"image encoder {path} does not run on a probe batch ({str(e).splitlines()[0][:160]}): "
                           f"{how}") from None
    ext.preprocessing = f"{ext.preprocessing}; {pre}"
    return ext


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
