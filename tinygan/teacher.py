"""Teachers: generators of square RGB images, class-conditional or not, behind one small callable.

A teacher declares its shape: ``z_dim`` (noise width), ``c_dim`` (number of classes; 0 = unconditional) and
``img_resolution`` R (square RGB images). It is read from the teacher itself, and checked on load by one dry
call (one sample): an output that differs from the declared shape, is not square, has not 3 channels or has
values far outside [-1, 1] (|x| > 1.5) is a one-line TinyGANError. A Teacher is called as
``teacher(z, y, truncation) -> images`` with

- ``z``: float32 [N, z_dim], the noise actually fed (drawn by ``draw_z`` with the teacher's latent recipe);
- ``y``: int64 [N], class indices in [0, c_dim) (all 0 when unconditional; the one-hot vector, [N, c_dim],
  is built inside the adapter);
- ``truncation``: float, passed through to the model;
- returns float32 [N, R, R, 3] (NHWC) in [-1, 1].

It has the attributes ``handle`` (where it was loaded from), ``z_dim``, ``c_dim``, ``n_classes``
(max(c_dim, 1): the valid class indices), ``resolution`` (R) and ``latent``, its latent recipe:

- ``"biggan"``: z = truncation × truncated normal (values outside ±2 redrawn), ``truncated_z``;
- ``"stylegan"``: z standard normal, the truncation passed through as ψ, ``normal_z``.

The param ``sample.latent`` picks one; ``auto`` is the teacher's own (``resolve_latent``). Two adapters:

- ``"tfhub"``: a TF2 SavedModel directory or a TF-Hub handle (a URL such as
  https://tfhub.dev/deepmind/biggan-deep-128/1, a TF1 Hub module), loaded with ``tensorflow_hub.load``.
  Its signature ``"default"`` takes ``z`` float32 [None, z_dim], optionally ``y`` float32 [None, c_dim]
  (one-hot; no ``y``: unconditional) and ``truncation`` float32 [], and returns a dict with key
  ``"default"``: float32 [None, R, R, 3] in [-1, 1] (BigGAN-deep-128's TF-Hub interface is z 128, y 1000,
  R 128). The widths of z and y must be declared (they cannot be guessed); R may be declared None (the dry
  call finds it). Latent recipe: ``biggan``.
- ``"torchscript"``: a file saved with ``torch.jit.save``, with int attributes ``z_dim``, ``c_dim``,
  ``img_resolution`` (StyleGAN2-ADA's names) and::

      forward(z: Tensor[N, z_dim] float32, c: Tensor[N, c_dim] float32 one-hot ([N, 0] if unconditional),
              truncation: Tensor[] float32) -> Tensor[N, 3, R, R] float in [-1, 1]   # NCHW

  Latent recipe: ``stylegan``. A module without those attributes is taken to have BigGAN-deep-128's shape
  (z 128, 1000 classes, R 128; recipe ``biggan``), which the dry call checks. The adapter converts the
  output to NHWC float32 numpy.

Wrapping your own generator (needs your weights; both are then sampled with ``sample.format: torchscript``).
Wrapping code for a StyleGAN2-ADA pickle and for a BigGAN-PyTorch generator: README.md, "Your own teacher"
(tests/test_teacher.py runs the StyleGAN2-ADA one on a stand-in).

``content_hash(handle, kind)`` is the sha256 of what a handle holds (the file, or every file of the module
dir), computed without loading it: the sample stage keys its shards on it, so a teacher replaced at the
same path is resampled rather than reused.

``describe(handle, kind)`` is what the teacher says about itself, ``{"name": str, "g_params": int | None,
"g_macs": int | None, "source": str}`` (generator parameters and multiply-adds per image where known, and
where those figures come from); the sample stage records it in the teacher manifest as ``teacher_info``,
and evaluation and the model card read it from there. Convention: a teacher carries its description inside
itself, as a JSON file named ``tinygan_teacher.json`` (``DESCRIPTION``) holding exactly those four keys:

- a SavedModel dir: the file ``<dir>/tinygan_teacher.json``;
- a TorchScript file: an extra file of the archive, saved with
  ``torch.jit.save(model, path, _extra_files={"tinygan_teacher.json": json.dumps(description)})``.

So the description is part of the teacher's content hash (changing it re-samples) and of its DVC dependency.
Known TF-Hub handles (``PUBLISHED``: BigGAN-deep-128) get their published figures; any other teacher without
a description is ``{"name": handle, "g_params": None, "g_macs": None, "source": "unknown teacher, n/a"}``
(also a local copy of BigGAN-deep-128: add the description file to it to get its figures).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from tinygan.classes import N_CLASSES
from tinygan.errors import TinyGANError
from tinygan.io import sha256_file

# BigGAN-deep-128's interface: z width and image side (N_CLASSES is the class table's, tinygan.classes).
Z_DIM = 128
RESOLUTION = 128
TRUNCATION_RANGE = (0.02, 1.0)  # BigGAN's truncation (z scale): sensible values, the params' bounds too


def check_truncation(value, where: str) -> float:
    """``value`` as a float if it is a truncation in TRUNCATION_RANGE, else one TinyGANError line."""
    lo, hi = TRUNCATION_RANGE
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not lo <= t <= hi:
        raise TinyGANError(f"{where}: truncation is {value!r}, expected a number in [{lo}, {hi}] (BigGAN: 0.5)")
    return t
KINDS = ("tfhub", "torchscript")
LATENTS = ("biggan", "stylegan")  # latent recipes (see draw_z); the param sample.latent adds "auto"
MAX_Z_DIM, MAX_C_DIM, MAX_RESOLUTION = 4096, 100_000, 4096  # bounds on a teacher's declared shape
DESCRIPTION = "tinygan_teacher.json"  # a teacher's description of itself (see describe)
# Teachers known by their handle. BigGAN-deep-128 as published in the TinyGAN paper (Chang & Lu 2020,
# Table 1): not measured here.
PUBLISHED = {
    "https://tfhub.dev/deepmind/biggan-deep-128/1": {
        "name": "BigGAN-deep-128", "g_params": 50_400_000, "g_macs": 8_320_000_000,
        "source": "published (Chang & Lu 2020, Table 1)"},
}


# ---- noise and quantisation ----------------------------------------------------------------------------

def _rng(seed: int, cls: int, idx: int) -> np.random.Generator:
    """The generator of sample ``idx`` of class ``cls``: seeded with ``SeedSequence([seed, cls, idx])``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(cls), int(idx)])))


