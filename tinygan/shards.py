"""The shard format shared by real ImageNet images and teacher samples, its checker and a torch reader.

A shard directory holds ``<prefix>-00000.h5``, ``<prefix>-00001.h5``, ... (each with a sidecar
``<shard>.sha256`` in ``sha256sum`` format) and ``manifest.json``:

    real shards     images uint8 [N,R,R,3], y int64 [N], names utf-8 str [N] (source file name)
    teacher shards  z float32 [N,Z],        y int64 [N], images uint8 [N,R,R,3]

(Z is the manifest's ``z_dim``, class labels are 0..max(c_dim, 1)-1 with the manifest's ``c_dim``, the
teacher's shape: see ``tinygan.teacher``; a manifest without them, as written before teachers of any shape,
reads as BigGAN-deep-128's 128 / 1000.)

Shard attrs: ``kind`` ("real" | "teacher"), ``fingerprint`` (hash of the arguments that produced the
shard; a rerun reuses a shard whose fingerprint and checksum still match, see ``ShardRun``),
``format_version``, ``n``.
Datasets are stored contiguously and uncompressed (see ``tinygan.io.write_h5``), so row ``i`` of a
dataset is one byte range of the file: the reader memory-maps each shard (read-only, lazily, per
process) and gathers random rows with numpy indexing, as fast as a sequential h5py read.

Manifest: ``{kind, fingerprint, n, resolution, classes, class_counts {str(idx): n}, shards [{file, n,
sha256, bytes}], format_version, ...extra}`` (teacher extras: ``z_dim``, ``c_dim``, ``latent``, ...).

Randomness of ``epoch_batches`` (training's batch plan): each epoch is a uniformly random permutation of all
samples drawn from ``numpy.random.default_rng([seed, epoch])``, cut into consecutive batches (full shuffle, no
block or buffer shuffling: random rows cost about as much as sequential ones with this layout).
"""
from __future__ import annotations

import collections
import hashlib
import json
import mmap
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from tinygan.classes import N_CLASSES, name_of
from tinygan.teacher import MAX_C_DIM, MAX_RESOLUTION, MAX_Z_DIM, Z_DIM
from tinygan.errors import TinyGANError
from tinygan.io import sha256_file, write_h5, write_json, write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_STR = "str"  # marker for variable-length utf-8 string datasets
_REQUIRED_KEYS = ("kind", "fingerprint", "n", "resolution", "classes", "class_counts", "shards")
MAX_N = 10 ** 9  # bounds on sizes read from a manifest: anything larger is corrupt, not a dataset
MAX_BYTES = 1 << 50
_SHA256 = re.compile(r"[0-9a-f]{64}")


def layout(kind: str, resolution: int, z_dim: int = Z_DIM) -> dict[str, tuple]:
    """Dataset name -> (dtype, per-row shape) of a shard of ``kind`` at ``resolution`` (teacher: noise width
    ``z_dim``)."""
    image = (np.dtype(np.uint8), (resolution, resolution, 3))
    if kind == "real":
        return {"images": image, "y": (np.dtype(np.int64), ()), "names": (_STR, ())}
    if kind == "teacher":
        return {"z": (np.dtype(np.float32), (z_dim,)), "y": (np.dtype(np.int64), ()), "images": image}
    raise TinyGANError(f"unknown shard kind {kind!r}: expected 'real' or 'teacher'")


def manifest_layout(m: Mapping) -> dict[str, tuple]:
    """``layout`` of the shards a (checked) manifest lists: its kind, resolution and z_dim (default 128)."""
    return layout(m["kind"], int(m["resolution"]), int(m.get("z_dim", Z_DIM)))


def manifest_latent(m: Mapping) -> tuple[str, int]:
    """(latent recipe, z_dim) of the noise a teacher manifest's samples were drawn with (``teacher.draw_z``);
    manifests from before the teacher declared its shape read as ("biggan", 128)."""
    return str(m.get("latent", "biggan")), int(m.get("z_dim", Z_DIM))


def own_class_names(m: Mapping) -> dict[int, str] | None:
    """``class_names`` of a (real) manifest of data other than ImageNet (class folders: the folder names;
    unconditional: none); None for ImageNet data, whose classes the ImageNet table names (and wnids)."""
    return None if m.get("layout", "imagenet") == "imagenet" else class_names(m)


def class_count(m: Mapping) -> int:
    """Labels in a (checked) manifest's shards lie in 0..class_count-1: max(c_dim, 1) where it records the
    teacher's ``c_dim`` (an unconditional teacher's samples are all class 0), else the 1000 ImageNet classes."""
    return max(int(m["c_dim"]), 1) if "c_dim" in m else N_CLASSES


def default_fields(kind: str) -> tuple[str, ...]:
    """Fields a reader returns by default: (z, y, images) for teacher, (images, y) for real."""
    return ("z", "y", "images") if kind == "teacher" else ("images", "y")


def shard_name(prefix: str, i: int) -> str:
    """File name of shard ``i``: ``<prefix>-00000.h5``."""
    return f"{prefix}-{i:05d}.h5"


