"""Teachers: class-conditional generators with BigGAN-deep-128's interface, behind one small callable.

A Teacher is called as ``teacher(z, y, truncation) -> images`` with

- ``z``: float32 [N, 128], the noise actually fed (already scaled by the truncation, see ``truncated_z``);
- ``y``: int64 [N], class indices in [0, 1000) (the one-hot vector is built inside the adapter);
- ``truncation``: float, passed through to the model;
- returns float32 [N, 128, 128, 3] (NHWC) in [-1, 1].

It has the attributes ``handle`` (where it was loaded from), ``z_dim`` (128), ``n_classes`` (1000) and
``resolution`` (128). Two adapters:

- ``"tfhub"``: a TF2 SavedModel directory or a TF-Hub handle (a URL such as
  https://tfhub.dev/deepmind/biggan-deep-128/1, a TF1 Hub module), loaded with ``tensorflow_hub.load``.
  Its signature ``"default"`` must take ``z`` float32 [None, 128], ``y`` float32 [None, 1000] (one-hot) and
  ``truncation`` float32 [] and return a dict with key ``"default"``: float32 [None, 128, 128, 3] in [-1, 1].
  This is exactly BigGAN-deep-128's TF-Hub interface.
- ``"torchscript"``: a file saved with ``torch.jit.save``. Contract of its ``forward``::

      forward(z: Tensor[N, 128] float32, y: Tensor[N, 1000] float32 one-hot, truncation: Tensor[] float32)
          -> Tensor[N, 3, 128, 128] float in [-1, 1]          # NCHW, the PyTorch convention

  The adapter converts the output to NHWC float32 numpy. A converted BigGAN (e.g. huggingface
  pytorch-pretrained-BigGAN, wrapped to take the one-hot y and a tensor truncation) or a conditional
  StyleGAN2-ADA generator (wrapped: z -> mapping(z, c, truncation_psi) -> synthesis, resized to 128) can be
  distilled this way. The file is checked on load with a one-sample dry call.

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
DESCRIPTION = "tinygan_teacher.json"  # a teacher's description of itself (see describe)
# Teachers known by their handle. BigGAN-deep-128 as published in the TinyGAN paper (Chang & Lu 2020,
# Table 1): not measured here.
PUBLISHED = {
    "https://tfhub.dev/deepmind/biggan-deep-128/1": {
        "name": "BigGAN-deep-128", "g_params": 50_400_000, "g_macs": 8_320_000_000,
        "source": "published (Chang & Lu 2020, Table 1)"},
}


# ---- noise and quantisation ----------------------------------------------------------------------------

def truncated_z(seed: int, cls: int, idx: int, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """The teacher noise of sample ``idx`` of class ``cls``: ``truncation * truncated_normal(dim)``.

    Standard-normal values outside [-2, 2] are redrawn (as in the official TinyGAN code), so
    ``|z| <= 2 * truncation``. The draw uses its own generator seeded with ``SeedSequence([seed, cls, idx])``,
    so it depends only on (seed, cls, idx, truncation) — never on batch size, worker count or order.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(cls), int(idx)])))
    return np.float32(truncation) * truncated_normal(rng, dim)


def truncated_normal(rng: np.random.Generator, dim: int = Z_DIM) -> np.ndarray:
    """Standard normal float32 [dim] with values outside [-2, 2] redrawn."""
    z = rng.standard_normal(dim, dtype=np.float32)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
        bad = np.abs(z) > 2.0
    return z


def truncated_z_batch(seed: int, classes, idxs, truncation: float, dim: int = Z_DIM) -> np.ndarray:
    """``truncated_z`` for each (class, index) pair: float32 [N, dim]; row i equals
    ``truncated_z(seed, classes[i], idxs[i], truncation)`` exactly."""
    classes, idxs = np.asarray(classes).reshape(-1), np.asarray(idxs).reshape(-1)
    if len(classes) != len(idxs):
        raise ValueError(f"truncated_z_batch: {len(classes)} classes but {len(idxs)} indices")
    out = np.empty((len(classes), dim), dtype=np.float32)
    for i, (c, k) in enumerate(zip(classes.tolist(), idxs.tolist())):
        out[i] = truncated_z(seed, c, k, truncation, dim)
    return out


def quantize(images: np.ndarray) -> np.ndarray:
    """Map [-1, 1] floats to uint8: ``floor((x + 1) * 127.5 + 0.5)`` clipped to [0, 255].

    That is round-half-up of (x + 1) * 127.5, computed in float32: -1 -> 0, 0 -> 128 (127.5 rounds up),
    1 -> 255. (The official TinyGAN code multiplies by 256, an off-by-one we do not copy.) NaN maps to 0.
    """
    v = np.add(images, np.float32(1.0), dtype=np.float32)  # a new float32 array, then in place
    v *= np.float32(127.5)
    v += np.float32(0.5)
    np.floor(v, out=v)
    np.fmax(v, np.float32(0.0), out=v)  # fmax also maps NaN to 0
    np.minimum(v, np.float32(255.0), out=v)
    return v.astype(np.uint8)


# ---- the Teacher interface ----------------------------------------------------------------------------