def truncated_z(seed: int, cls: int, idx: int, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """The teacher noise of sample ``idx`` of class ``cls``: ``truncation * truncated_normal(dim)``.

    Standard-normal values outside [-2, 2] are redrawn (as in the official TinyGAN code), so
    ``|z| <= 2 * truncation``. The draw uses its own generator seeded with ``SeedSequence([seed, cls, idx])``,
    so it depends only on (seed, cls, idx, truncation) — never on batch size, worker count or order.
    """
    return latent_z("biggan", _rng(seed, cls, idx), truncation, dim)


def normal_z(seed: int, cls: int, idx: int, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """StyleGAN's noise of sample ``idx`` of class ``cls``: standard normal float32 [dim], seeded like
    ``truncated_z``; the truncation is not applied to z (the teacher gets it as ψ)."""
    return latent_z("stylegan", _rng(seed, cls, idx), truncation, dim)


def latent_z(latent: str, rng: np.random.Generator, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """One noise vector float32 [dim] of latent recipe ``latent`` from ``rng``: "biggan": ``truncation *
    truncated_normal``; "stylegan": standard normal (its truncation ψ is the teacher's input, not z's)."""
    check_latent(latent)
    if latent == "stylegan":
        return rng.standard_normal(dim, dtype=np.float32)
    return np.float32(truncation) * truncated_normal(rng, dim)


def truncated_normal(rng: np.random.Generator, dim: int = Z_DIM) -> np.ndarray:
    """Standard normal float32 [dim] with values outside [-2, 2] redrawn."""
    z = rng.standard_normal(dim, dtype=np.float32)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
        bad = np.abs(z) > 2.0
    return z


_DRAWS = {"biggan": truncated_z, "stylegan": normal_z}


TEACHER_SAMPLES = ("fresh", "stored")  # where the teacher row's evaluation images come from (evaluate.teacher_samples)
EVALUATION_STREAM = 0x7E7A1  # SeedSequence key of the evaluation noise (``evaluation_seed``)


def evaluation_seed(seed: int) -> int:
    """The seed of the evaluation noise: the fresh teacher evaluation set (stage ``teacher_eval``) and the
    student's evaluation images draw ``draw_z(latent, evaluation_seed(seed), c, k, ...)``, a stream of its own,
    so neither reuses the training pairs' noise (``draw_z(latent, seed, ...)``)."""
    return int(np.random.SeedSequence([int(seed), EVALUATION_STREAM]).generate_state(1)[0])


def check_latent(latent: str) -> None:
    """A latent recipe must be one of LATENTS (one TinyGANError line)."""
    if latent not in LATENTS:
        raise TinyGANError(f"latent recipe {latent!r} is unknown; expected one of {', '.join(LATENTS)}")


def draw_z(latent: str, seed: int, classes, idxs, truncation: float, z_dim: int = Z_DIM) -> np.ndarray:
    """The noise fed to a teacher with latent recipe ``latent`` (``LATENTS``) for each (class, index) pair:
    float32 [N, z_dim]; row i depends only on (seed, classes[i], idxs[i], truncation). "biggan": row i is
    ``truncated_z(seed, classes[i], idxs[i], truncation)``; "stylegan": ``normal_z(...)``. The sample stage
    stores it, and the student's fresh noise must be drawn with the same recipe."""
    check_latent(latent)
    classes, idxs = np.asarray(classes).reshape(-1), np.asarray(idxs).reshape(-1)
    if len(classes) != len(idxs):
        raise ValueError(f"draw_z: {len(classes)} classes but {len(idxs)} indices")
    draw = _DRAWS[latent]
    out = np.empty((len(classes), z_dim), dtype=np.float32)
    for i, (c, k) in enumerate(zip(classes.tolist(), idxs.tolist())):
        out[i] = draw(seed, c, k, truncation, z_dim)
    return out


def truncated_z_batch(seed: int, classes, idxs, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """``truncated_z`` for each (class, index) pair: float32 [N, dim]; row i equals
    ``truncated_z(seed, classes[i], idxs[i], truncation)`` exactly (``draw_z("biggan", ...)``)."""
    return draw_z("biggan", seed, classes, idxs, truncation, dim)


def check_classes(classes, c_dim: int, where: str) -> None:
    """Class indices must be the teacher's: 0..c_dim-1, or only 0 for an unconditional one (c_dim 0)."""
    bad = [c for c in classes if not 0 <= c < max(c_dim, 1)]
    if bad:
        which = f"[0, {c_dim})" if c_dim else "[0, 1): the teacher is unconditional (c_dim 0), use classes [0]"
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise TinyGANError(f"{where}: class indices {bad[:5]}{more} out of range {which} of the teacher; "
                           f"select the teacher's classes")


def resolve_latent(latent: str, teacher: "Teacher") -> str:
    """The latent recipe to use: ``latent`` itself, or for "auto" the teacher's own (``teacher.latent``)."""
    if latent == "auto":
        return teacher.latent
    if latent not in LATENTS:
        raise TinyGANError(f"latent recipe {latent!r} is unknown; expected auto or one of {', '.join(LATENTS)} "
                           f"(param sample.latent)")
    return latent


_QUANTIZE_CHUNK = 1 << 17  # floats per pass of ``quantize`` (512 KB: each chunk's passes stay in the core's cache)


def quantize(images: np.ndarray, out: np.ndarray | None = None, finite: bool = False) -> np.ndarray:
    """Map [-1, 1] floats to uint8: ``floor((x + 1) * 127.5 + 0.5)`` clipped to [0, 255].

    That is round-half-up of (x + 1) * 127.5, computed in float32: -1 -> 0, 0 -> 128 (127.5 rounds up),
    1 -> 255. (The official TinyGAN code multiplies by 256, an off-by-one we do not copy.) NaN maps to 0.
    ``out`` (uint8, the shape of ``images``) receives the result.
    ``finite``: raise ``ValueError`` if ``images`` holds NaN or inf.
    """
    images = np.asarray(images)
    if out is None:
        out = np.empty(images.shape, np.uint8)
    if out.flags.c_contiguous and images.flags.c_contiguous:  # flat views: the chunks read and write in place
        flat_x, flat_out = images.reshape(-1), out.reshape(-1)
        n = flat_x.size
        w = np.empty(min(n, _QUANTIZE_CHUNK), np.float32)  # one chunk's intermediate, reused
        # Usually every value is in [0, 256) (a tanh output): the cast alone then truncates to floor, and
        # NaN/inf cannot be there. Chunk by chunk (in cache); the first chunk outside sends it all the long way.
        for s in range(0, n, _QUANTIZE_CHUNK):
            v = _scaled(flat_x[s:s + _QUANTIZE_CHUNK], w[:min(n - s, _QUANTIZE_CHUNK)])
            if not (v.min() >= 0 and v.max() < 256):
                break
            np.copyto(flat_out[s:s + len(v)], v, casting="unsafe")
        else:
            return out
    v = _scaled(images, None)
    if finite and not np.isfinite(images).all():
        raise ValueError("quantize: the images hold NaN or inf")
    np.clip(v, np.float32(0.0), np.float32(255.0), out=v)
    v[np.isnan(v)] = 0.0
    np.copyto(out, v, casting="unsafe")
    return out


def _scaled(x: np.ndarray, work: np.ndarray | None) -> np.ndarray:
    """(x + 1) * 127.5 + 0.5 in float32, into ``work`` when given."""
    v = np.add(x, np.float32(1.0), dtype=np.float32, out=work)
    v *= np.float32(127.5)
    v += np.float32(0.5)
    return v


# ---- the Teacher interface ----------------------------------------------------------------------------

class Teacher:
    """Base class: validates inputs, builds the one-hot y, calls ``_native`` in chunks of ``max_batch``.

    Adapters set ``z_dim``, ``c_dim`` and ``latent`` from what the teacher declares, then call ``_probe``
    (one dry call), which sets ``resolution``. ``_native`` returns numpy float32 in the teacher's own layout
    (``nchw``), ``_forward`` the NHWC images."""

    z_dim, c_dim, resolution, latent, nchw = Z_DIM, N_CLASSES, RESOLUTION, "biggan", False

    def __init__(self, handle: str, max_batch: int = 256):
        self.handle = handle
        self.max_batch = max_batch

    @property
    def n_classes(self) -> int:
        """Valid class indices are 0..n_classes-1 (an unconditional teacher has the one class 0)."""
        return max(self.c_dim, 1)

    def __call__(self, z: np.ndarray, y: np.ndarray, truncation: float) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        y = np.asarray(y).reshape(-1)
        if z.ndim != 2 or z.shape[1] != self.z_dim or len(z) != len(y):
            raise ValueError(f"teacher {self.handle}: z must be [N, {self.z_dim}] and y [N]; "
                             f"got z {list(z.shape)}, y {list(y.shape)}")
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"teacher {self.handle}: class indices must be in [0, {self.n_classes})")
        out = []
        for i in range(0, len(z), self.max_batch):
            zb, yb = z[i:i + self.max_batch], y[i:i + self.max_batch]
            img = self._forward(zb, self._onehot(yb), np.float32(truncation))
            want = (len(zb), self.resolution, self.resolution, 3)
            if img.shape != want:
                raise TinyGANError(f"teacher {self.handle}: returned images of shape {list(img.shape)}, "
                                   f"expected {list(want)} (NHWC)")
            out.append(img)
        if not out:
            return np.zeros((0, self.resolution, self.resolution, 3), dtype=np.float32)
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _onehot(self, y: np.ndarray) -> np.ndarray:
        """float32 [n, c_dim] one-hot of the class indices (width 0 for an unconditional teacher)."""
        onehot = np.zeros((len(y), self.c_dim), dtype=np.float32)
        if self.c_dim:
            onehot[np.arange(len(y)), y] = 1.0
        return onehot

    def _native(self, z: np.ndarray, onehot: np.ndarray, truncation: np.float32) -> np.ndarray:
        """z float32 [n, z_dim], one-hot float32 [n, c_dim] -> float32 images in the teacher's layout."""
        raise NotImplementedError

    def _forward(self, z: np.ndarray, onehot: np.ndarray, truncation: np.float32) -> np.ndarray:
        x = self._native(z, onehot, truncation)
        return x.transpose(0, 2, 3, 1) if self.nchw and x.ndim == 4 else x

    def _probe(self, declared: int | None, contract: str) -> None:
        """One dry call with the declared z/y: the output must be one square RGB image of the declared side
        (when declared; else the call decides it) in about [-1, 1]; sets ``resolution``."""
        z, onehot = truncated_z(0, 0, 0, 0.5, self.z_dim)[None], self._onehot(np.zeros(1, np.int64))
        call = f"dry call (z [1, {self.z_dim}], y one-hot [1, {self.c_dim}], truncation 0.5)"
        try:
            x = self._native(z, onehot, np.float32(0.5))
        except Exception as e:  # noqa: BLE001 - any failure of the user's model
            raise TinyGANError(f"teacher {self.handle}: {call} failed ({_first_line(e)}); {contract}") from None
        got = list(x.shape)
        hwc = got[2:] + got[1:2] if self.nchw and x.ndim == 4 else got[1:]
        side = declared or (hwc[0] if len(hwc) == 3 else -1)
        want = [1, 3, side, side] if self.nchw else [1, side, side, 3]
        why = ("" if got == want else "not one image" if x.ndim != 4 or got[0] != 1
               else f"{hwc[2]} channels, not RGB" if hwc[2] != 3 else f"{hwc[0]}x{hwc[1]} is not square"
               if hwc[0] != hwc[1] else f"the resolution is {declared}")
        if why:
            raise TinyGANError(f"teacher {self.handle}: {call} returned {got}, expected {want} ({why}); {contract}")
        peak = float(np.nanmax(np.abs(x))) if x.size else 0.0
        if not np.isfinite(x).all() or peak > 1.5:
            raise TinyGANError(f"teacher {self.handle}: {call} returned values up to {peak:.3g} (or NaN/inf), "
                               f"expected images in [-1, 1]; scale the output to [-1, 1] (e.g. x / 127.5 - 1)")
        self.resolution = side

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.handle!r})"


def load_teacher(handle: str, kind: str = "tfhub", device: str | None = None) -> Teacher:
    """Load a teacher. ``kind`` is "tfhub" (SavedModel dir or TF-Hub URL) or "torchscript" (a .pt file).

    ``device`` applies to torchscript only (default: "cuda" when available, else "cpu"); TensorFlow places
    ops itself. Any problem with the handle raises TinyGANError with one line saying what and how to fix.
    """
    handle = str(handle)
    _check_kind(handle, kind)
    if kind == "tfhub":
        return TFHubTeacher(handle)
    return TorchScriptTeacher(handle, device=device)


def _check_kind(handle: str, kind: str) -> None:
    if kind not in KINDS:
        raise TinyGANError(f"teacher {handle}: unknown teacher kind {kind!r}; expected one of {', '.join(KINDS)}")


# ---- TF-Hub / SavedModel -------------------------------------------------------------------------------

def is_remote(handle: str) -> bool:
    return handle.startswith(("http://", "https://", "gs://"))


def tfhub_cache_location(handle: str) -> tuple[str, str]:
    """(cache dir in use, sha1 of the handle): tensorflow_hub caches a URL module in ``<cache>/<sha1>/``."""
    from tensorflow_hub import resolver

    cache_dir = resolver.tfhub_cache_dir(use_temp=True)
    return cache_dir, hashlib.sha1(handle.encode("utf8")).hexdigest()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


_TF_CONTRACT = ("expected signature 'default': z float32 [None, z_dim], optional y float32 [None, c_dim] (one-hot), "
                "truncation float32 [] -> {'default': float32 [None, R, R, 3] in [-1, 1]}")


def _declared_width(where: str, name: str, spec, limit: int) -> int:
    """The declared width k of a float32 [None, k] input; it cannot be guessed, so it must be declared."""
    import tensorflow as tf

    if spec.dtype != tf.float32:
        raise TinyGANError(f"{where} input '{name}' has dtype {spec.dtype.name}, expected float32")
    got = spec.shape.as_list() if spec.shape.rank is not None else None
    if got is None or len(got) != 2 or not isinstance(got[1], int) or not 1 <= got[1] <= limit:
        raise TinyGANError(f"{where} input '{name}' has shape {got}, expected [None, k] with the width k declared "
                           f"(1-{limit}; it cannot be guessed), e.g. tf.TensorSpec([None, 128], tf.float32)")
    return got[1]


def check_signature(handle: str, signatures) -> tuple[object, int, int, int | None]:
    """``(signatures["default"], z_dim, c_dim, declared side or None)`` of a module with the teacher
    signature (module docstring; no input ``y``: c_dim 0), else one TinyGANError line."""
    import tensorflow as tf

    where = f"teacher {handle}: signature 'default'"
    if "default" not in signatures:
        raise TinyGANError(f"teacher {handle}: has no signature 'default' (found {sorted(signatures)}); {_TF_CONTRACT}")
    fn = signatures["default"]
    _, inputs = fn.structured_input_signature
    for name in ("z", "truncation"):
        if name not in inputs:
            raise TinyGANError(f"{where} has no input '{name}' (inputs: {sorted(inputs)}); {_TF_CONTRACT}")
    extra = sorted(set(inputs) - {"z", "y", "truncation"})
    if extra:
        raise TinyGANError(f"{where} has unexpected inputs {extra}; expected only z, y (optional), truncation")
    t = inputs["truncation"]
    if t.dtype != tf.float32 or t.shape.rank != 0:
        raise TinyGANError(f"{where} input 'truncation' is {t.dtype.name} {t.shape}, expected a float32 scalar []")
    z_dim = _declared_width(where, "z", inputs["z"], MAX_Z_DIM)
    c_dim = _declared_width(where, "y", inputs["y"], MAX_C_DIM) if "y" in inputs else 0
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict) or "default" not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise TinyGANError(f"{where} has no output 'default' (outputs: {keys})")
    out = outputs["default"]
    if out.dtype != tf.float32:
        raise TinyGANError(f"{where} output 'default' has dtype {out.dtype.name}, expected float32")
    got = out.shape.as_list() if out.shape.rank is not None else [None] * 4
    if len(got) != 4 or got[3] not in (None, 3) or None not in got[1:3] and got[1] != got[2]:
        raise TinyGANError(f"{where} output 'default' has shape {got}, expected [None, R, R, 3] (square RGB, NHWC)")
    return fn, z_dim, c_dim, got[1] if got[1] is not None else got[2]