def fingerprint(obj) -> str:
    """sha256 (hex) of a JSON-serialisable description of the producing arguments."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- checksums: verified once, remembered per file state ------------------------------------------------------
#
# Hashing every shard at every train / evaluate start would read the whole dataset (58 GB at paper scale) each
# time. A shard's sha256 is therefore remembered for the exact state of the file it was computed on: its stat key
# (device, inode, size, mtime_ns, ctime_ns). Any write, replacement, truncation, ``touch`` or copy changes the key
# (ctime cannot be set back from user space), so the file is hashed again. Two levels: a dict in this process,
# and a *verify record* on disk, one small JSON per shard directory in ``record_dir()`` (outside the repository
# and every DVC output, so it never changes an artifact). Records are written atomically (temp file + rename:
# concurrent DDP ranks read the old or the new one, and the last writer wins; a lost entry costs one re-hash),
# read only up to RECORD_MAX_BYTES, and at most RECORD_MAX_FILES are kept (oldest pruned). ``rehash=True``,
# ``tinygan verify --rehash`` or TINYGAN_REHASH=1 ignore both levels and re-hash everything.

RECORD_ENV, REHASH_ENV = "TINYGAN_CACHE_DIR", "TINYGAN_REHASH"
RECORD_VERSION, RECORD_MAX_BYTES, RECORD_MAX_FILES = 1, 32 << 20, 256
_HASHES: dict[tuple, str] = {}


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns))


def _sha256_cached(path: Path, st: os.stat_result | None = None, rehash: bool = False) -> str:
    """sha256 of ``path``, hashed once per file state in this process (``rehash``: hash anyway)."""
    st = st or path.stat()
    key = (str(path.resolve()),) + _stat_key(st)
    if rehash or key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def rehash_requested() -> bool:
    """Whether the environment asks to ignore remembered checksums (TINYGAN_REHASH=1/true/yes)."""
    return os.environ.get(REHASH_ENV, "").strip().lower() in ("1", "true", "yes")


def record_dir() -> Path:
    """Where verify records live: $TINYGAN_CACHE_DIR, else $XDG_CACHE_HOME/tinygan/verified, else
    ~/.cache/tinygan/verified."""
    if os.environ.get(RECORD_ENV):
        return Path(os.environ[RECORD_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinygan" / "verified"


def _record_path(directory: Path) -> Path:
    digest = hashlib.sha256(str(directory.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return record_dir() / f"{digest[:32]}.json"


def read_record(directory: Path) -> dict[str, tuple[tuple, str]]:
    """file name -> (stat key, sha256) of the shards of ``directory`` verified before; {} when there is no
    usable record (missing, too large, malformed or of another directory: entries that do not parse are
    dropped, so a damaged record only costs re-hashing)."""
    path = _record_path(directory)
    try:
        with open(path, "rb") as f:
            raw = f.read(RECORD_MAX_BYTES + 1)
        rec = json.loads(raw) if len(raw) <= RECORD_MAX_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION or \
            rec.get("directory") != str(directory.resolve()) or not isinstance(rec.get("shards"), dict):
        return {}
    out = {}
    for name, e in rec["shards"].items():
        ok = isinstance(e, dict) and isinstance(e.get("sha256"), str) and _SHA256.fullmatch(e["sha256"])
        key = e.get("stat") if ok else None
        if isinstance(key, list) and len(key) == 5 and all(type(v) is int for v in key):
            out[name] = (tuple(key), e["sha256"])
    return out


def write_record(directory: Path, entries: Mapping[str, tuple[tuple, str]]) -> None:
    """Replace the verify record of ``directory`` by ``entries`` (file name -> (stat key, sha256)), atomically;
    prune old records. A cache dir that cannot be written is warned about, not fatal (the next open re-hashes)."""
    import tempfile
    import warnings

    path = _record_path(directory)
    rec = {"version": RECORD_VERSION, "directory": str(directory.resolve()),
           "shards": {n: {"stat": list(k), "sha256": h} for n, (k, h) in sorted(entries.items())}}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rec, f, sort_keys=True)
        os.replace(tmp, path)
        tmp = None
        _prune_records(path.parent)
    except OSError as e:
        warnings.warn(f"cannot write the shard verify record {path} ({e.strerror or e}); shards will be "
                      f"re-hashed at the next open (set {RECORD_ENV} to a writable directory)", stacklevel=3)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _prune_records(folder: Path) -> None:
    """Keep the RECORD_MAX_FILES newest records; drop temp files older than an hour (a killed writer's)."""
    import time

    found = []
    for p in folder.iterdir():
        try:
            found.append((p.stat().st_mtime, p))
        except OSError:  # removed meanwhile by another process
            continue
    found.sort()
    records = [p for _, p in found if p.suffix == ".json"]
    stale = [p for t, p in found if p.name.endswith(".tmp") and t < time.time() - 3600]
    for p in stale + records[:max(0, len(records) - RECORD_MAX_FILES)]:
        p.unlink(missing_ok=True)


# ---- writing --------------------------------------------------------------------------------------------

def write_shard(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping) -> dict:
    """Write one shard atomically (plus its ``.sha256`` sidecar); return ``{file, n, sha256, bytes}``.

    ``attrs`` must hold ``kind`` and ``fingerprint``; ``format_version`` and ``n`` are added. The arrays
    are checked against the layout of ``kind`` (y is cast to int64 and z to float32).
    """
    path = Path(path)
    kind = attrs["kind"]
    if "fingerprint" not in attrs:
        raise ValueError("write_shard: attrs must include 'fingerprint'")
    arrays = dict(arrays)
    n = len(arrays["y"])
    resolution = int(arrays["images"].shape[1]) if arrays["images"].ndim == 4 else -1
    z = np.asarray(arrays.get("z", np.zeros((0, 0))))
    rows = layout(kind, resolution, int(z.shape[1]) if z.ndim == 2 else -1)
    for name, (dtype, row) in rows.items():
        if name not in arrays:
            raise ValueError(f"write_shard {path}: missing array {name!r}")
        arr = np.asarray(arrays[name])
        if name in ("y", "z"):
            arr = arr.astype(dtype, copy=False)
        if dtype is not _STR and arr.dtype != dtype:
            raise ValueError(f"write_shard {path}: {name} has dtype {arr.dtype}, expected {dtype}")
        if arr.shape != (n,) + row:
            raise ValueError(f"write_shard {path}: {name} has shape {arr.shape}, expected {(n,) + row}")
        arrays[name] = arr
    extra = set(arrays) - set(rows)
    if extra:
        raise ValueError(f"write_shard {path}: unexpected arrays {sorted(extra)}")
    sha = write_h5(path, arrays, {**attrs, "format_version": FORMAT_VERSION, "n": n})
    write_text(_sidecar(path), f"{sha}  {path.name}\n")
    return {"file": path.name, "n": n, "sha256": sha, "bytes": path.stat().st_size}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def existing_shard(path: str | os.PathLike, fingerprint: str) -> dict | None:
    """The ``{file, n, sha256, bytes}`` entry of a finished shard that can be reused, else None.

    Reusable means: the shard and its ``.sha256`` sidecar exist, the file's sha256 matches the sidecar,
    and its ``fingerprint`` attr equals ``fingerprint``. Anything else (missing, partial, stale,
    unreadable) returns None so the caller rewrites the shard.
    """
    import h5py

    path = Path(path)
    side = _sidecar(path)
    if not path.is_file() or not side.is_file():
        return None
    try:
        recorded = side.read_text(encoding="utf-8").split()[0]
        st = path.stat()
        sha = _sha256_cached(path, st)
        if sha != recorded:
            return None
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != fingerprint:
                return None
            n = int(f["y"].shape[0])
    except Exception:  # noqa: BLE001 - any problem means "rebuild this shard"
        return None
    return {"file": path.name, "n": n, "sha256": sha, "bytes": st.st_size}


def write_manifest(out_dir: str | os.PathLike, kind: str, shards: Sequence[Mapping],
                   class_counts: Mapping[int, int], extra: Mapping | None = None, *,
                   fingerprint: str | None = None, resolution: int | None = None) -> dict:
    """Write ``<out_dir>/manifest.json`` (atomically) and return it.

    ``shards`` are the dicts returned by ``write_shard`` / ``existing_shard`` in order. ``fingerprint``
    and ``resolution`` default to ``extra`` entries of that name, else to the first shard's attr/shape.
    ``class_counts`` maps class index -> number of samples (include zeros for selected but empty classes).
    """
    import h5py

    out_dir = Path(out_dir)
    extra = dict(extra or {})
    fingerprint = fingerprint if fingerprint is not None else extra.pop("fingerprint", None)
    resolution = resolution if resolution is not None else extra.pop("resolution", None)
    if (fingerprint is None or resolution is None) and shards:
        with h5py.File(out_dir / shards[0]["file"], "r") as f:
            fingerprint = fingerprint if fingerprint is not None else str(f.attrs.get("fingerprint", ""))
            resolution = resolution if resolution is not None else int(f["images"].shape[1])
    if resolution is None:
        raise ValueError("write_manifest: resolution is unknown (no shards); pass resolution=")
    clash = set(extra) & (set(_REQUIRED_KEYS) | {"format_version"})
    if clash:
        raise ValueError(f"write_manifest: extra keys {sorted(clash)} clash with manifest keys")
    counts = {int(c): int(k) for c, k in class_counts.items()}
    entries = [{k: (int(s[k]) if k in ("n", "bytes") else str(s[k])) for k in ("file", "n", "sha256", "bytes")
                if k in s} for s in shards]
    n = sum(e["n"] for e in entries)
    if sum(counts.values()) != n:
        raise ValueError(f"write_manifest: class_counts sum to {sum(counts.values())} but shards hold {n}")
    manifest = {
        "kind": kind, "fingerprint": fingerprint or "", "n": n, "resolution": int(resolution),
        "classes": sorted(counts), "class_counts": {str(c): counts[c] for c in sorted(counts)},
        "shards": entries, "format_version": FORMAT_VERSION, **extra,
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


# ---- the resumable-shard protocol of prepare and sample -------------------------------------------------------

def shard_index(prefix: str, name: str) -> int | None:
    """Index k of ``<prefix>-0000k.h5``, its ``.sha256`` sidecar, or their atomic-write temp files
    (``.<prefix>-0000k.h5[.sha256].<random>.tmp``); None for any other name."""
    m = re.fullmatch(rf"(\.?){re.escape(prefix)}-(\d{{5,}})\.h5(\.sha256)?(\.[A-Za-z0-9_]+\.tmp)?", name)
    if m is None or bool(m.group(1)) != bool(m.group(4)):
        return None
    return int(m.group(2))


class ShardRun:
    """One run's shards ``<prefix>-00000.h5``, ... in ``out_dir`` (``fingerprints[k]`` keys shard k; the run's
    manifest has ``fingerprint``), of which this process writes ``own`` (default: all), in four steps:

    1. ``find_reusable()`` (reads only): finished owned shards whose fingerprint, checksum and (if ``sizes``
       is given) sample count match go to ``entries``; the others are returned, to do.
    2. ``start()``, called by the caller once its work is known to succeed (inputs checked, a first good
       piece produced), removes stale files: the manifest if some owned shard is to be redone or it is of
       another run; shard files (sidecars, temp files) beyond the plan; the owned shards to redo and the temp
       files of owned shards. Other processes' shards are left alone: they may be being written right now.
    3. ``write(k, arrays, attrs)`` writes shard k (``write_shard``); before ``start`` it is held back in memory
       and written by ``start``, so a run that fails before starting leaves the directory as it was.
    4. ``complete()``: the entries of every shard in order once all are present, for ``write_manifest``.
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str, fingerprints: Sequence[str], fingerprint: str,
                 own: Iterable[int] | None = None, sizes: Sequence[int] | None = None):
        self.out, self.prefix, self.fingerprint = Path(out_dir), prefix, fingerprint
        self.fingerprints, self.sizes = list(fingerprints), sizes
        self.own = list(range(len(self.fingerprints)) if own is None else own)
        self.entries: dict[int, dict] = {}  # shard index -> manifest entry, of the shards reused or written
        self.started = False
        self._held: list[tuple[int, Mapping, Mapping]] = []

    def path(self, k: int) -> Path:
        return self.out / shard_name(self.prefix, k)

    def reusable(self, k: int) -> dict | None:
        """The entry of shard k if it is finished and of this run (fingerprint, checksum, size), else None."""
        entry = existing_shard(self.path(k), self.fingerprints[k])
        if entry is None or (self.sizes is not None and entry["n"] != self.sizes[k]):
            return None
        return entry

    def find_reusable(self) -> list[int]:
        """Record the reusable owned shards in ``entries``; return the owned shards to do."""
        for k in self.own:
            if k not in self.entries and (entry := self.reusable(k)) is not None:
                self.entries[k] = entry
        return [k for k in self.own if k not in self.entries]

    def start(self) -> None:
        """Remove the stale files (see the class docstring) and write the shards held back; once."""
        if self.started:
            return
        self.started = True
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self.out / MANIFEST
        if any(k not in self.entries for k in self.own) or _manifest_fingerprint(manifest) != self.fingerprint:
            manifest.unlink(missing_ok=True)
        own, n = set(self.own), len(self.fingerprints)
        self._unlink(lambda k, temp: k >= n or (k in own and (temp or k not in self.entries)))
        held, self._held = self._held, []
        for k, arrays, attrs in held:
            self.write(k, arrays, attrs)

    def write(self, k: int, arrays: Mapping[str, np.ndarray], attrs: Mapping) -> None:
        """Write shard k (see ``write_shard``), or hold it back until ``start``."""
        if self.started:
            self.entries[k] = write_shard(self.path(k), arrays, attrs)
        else:
            self._held.append((k, arrays, attrs))

    def complete(self) -> list[dict] | None:
        """The entries of all shards in order if every one is present (written or reused here, or reusable),
        after removing shard files beyond the plan (left by a previous, larger run); else None."""
        entries = []
        for k in range(len(self.fingerprints)):
            entry = self.entries.get(k) or self.reusable(k)
            if entry is None:
                return None
            entries.append(entry)
        n = len(self.fingerprints)
        self._unlink(lambda k, temp: k >= n and not temp)
        return entries

    def _unlink(self, stale) -> None:
        """Delete the shard files, sidecars and their temp files with ``stale(index, is_temp)``."""
        for p in sorted(self.out.iterdir()):
            k = shard_index(self.prefix, p.name)
            if k is not None and stale(k, p.name.startswith(".")):
                p.unlink(missing_ok=True)


def _manifest_fingerprint(path: Path) -> str | None:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return m.get("fingerprint") if isinstance(m, dict) else None


# ---- reading the manifest and verifying ------------------------------------------------------------------

def read_manifest(directory: str | os.PathLike) -> dict:
    """Load ``<directory>/manifest.json`` and check every field (type, bounds such as n <= 10^9 and
    resolution <= 4096, shard files inside ``directory``); a missing or malformed manifest raises one
    TinyGANError line naming the manifest and the field."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise TinyGANError(f"shard directory {directory} does not exist: run the stage that writes it "
                           f"(e.g. `dvc repro`) or fix the path")
    if not path.is_file():
        raise TinyGANError(f"{path} is missing: {directory} is incomplete (interrupted run?); rerun the stage "
                           f"that writes it (it resumes from the finished shards)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TinyGANError(f"{path} is not valid JSON ({e}); delete {directory} and rerun the stage that "
                           f"writes it") from None
    _check_manifest(path, manifest)
    return manifest


def class_names(manifest: Mapping) -> dict[int, str]:
    """Class index -> name of the manifest's classes: the ``class_names`` it records (real shards of a
    class-folder tree), none for unconditional data (``c_dim`` 0), else the ImageNet names."""
    if manifest.get("c_dim") == 0:
        return {}
    recorded = manifest.get("class_names")
    if recorded is None:
        return {int(c): name_of(c) for c in manifest["classes"]}
    missing = [c for c in manifest["classes"] if not isinstance(recorded, dict)
               or not isinstance(recorded.get(str(c)), str)]
    if missing:
        raise TinyGANError(f"manifest field 'class_names' lacks a name for classes {missing[:8]}; delete the shard "
                           f"dir and rerun the stage that writes it")
    return {int(c): recorded[str(c)] for c in manifest["classes"]}


# ---- manifest validation: every field a reader uses, with its type and bounds --------------------------------

def _field_error(path: Path, field: str, value, want: str) -> TinyGANError:
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return TinyGANError(f"{path}: field '{field}' is {shown}, expected {want}; delete {path.parent} and rerun "
                        f"the stage that writes it")


def _check_int(path: Path, field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field_error(path, field, value, f"an integer in [{low}, {high}]")
    return value


def _check_sha256(path: Path, field: str, value) -> None:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _field_error(path, field, value, "64 lowercase hex digits (a sha256)")


def _check_manifest(path: Path, m) -> None:
    """Raise TinyGANError (one line naming ``path`` and the field) unless ``m`` is a well-formed manifest."""
    if not isinstance(m, dict):
        raise TinyGANError(f"{path}: the top level is a JSON {type(m).__name__}, expected an object; delete "
                           f"{path.parent} and rerun the stage that writes it")
    missing = [k for k in _REQUIRED_KEYS if k not in m]
    if missing:
        raise TinyGANError(f"{path} lacks the keys {missing}; delete {path.parent} and rerun the stage that "
                           f"writes it")
    if m["kind"] not in ("real", "teacher"):
        raise _field_error(path, "kind", m["kind"], "'real' or 'teacher'")
    if not isinstance(m["fingerprint"], str):
        raise _field_error(path, "fingerprint", m["fingerprint"], "a string")
    n = _check_int(path, "n", m["n"], 0, MAX_N)
    _check_int(path, "resolution", m["resolution"], 1, MAX_RESOLUTION)
    if "z_dim" in m:
        _check_int(path, "z_dim", m["z_dim"], 1, MAX_Z_DIM)
    if "c_dim" in m:
        _check_int(path, "c_dim", m["c_dim"], 0, MAX_C_DIM)
    if "format_version" in m:
        _check_int(path, "format_version", m["format_version"], 1, FORMAT_VERSION)
    if "teacher_sha256" in m:
        _check_sha256(path, "teacher_sha256", m["teacher_sha256"])
    _check_shard_entries(path, m["shards"], n)
    _check_classes(path, m["classes"], m["class_counts"], n, class_count(m))


def _check_classes(path: Path, classes, counts, n: int, n_classes: int) -> None:
    if not isinstance(classes, list):
        raise _field_error(path, "classes", classes, "a list of class indices")
    for i, c in enumerate(classes):
        _check_int(path, f"classes[{i}]", c, 0, n_classes - 1)
    if not isinstance(counts, dict):
        raise _field_error(path, "class_counts", counts, "an object {class index: count}")
    for c, k in counts.items():
        if not (c.isascii() and c.isdigit() and int(c) < n_classes):
            raise _field_error(path, f"class_counts key {c!r}", c, f"a class index 0-{n_classes - 1}")
        _check_int(path, f"class_counts[{c!r}]", k, 0, MAX_N)
    if sorted(classes) != sorted(int(c) for c in counts):
        raise _field_error(path, "classes", classes, "the classes of 'class_counts'")
    if sum(counts.values()) != n:
        raise _field_error(path, "class_counts", counts, f"counts summing to n={n}")


def _check_shard_entries(path: Path, entries, n: int) -> None:
    if not isinstance(entries, list):
        raise _field_error(path, "shards", entries, "a list of {file, n, sha256, bytes}")
    seen = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise _field_error(path, f"shards[{i}]", e, "an object {file, n, sha256, bytes}")
        for key in ("file", "n", "sha256"):
            if key not in e:
                raise TinyGANError(f"{path}: field 'shards[{i}].{key}' is missing; delete {path.parent} and rerun "
                                   f"the stage that writes it")
        _confined_path(path.parent, e["file"], f"{path}: field 'shards[{i}].file'")
        if e["file"] in seen:
            raise _field_error(path, f"shards[{i}].file", e["file"], "each shard listed once")
        seen.add(e["file"])
        _check_int(path, f"shards[{i}].n", e["n"], 0, MAX_N)
        _check_sha256(path, f"shards[{i}].sha256", e["sha256"])
        if "bytes" in e:
            _check_int(path, f"shards[{i}].bytes", e["bytes"], 0, MAX_BYTES)
    if sum(e["n"] for e in entries) != n:
        raise _field_error(path, "n", n, f"the sum of the shards' n ({sum(e['n'] for e in entries)})")


def _confined_path(directory: Path, name, what: str) -> Path:
    """``directory / name`` if ``name`` is a relative path that stays inside ``directory`` (symlinks resolved),
    else TinyGANError: a manifest must not point readers at files elsewhere (``../../etc/passwd``)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise TinyGANError(f"{what} is {name!r}, expected a file name inside {directory}")
    rel = Path(name)
    inside = not rel.is_absolute() and ".." not in rel.parts
    if inside:
        root = directory.resolve()
        inside = (root / rel).resolve().is_relative_to(root)
    if not inside:
        raise TinyGANError(f"{what} is {name!r}, which is outside {directory}; shard files must lie in the "
                           f"manifest's directory (no absolute paths, '..' or symlinks leading out)")
    return directory / rel


class _ShardInfo:
    """What a reader needs to know about one verified shard: labels and where each dataset's rows are."""

    def __init__(self, path: str, n: int, y: np.ndarray, rows: dict[str, tuple]):
        self.path, self.n, self.y, self.rows = path, n, y, rows  # rows: name -> (offset|None, dtype, shape)


_INFOS: dict[tuple, _ShardInfo] = {}


def _inspect(path: Path, st: os.stat_result, manifest: Mapping, n: int) -> _ShardInfo:
    """Open a shard with h5py and check its datasets against the manifest's layout (cached like checksums)."""
    import h5py

    kind, rows_want, n_classes = manifest["kind"], manifest_layout(manifest), class_count(manifest)
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, kind, repr(rows_want), n_classes, n)
    if key in _INFOS:
        return _INFOS[key]
    fix = "delete it and rerun the stage that writes this directory"
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/others with long messages
        raise TinyGANError(f"shard {path} cannot be opened as HDF5 ({type(e).__name__}); it is truncated or "
                           f"corrupt: {fix}") from None
    rows = {}
    try:
        with f:
            if f.attrs.get("kind") != kind:
                raise TinyGANError(f"shard {path} has kind {f.attrs.get('kind')!r}, the manifest says {kind!r}: {fix}")
            for name, (dtype, row) in rows_want.items():
                if name not in f:
                    raise TinyGANError(f"shard {path} has no dataset {name!r}: {fix}")
                ds = f[name]
                if dtype is _STR:
                    ok = h5py.check_string_dtype(ds.dtype) is not None
                else:
                    ok = ds.dtype == dtype
                if not ok or ds.shape != (n,) + row:
                    want = "str" if dtype is _STR else dtype
                    raise TinyGANError(f"shard {path}: dataset {name!r} is {ds.dtype} {ds.shape}, expected "
                                       f"{want} {(n,) + row}: {fix}")
                offset = None
                if dtype is not _STR and ds.chunks is None and ds.compression is None and ds.dtype.isnative:
                    offset = ds.id.get_offset()
                rows[name] = (offset, ds.dtype if dtype is not _STR else None, row)
            y = np.asarray(f["y"][:], dtype=np.int64)
    except TinyGANError:
        raise
    except Exception as e:  # noqa: BLE001
        raise TinyGANError(f"shard {path} cannot be read ({type(e).__name__}: {e}); it is truncated or corrupt: "
                           f"{fix}") from None
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise TinyGANError(f"shard {path}: class labels y outside 0-{n_classes - 1}: {fix}")
    y.setflags(write=False)
    _INFOS[key] = info = _ShardInfo(str(path), n, y, rows)
    return info


def _verify(directory: Path, kind: str | None, checksums: bool = True,
            rehash: bool = False) -> tuple[dict, list[_ShardInfo]]:
    manifest = read_manifest(directory)
    rehash = rehash or rehash_requested()
    record = read_record(directory) if checksums and not rehash else {}
    verified, hashed = {}, False
    mpath = directory / MANIFEST
    if kind is not None and manifest["kind"] != kind:
        raise TinyGANError(f"{directory} holds {manifest['kind']!r} shards, expected {kind!r}: check the path")
    manifest_layout(manifest)  # unknown kind -> error
    fix = "rerun the stage that writes this directory (finished shards are reused)"
    infos, total = [], 0
    counts = np.zeros(class_count(manifest), dtype=np.int64)
    for entry in manifest["shards"]:
        path = directory / entry["file"]
        if not path.is_file():
            raise TinyGANError(f"shard {path} is missing (listed in {mpath}): {fix}")
        st = path.stat()
        if "bytes" in entry and st.st_size != entry["bytes"]:
            what = "truncated" if st.st_size < entry["bytes"] else "changed"
            raise TinyGANError(f"shard {path} is {what}: {st.st_size} bytes on disk, {entry['bytes']} in {mpath}; "
                               f"delete it and {fix}")
        sha = entry["sha256"]
        if checksums:
            known = record.get(entry["file"])
            if known is None or known[0] != _stat_key(st):
                sha, hashed = _sha256_cached(path, st, rehash), True
            else:
                sha = known[1]
        if sha != entry["sha256"]:
            raise TinyGANError(f"shard {path} fails its checksum: sha256 {sha[:16]}... on disk, "
                               f"{entry['sha256'][:16]}... in {mpath}; delete it and {fix}")
        verified[entry["file"]] = (_stat_key(st), sha)
        info = _inspect(path, st, manifest, int(entry["n"]))
        counts += np.bincount(info.y, minlength=len(counts))
        infos.append(info)
        total += info.n
    if total != manifest["n"]:
        raise TinyGANError(f"{mpath} says n={manifest['n']} but its shards hold {total} samples: {fix}")
    listed = np.zeros(len(counts), dtype=np.int64)
    for c, k in manifest["class_counts"].items():
        listed[int(c)] = int(k)
    if not np.array_equal(counts, listed):
        bad = np.flatnonzero(counts != listed)[:5].tolist()
        raise TinyGANError(f"{mpath}: class_counts disagree with the labels in the shards (classes {bad}): {fix}")
    if checksums and (hashed or set(verified) != set(record)):
        write_record(directory, verified)
    return manifest, infos


def verify(directory: str | os.PathLike, kind: str | None = None, checksums: bool = True,
           rehash: bool = False) -> dict:
    """Check a shard directory against its manifest and return the manifest.

    Every shard must exist, have the recorded size and sha256, the datasets of its kind with the right
    dtypes and shapes, and labels that match ``class_counts``. Any problem raises TinyGANError naming
    the shard path and what differs. A shard is hashed once per file state (device, inode, size, mtime,
    ctime) and the result kept in its directory's verify record (see ``record_dir``), so later opens of
    unchanged shards read no shard bytes; ``rehash=True`` (or TINYGAN_REHASH=1) hashes every shard again and
    renews the record. ``checksums=False`` skips hashing (sizes, layout and labels are still checked).
    """
    return _verify(Path(directory), kind, checksums, rehash)[0]


# ---- reading samples ------------------------------------------------------------------------------------

class ShardDataset(torch.utils.data.Dataset):
    """Random access to the samples of a shard directory (verified on open, see ``verify``: shards verified
    before and unchanged since are not hashed again).

    ``ds[i]`` returns one sample; ``ds.__getitems__(indices)`` (used by DataLoader with a batch sampler)
    returns a batch as a dict of tensors: ``images`` float32 NCHW in [-1, 1] (x / 127.5 - 1), ``z``
    float32, ``y`` int64, ``names`` list[str]. ``read(indices, raw=True)`` gives the stored numpy arrays
    (images uint8 NHWC). Samples are numbered in storage order (shard by shard).

    Memory maps / h5py handles are opened lazily in each process (never shared across fork), so the
    dataset can be used with DataLoader workers. Mapped pages are page cache: a worker's RSS grows with
    the shard pages it touched, but that memory is shared and reclaimable.
    """

    MAX_OPEN = 128  # open files kept per process (LRU)

    def __init__(self, directory: str | os.PathLike, fields: Sequence[str] | None = None,
                 kind: str | None = None, checksums: bool = True, rehash: bool = False):
        self.directory = Path(directory)
        self.manifest, infos = _verify(self.directory, kind, checksums, rehash)
        self.kind = self.manifest["kind"]
        known = self._layout = manifest_layout(self.manifest)
        self.fields = tuple(fields) if fields is not None else default_fields(self.kind)
        for name in self.fields:
            if name not in known:
                raise TinyGANError(f"{self.directory} ({self.kind} shards) has no field {name!r}; "
                                   f"available: {sorted(known)}")
        self._paths = [i.path for i in infos]
        self._rows = [i.rows for i in infos]
        self._starts = np.cumsum([0] + [i.n for i in infos]).astype(np.int64)
        self._labels = np.concatenate([i.y for i in infos]) if infos else np.zeros(0, np.int64)
        self._labels.setflags(write=False)
        self._open: collections.OrderedDict = collections.OrderedDict()
        self._pid = os.getpid()

    # -- pickling / per-process handles --
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_open"] = collections.OrderedDict()
        return state

    def _handle(self, s: int, h5: bool):
        """Per-process LRU of open shards: h5py.File (h5=True) or a dict of memory-mapped dataset views.

        Contiguous datasets are read through a read-only mmap of the shard (views made with
        np.frombuffer at the dataset's file offset); strings and chunked/compressed datasets use h5py.
        """
        key = (s, h5)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        if h5:
            import h5py
            handle = h5py.File(self._paths[s], "r")
        else:
            handle = self._map(s)
        self._open[key] = handle
        while len(self._open) > self.MAX_OPEN:
            (_, was_h5), old = self._open.popitem(last=False)
            if was_h5:
                old.close()  # mmaps are released when the last view goes away
        return handle

    def _map(self, s: int) -> dict[str, np.ndarray]:
        path, n = self._paths[s], int(self._starts[s + 1] - self._starts[s])
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        views = {}
        for name, (offset, dtype, row) in self._rows[s].items():
            if offset is None or n == 0:
                continue
            count = n * int(np.prod(row, dtype=np.int64))
            if offset + count * dtype.itemsize > size:  # would be SIGBUS on access: fail cleanly instead
                raise TinyGANError(f"shard {path} is shorter than its manifest says ({size} bytes): it changed "
                                   f"after verification; rerun the stage that writes {self.directory}")
            views[name] = np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape((n,) + row)
        return views

    def close(self) -> None:
        """Close the files this process has open (they reopen on demand)."""
        if self._pid == os.getpid():
            for (_, h5), handle in self._open.items():
                if h5:
                    handle.close()
        self._open = collections.OrderedDict()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- metadata --
    def __len__(self) -> int:
        return int(self._starts[-1])

    def labels(self) -> np.ndarray:
        """Class label of every sample, in sample order (read-only int64 array)."""
        return self._labels

    def class_counts(self) -> dict[int, int]:
        """Number of samples per class (classes with samples only)."""
        cls, cnt = np.unique(self._labels, return_counts=True)
        return {int(c): int(k) for c, k in zip(cls, cnt)}

    def class_indices(self, c: int) -> np.ndarray:
        """Sample indices (ascending) of class ``c``; read them with ``read`` / ``iter_read``."""
        return np.flatnonzero(self._labels == c)

    # -- reading --
    def read(self, indices: Sequence[int] | np.ndarray, raw: bool = False,
             fields: Sequence[str] | None = None) -> dict:
        """Read samples ``indices`` (any order, repeats allowed) of ``fields`` (default: self.fields).

        ``raw=True``: numpy arrays as stored (images uint8 NHWC); else tensors (see class docstring).
        Rows are gathered shard by shard in ascending order from the memory-mapped shards straight into
        the output; indices that are not ascending cost one extra copy to put the rows in their order.
        """
        fields = self.fields if fields is None else tuple(fields)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range for {self.directory} ({len(self)} samples)")
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._open, self._pid = collections.OrderedDict(), os.getpid()
        ascending = len(idx) < 2 or bool((idx[1:] >= idx[:-1]).all())
        order = None if ascending else np.argsort(idx, kind="stable")
        sidx = idx if ascending else idx[order]
        # groups of rows from the same shard: (shard, shard-local rows, first, end position in sidx)
        shard_of = np.searchsorted(self._starts, sidx, side="right") - 1
        cuts = (np.flatnonzero(shard_of[1:] != shard_of[:-1]) + 1).tolist() + [len(sidx)]
        groups, lo = [], 0
        for hi in cuts if len(sidx) else []:
            s = int(shard_of[lo])
            groups.append((s, sidx[lo:hi] - self._starts[s], lo, hi))
            lo = hi
        out = {}
        for name in fields:
            if name == "y":
                out[name] = self._labels[idx]
                continue
            rows = self._read_strings(groups, len(idx)) if name == "names" else self._read_rows(name, groups, len(idx))
            if order is not None:
                if name == "names":
                    unsorted = [""] * len(idx)
                    for j, v in zip(order.tolist(), rows):
                        unsorted[j] = v
                else:
                    unsorted = np.empty_like(rows)
                    unsorted[order] = rows
                rows = unsorted
            out[name] = rows
        return out if raw else _to_tensors(out)

    def _read_rows(self, name: str, groups, count: int) -> np.ndarray:
        """Rows of dataset ``name`` for ``groups`` (see ``read``), in ascending sample order."""
        dtype, row = self._layout[name]
        out = np.empty((count,) + row, dtype=dtype)
        for s, local, a, b in groups:
            view = self._handle(s, h5=False).get(name)
            if view is not None:  # one copy, page cache -> out (mode="clip": no temporary buffer)
                view.take(local, axis=0, out=out[a:b], mode="clip")
            else:  # chunked/compressed dataset written by other tools: slices through h5py
                ds = self._handle(s, h5=True)[name]
                for first, end, at in _runs(local, a):
                    out[at:at + end - first] = ds[first:end]
        return out

    def _read_strings(self, groups, count: int) -> list[str]:
        out = [""] * count
        for s, local, a, b in groups:
            ds = self._handle(s, h5=True)["names"].asstr()
            for first, end, at in _runs(local, a):
                out[at:at + end - first] = list(ds[first:end])
        return out

    def __getitems__(self, indices) -> dict:
        return self.read(indices)

    def __getitem__(self, i: int) -> dict:
        batch = self.read([i])
        return {k: v[0] for k, v in batch.items()}

    def iter_read(self, indices: Sequence[int] | np.ndarray, batch_size: int = 256, raw: bool = True,
                  fields: Sequence[str] | None = None) -> Iterator[dict]:
        """Read ``indices`` in order, ``batch_size`` at a time (e.g. all images of one class for FID)."""
        indices = np.asarray(indices, dtype=np.int64)
        for a in range(0, len(indices), batch_size):
            yield self.read(indices[a:a + batch_size], raw=raw, fields=fields)


def _runs(local: np.ndarray, at: int):
    """Split ascending shard-local rows into runs of consecutive rows: (first row, end row, output position)."""
    breaks = (np.flatnonzero(np.diff(local) != 1) + 1).tolist()
    for s, e in zip([0] + breaks, breaks + [len(local)]):
        yield int(local[s]), int(local[s]) + (e - s), at + s


def _to_tensors(batch: dict) -> dict:
    out = {}
    for name, v in batch.items():
        if name == "images":  # uint8 NHWC -> float32 NCHW in [-1, 1]
            x = torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2)))
            out[name] = x.to(torch.float32).div_(127.5).sub_(1.0)
        elif name == "names":
            out[name] = v
        else:
            out[name] = torch.from_numpy(v)
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index batches of one epoch: a random permutation of range(n) from (seed, epoch), cut in order
    (each batch sorted ascending, which makes reads a single gather; the order inside a batch is moot).

    The final incomplete batch (fewer than ``batch_size`` samples, a different set each epoch) is left out;
    every other sample appears exactly once.
    """
    if batch_size < 1:
        raise TinyGANError(f"batch size must be >= 1, got {batch_size}")
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    stop = (n // batch_size) * batch_size
    return [np.sort(perm[a:a + batch_size]) for a in range(0, stop, batch_size)]


def balanced_epoch_batches(labels: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index batches (positions into ``labels``) of one epoch in which every class is equally represented.

    Each class's positions are put in a random order from (seed, epoch) and cut to the smallest class's count
    (a larger class leaves out a different random remainder each epoch); they are dealt one per class in turn,
    the classes in a random order fixed for the epoch, and the dealt sequence is cut into batches. So any run of
    ``k`` consecutive positions holds ``k // n_classes`` or one more of each class: a batch holds exactly
    ``batch_size / n_classes`` of each when that divides, and so does each rank's consecutive slice of a
    global batch. Batches are returned in dealt order (not sorted), for that slicing. The final incomplete batch
    is left out.
    """
    if batch_size < 1:
        raise TinyGANError(f"batch size must be >= 1, got {batch_size}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), int(epoch)])
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    m = min((len(p) for p in per_class), default=0)
    dealt = np.stack([per_class[i][:m] for i in rng.permutation(len(per_class))], axis=1).reshape(-1) \
        if m else np.zeros(0, np.int64)
    stop = (len(dealt) // batch_size) * batch_size
    return [dealt[a:a + batch_size] for a in range(0, stop, batch_size)]