class Teacher:
    """Base class: validates inputs, builds the one-hot y, calls ``_forward`` in chunks of ``max_batch``."""

    z_dim = Z_DIM
    n_classes = N_CLASSES
    resolution = RESOLUTION

    def __init__(self, handle: str, max_batch: int = 256):
        self.handle = handle
        self.max_batch = max_batch

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
            onehot = np.zeros((len(yb), self.n_classes), dtype=np.float32)
            onehot[np.arange(len(yb)), yb] = 1.0
            img = self._forward(zb, onehot, np.float32(truncation))
            want = (len(zb), self.resolution, self.resolution, 3)
            if img.shape != want:
                raise TinyGANError(f"teacher {self.handle}: returned images of shape {list(img.shape)}, "
                                   f"expected {list(want)} (NHWC)")
            out.append(img)
        if not out:
            return np.zeros((0, self.resolution, self.resolution, 3), dtype=np.float32)
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _forward(self, z: np.ndarray, onehot: np.ndarray, truncation: np.float32) -> np.ndarray:
        """z float32 [n, 128], one-hot float32 [n, 1000] -> float32 NHWC [n, 128, 128, 3]."""
        raise NotImplementedError

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

_EXPECTED_INPUTS = {"z": [None, Z_DIM], "y": [None, N_CLASSES], "truncation": []}
_EXPECTED_OUTPUT = [None, RESOLUTION, RESOLUTION, 3]


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


def check_signature(handle: str, signatures) -> object:
    """Return ``signatures["default"]`` if it matches BigGAN-deep-128's interface, else raise TinyGANError."""
    import tensorflow as tf

    where = f"teacher {handle}: signature 'default'"
    if "default" not in signatures:
        raise TinyGANError(f"teacher {handle}: has no signature 'default' (found {sorted(signatures)}); "
                           "expected BigGAN-deep-128's interface: z [None,128], y [None,1000], truncation []")
    fn = signatures["default"]
    _, inputs = fn.structured_input_signature
    for name, shape in _EXPECTED_INPUTS.items():
        if name not in inputs:
            raise TinyGANError(f"{where} has no input '{name}' (inputs: {sorted(inputs)}); "
                               f"expected z [None, 128], y [None, 1000], truncation []")
        spec = inputs[name]
        if spec.dtype != tf.float32:
            raise TinyGANError(f"{where} input '{name}' has dtype {spec.dtype.name}, expected float32")
        got = spec.shape.as_list() if spec.shape.rank is not None else None
        if got != shape:
            raise TinyGANError(f"{where} input '{name}' has shape {got}, expected {shape}")
    extra = sorted(set(inputs) - set(_EXPECTED_INPUTS))
    if extra:
        raise TinyGANError(f"{where} has unexpected inputs {extra}; expected only z, y, truncation")
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict) or "default" not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise TinyGANError(f"{where} has no output 'default' (outputs: {keys})")
    out = outputs["default"]
    if out.dtype != tf.float32:
        raise TinyGANError(f"{where} output 'default' has dtype {out.dtype.name}, expected float32")
    got = out.shape.as_list() if out.shape.rank is not None else None
    if got is not None and [d if i else None for i, d in enumerate(got)] != _EXPECTED_OUTPUT:
        raise TinyGANError(f"{where} output 'default' has shape {got}, expected {_EXPECTED_OUTPUT}")
    return fn


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
    """A SavedModel / TF-Hub module with BigGAN-deep-128's ``default`` signature."""

    def __init__(self, handle: str, max_batch: int = 256):
        super().__init__(handle, max_batch)
        import tensorflow_hub as hub

        path = resolve_tfhub(handle)
        try:
            self._module = hub.load(path)
        except Exception as e:  # noqa: BLE001
            raise TinyGANError(f"teacher {handle}: cannot load as a SavedModel / TF-Hub module "
                               f"({_first_line(e)}); is it a SavedModel dir (saved_model.pb)?") from None
        self._fn = check_signature(handle, self._module.signatures)

    def _forward(self, z, onehot, truncation):
        import tensorflow as tf

        out = self._fn(z=tf.constant(z), y=tf.constant(onehot), truncation=tf.constant(truncation))
        return np.asarray(out["default"].numpy(), dtype=np.float32)


# ---- TorchScript ---------------------------------------------------------------------------------------

def _check_torchscript_file(handle: str) -> None:
    if not Path(handle).is_file():
        raise TinyGANError(f"teacher {handle}: TorchScript file does not exist; "
                           "point the teacher handle at a file saved with torch.jit.save")


class TorchScriptTeacher(Teacher):
    """A TorchScript module: forward(z [N,128], y one-hot [N,1000], truncation 0-d) -> [N,3,128,128]."""

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
        # Dry call with one sample: the output must be [1, 3, 128, 128].
        z = truncated_z(0, 0, 0, 0.5)[None]
        onehot = np.zeros((1, N_CLASSES), dtype=np.float32)
        onehot[0, 0] = 1.0
        try:
            out = self._run(z, onehot, np.float32(0.5))
        except Exception as e:  # noqa: BLE001
            raise TinyGANError(f"teacher {handle}: dry call forward(z [1,128], y one-hot [1,1000], truncation 0-d) "
                               f"failed ({_first_line(e)})") from None
        want = [1, 3, RESOLUTION, RESOLUTION]
        if not isinstance(out, torch.Tensor) or list(out.shape) != want:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TinyGANError(f"teacher {handle}: forward returned {got}, expected a tensor of shape {want} "
                               "(N, C, H, W in [-1, 1]; see tinygan/teacher.py)")

    def _run(self, z, onehot, truncation):
        import torch

        with torch.inference_mode():
            return self._module(torch.from_numpy(z).to(self.device), torch.from_numpy(onehot).to(self.device),
                                torch.tensor(float(truncation), dtype=torch.float32, device=self.device))

    def _forward(self, z, onehot, truncation):
        out = self._run(z, onehot, truncation)
        if out.ndim != 4 or out.shape[1] != 3:
            raise TinyGANError(f"teacher {self.handle}: forward returned shape {list(out.shape)}, "
                               f"expected [N, 3, {RESOLUTION}, {RESOLUTION}]")
        return out.permute(0, 2, 3, 1).float().cpu().numpy()


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