def resolve_tfhub(handle: str) -> str:
    """The local module dir of a TF-Hub handle: a URL is fetched (or found in the TF-Hub cache), a local path
    must exist. Raises the one-line "cannot fetch" / "does not exist" TinyGANError otherwise."""
    if not is_remote(handle):
        if not Path(handle).exists():
            raise TinyGANError(f"teacher {handle}: local SavedModel dir does not exist; "
                               "point the teacher handle at a SavedModel dir or a TF-Hub URL")
        return handle
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as e:  # noqa: BLE001 - any fetch failure (offline, HTTP error, bad URL)
        cache_dir, sha1 = tfhub_cache_location(handle)
        where = (f"TFHUB_CACHE_DIR={cache_dir}" if os.environ.get("TFHUB_CACHE_DIR")
                 else f"TFHUB_CACHE_DIR is unset, so the default {cache_dir}")
        raise TinyGANError(
            f"teacher {handle}: cannot fetch the TF-Hub module ({_first_line(e)}); either set the teacher "
            f"handle to a local SavedModel dir, or pre-place the module (its .tar.gz from "
            f"<URL>?tf-hub-format=compressed, extracted) in {os.path.join(cache_dir, sha1)}/ "
            f"({where}; {sha1} = sha1 of the URL)"
        ) from None


