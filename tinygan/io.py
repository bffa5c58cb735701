"""Atomic, deterministic file writes (temp file in the same dir + os.replace) and checksums."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on clean exit it replaces ``path`` atomically.

    On error the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_h5(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping | None = None) -> str:
    """Write ``arrays`` (and scalar ``attrs``) to an HDF5 file atomically; return its sha256.

    Deterministic: no timestamps, fixed dataset order, so the same arrays give the same bytes.
    String arrays are stored as variable-length UTF-8.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as f:
            for key in sorted(arrays):
                arr = arrays[key]
                if arr.dtype.kind in "OUS":
                    f.create_dataset(key, data=np.asarray(arr, dtype=object),
                                     dtype=h5py.string_dtype("utf-8"), track_times=False)
                else:
                    # Contiguous layout (no chunks, no filters): a row is one byte range in the file,
                    # so readers can fetch random rows with a single pread each (see tinygan.shards).
                    f.create_dataset(key, data=np.ascontiguousarray(arr), track_times=False)
            for k in sorted(attrs or {}):
                f.attrs[k] = attrs[k]
    return sha256_file(path)