class TFHubTeacher(Teacher):
    """A SavedModel / TF-Hub module with the teacher signature ``default`` (module docstring)."""

    def __init__(self, handle: str, max_batch: int = 256):
        super().__init__(handle, max_batch)
        import tensorflow_hub as hub

        path = resolve_tfhub(handle)
        try:
            self._module = hub.load(path)
        except Exception as e:  # noqa: BLE001
            raise TinyGANError(f"teacher {handle}: cannot load as a SavedModel / TF-Hub module "
                               f"({_first_line(e)}); is it a SavedModel dir (saved_model.pb)?") from None
        self._fn, self.z_dim, self.c_dim, declared = check_signature(handle, self._module.signatures)
        self._probe(declared, _TF_CONTRACT)

    def _native(self, z, onehot, truncation):
        import tensorflow as tf

        y = {"y": tf.constant(onehot)} if self.c_dim else {}
        out = self._fn(z=tf.constant(z), truncation=tf.constant(truncation), **y)
        return np.asarray(out["default"].numpy(), dtype=np.float32)


# ---- TorchScript ---------------------------------------------------------------------------------------

_TS_CONTRACT = ("expected forward(z [N, z_dim], c [N, c_dim] one-hot, truncation 0-d) -> [N, 3, R, R] in [-1, 1] "
                "and int attributes z_dim, c_dim, img_resolution (see tinygan/teacher.py)")
_TS_ATTRS = {"z_dim": MAX_Z_DIM, "c_dim": MAX_C_DIM, "img_resolution": MAX_RESOLUTION}


def _check_torchscript_file(handle: str) -> None:
    if not Path(handle).is_file():
        raise TinyGANError(f"teacher {handle}: TorchScript file does not exist; "
                           "point the teacher handle at a file saved with torch.jit.save")


def _declared_attrs(handle: str, module) -> tuple[int, int, int] | None:
    """(z_dim, c_dim, img_resolution) the module declares as attributes, or None when it declares none."""
    values = {name: getattr(module, name, None) for name in _TS_ATTRS}
    if all(v is None for v in values.values()):
        return None
    low = {"z_dim": 1, "c_dim": 0, "img_resolution": 1}
    if any(type(v) is not int or not low[k] <= v <= _TS_ATTRS[k] for k, v in values.items()):
        raise TinyGANError(f"teacher {handle}: attributes {values} must all be integers (z_dim 1-{MAX_Z_DIM}, "
                           f"c_dim 0-{MAX_C_DIM}, img_resolution 1-{MAX_RESOLUTION}); set them on the module")
    return values["z_dim"], values["c_dim"], values["img_resolution"]


class TorchScriptTeacher(Teacher):
    """A TorchScript module: forward(z [N, z_dim], c one-hot [N, c_dim], truncation 0-d) -> [N, 3, R, R].

    Its shape comes from its attributes (latent "stylegan"); a module without them is taken to have
    BigGAN-deep-128's shape (128, 1000, 128; latent "biggan"), which the dry call then checks."""

    nchw = True

    def __init__(self, handle: str, device: str | None = None, max_batch: int = 256):
        super().__init__(handle, max_batch)
        import torch

        from tinygan import runtime

        _check_torchscript_file(handle)
        self.device = runtime.device(device or "auto", "teacher device")
        try:
            self._module = torch.jit.load(handle, map_location=self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise TinyGANError(f"teacher {handle}: cannot load as TorchScript ({_first_line(e)}); "
                               "save the teacher with torch.jit.save(torch.jit.script(model), path)") from None
        declared = _declared_attrs(handle, self._module)
        if declared is not None:
            self.z_dim, self.c_dim, side = declared
            self.latent = "stylegan"
            self._probe(side, _TS_CONTRACT)
        else:  # today's attribute-less teachers: BigGAN-deep-128's shape
            self._probe(RESOLUTION, "a TorchScript teacher without attributes z_dim, c_dim, img_resolution must "
                                    "have BigGAN-deep-128's shape (z 128, 1000 classes, 128x128); " + _TS_CONTRACT)

    def _native(self, z, onehot, truncation):
        import torch

        with torch.inference_mode():
            out = self._module(torch.from_numpy(z).to(self.device), torch.from_numpy(onehot).to(self.device),
                               torch.tensor(float(truncation), dtype=torch.float32, device=self.device))
        if not isinstance(out, torch.Tensor):
            raise TinyGANError(f"teacher {self.handle}: forward returned a {type(out).__name__}, expected a tensor "
                               f"[N, 3, {self.resolution}, {self.resolution}]")
        return out.float().cpu().numpy()


# ---- content hash: what the teacher *is*, so replacing it at the same path is noticed -----------------------

def content_hash(handle: str, kind: str = "tfhub") -> str:
    """sha256 (hex) of the teacher's content, without loading it.

    A TorchScript file: its sha256. A SavedModel dir: a hash over every file in it (sorted relative POSIX
    paths, each with its sha256; symlinks must stay inside the dir). A TF-Hub URL: that hash of the module
    dir ``tensorflow_hub.resolve`` gives (offline: the module pre-placed in the TF-Hub cache). Files are
    read in 1 MiB chunks. A handle that does not exist or cannot be fetched raises TinyGANError.
    """
    handle = str(handle)
    _check_kind(handle, kind)
    if kind == "torchscript":
        _check_torchscript_file(handle)
        return _file_sha256(handle, Path(handle))
    return _tree_sha256(handle, Path(resolve_tfhub(handle)))


def _file_sha256(handle: str, path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as e:
        raise TinyGANError(f"teacher {handle}: cannot read {path} ({e.strerror}); check its permissions") from None


def _tree_sha256(handle: str, root: Path) -> str:
    """Hash of a directory tree: one line per entry (relative POSIX path, then the file's sha256 or, for a
    symlink, where it points inside the tree), sorted, hashed."""
    root = root.resolve()
    if not root.is_dir():
        raise TinyGANError(f"teacher {handle}: {root} is not a directory; point the teacher handle at a "
                           "SavedModel dir (saved_model.pb) or a TF-Hub URL")

    def fail(err: OSError):
        raise TinyGANError(f"teacher {handle}: cannot list {err.filename} ({err.strerror}); check its permissions")

    lines = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):  # does not follow symlinked dirs
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                lines.append(f"{rel}\0link\0{_link_target(handle, root, path, rel)}")
            elif name in filenames:
                if not path.is_file():
                    raise TinyGANError(f"teacher {handle}: {rel} is not a regular file; remove it from the dir")
                lines.append(f"{rel}\0file\0{_file_sha256(handle, path)}")
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _link_target(handle: str, root: Path, link: Path, rel: str) -> str:
    """Where a symlink in the teacher dir points, relative to the dir; it must exist and stay inside."""
    target = link.resolve()
    if not target.is_relative_to(root) or not target.exists():
        raise TinyGANError(f"teacher {handle}: {rel} is a symlink to {target}, which is missing or outside the "
                           f"teacher dir; replace the link with the file itself")
    return target.relative_to(root).as_posix()


# ---- description: what the teacher says about itself ----------------------------------------------------

def describe(handle: str, kind: str = "tfhub") -> dict:
    """The teacher's description ``{"name", "g_params", "g_macs", "source"}`` (see the module docstring):
    a known handle's published figures, else the ``DESCRIPTION`` the teacher carries, else "unknown".
    Reads no weights and fetches nothing; a malformed description raises one TinyGANError line."""
    handle = str(handle)
    _check_kind(handle, kind)
    if handle.rstrip("/") in PUBLISHED:
        return dict(PUBLISHED[handle.rstrip("/")])
    text = None if is_remote(handle) else _read_description(handle, kind)
    if text is None:
        return {"name": handle, "g_params": None, "g_macs": None, "source": "unknown teacher, n/a"}
    return _parse_description(handle, text)


def _read_description(handle: str, kind: str) -> str | None:
    """The text of the teacher's own ``DESCRIPTION``, or None when it carries none."""
    try:
        if kind == "tfhub":
            path = Path(handle) / DESCRIPTION
            return path.read_text(encoding="utf-8") if path.is_file() else None
        if not zipfile.is_zipfile(handle):  # not a TorchScript archive: loading will say so
            return None
        with zipfile.ZipFile(handle) as archive:
            names = [n for n in archive.namelist() if n.split("/")[1:] == ["extra", DESCRIPTION]]
            return archive.read(names[0]).decode("utf-8") if names else None
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise TinyGANError(f"teacher {handle}: cannot read its {DESCRIPTION} ({_first_line(e)})") from None


def _parse_description(handle: str, text: str) -> dict:
    want = ('{"name": str, "g_params": int or null, "g_macs": int or null, "source": str}')
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    ok = (isinstance(info, dict) and set(info) == {"name", "g_params", "g_macs", "source"}
          and all(isinstance(info[k], str) and info[k].strip() for k in ("name", "source"))
          and all(info[k] is None or (type(info[k]) is int and info[k] > 0) for k in ("g_params", "g_macs")))
    if not ok:
        raise TinyGANError(f"teacher {handle}: its {DESCRIPTION} is not a description; it must be exactly {want}")
    return info
