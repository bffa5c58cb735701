"""Atomic, deterministic writes and checksums.

- ``atomic_path`` / ``write_bytes|text|json``: one file, written to a temp file beside it (``.<name>.<random>.tmp``)
  and renamed over it.
- ``atomic_dir``: a whole output directory, all-new or all-old: written into a temp sibling directory and swapped
  into place in one step.

Temp files and directories left by a killed run are removed by the next write of the same output, at its start and
its end. A writer holds a shared ``flock`` on the directory while its temp lives there, and the clean-up runs only
when it can take that lock exclusively: while another process (e.g. another rank writing the same manifest) is
writing in the directory, its temps are live and nothing there is deleted. A full disk (ENOSPC / EDQUOT) becomes
one ``DiskFullError`` line naming the output.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from tinygan.errors import TinyGANError

# temp names made here: "." + the output's name + "." + tempfile's 8 random characters + ".tmp"
_RANDOM = r"[a-z0-9_]{8}"
_TEMP_RE = re.compile(rf"^\..+\.{_RANDOM}\.tmp$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(TinyGANError):
    """No space (or quota) left while writing ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(f"no space left on the device to write {self.path} (disk full or quota exceeded); "
                         f"free some space on {self.path.parent} and rerun")


def _is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT, also when a library (h5py) wraps it in a message without an errno."""
    if isinstance(e, OSError) and e.errno in _DISK_FULL:
        return True
    return any(os.strerror(code) in str(e) for code in _DISK_FULL)


def is_temp_name(name: str, of: str | None = None) -> bool:
    """Whether ``name`` is a temp file/dir name made by this module (for the output called ``of``, if given)."""
    if of is None:
        return _TEMP_RE.match(name) is not None
    return re.fullmatch(rf"\.{re.escape(of)}\.{_RANDOM}\.tmp", name) is not None


def remove_stale_temps(directory: str | os.PathLike, of: str | None = None) -> bool:
    """Delete the temp files/dirs a killed run left in ``directory`` (those of the output ``of`` only, if given),
    unless a writer is at work there (``_dir_lock``): then its temps are live, and the clean-up waits for a quiet
    moment (the next write's start or end). Returns False when it had to wait."""
    directory = Path(directory)
    if not directory.is_dir():
        return True
    with _dir_lock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB) as quiet:
        if not quiet:
            return False
        for entry in directory.iterdir():
            if is_temp_name(entry.name, of):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def locked_dir(directory: str | os.PathLike) -> Iterator[None]:
    """An exclusive ``flock`` on ``directory`` for the block (waits for other holders; the OS releases it when
    a holder dies, so a killed process never leaves it held)."""
    with _dir_lock(Path(directory), fcntl.LOCK_EX):
        yield


@contextlib.contextmanager
def _dir_lock(directory: Path, op: int) -> Iterator[bool]:
    """``flock(op)`` on ``directory`` for the block; yields False if a non-blocking ``op`` found it held by
    another writer, else True (also where the file system has no flock: one writer assumed)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, op)
            got = True
        except BlockingIOError:
            got = False
        except OSError:  # e.g. NFS without lock support
            got = True
        yield got
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on clean exit it replaces ``path`` atomically.

    On error the temp file is removed and ``path`` is left untouched; a full disk raises ``DiskFullError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cleaned = remove_stale_temps(path.parent, path.name)
    tmp = None
    try:
        with _dir_lock(path.parent, fcntl.LOCK_SH):  # held while the temp lives: no clean-up deletes it
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
            os.replace(tmp, path)
    except Exception as e:
        if _is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    if not cleaned:  # a killed run's temps, which other writers kept at the start
        remove_stale_temps(path.parent, path.name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- whole directories -------------------------------------------------------------------------------------

def check_replaceable(path: str | os.PathLike, owned: Iterable[str]) -> None:
    """TinyGANError unless ``path`` is absent or a directory holding only files named in ``owned`` (and temp
    leftovers): what ``atomic_dir`` may delete when it swaps a new directory in. An entry ``"name/"`` of
    ``owned`` names a subdirectory owned as a whole (e.g. ``page/``)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise TinyGANError(f"output {path} exists and is not a directory; move it away or choose another "
                           f"output directory")
    owned = set(owned)
    for entry in sorted(path.iterdir()):
        if not is_temp_name(entry.name) and _owned_name(entry) not in owned:
            raise TinyGANError(f"output directory {path} holds {entry.name}, which tinygan does not write there; "
                               f"it would be deleted when the directory is replaced: move it away or choose "
                               f"another output directory")


def _owned_name(entry: Path) -> str:
    """How ``owned`` names ``entry``: its name, with a trailing "/" for a real (not symlinked) directory."""
    return entry.name + "/" if entry.is_dir() and not entry.is_symlink() else entry.name


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, owned: Iterable[str]) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``path`` (``.<name>.<random>.tmp``) to write every output into; on
    clean exit it replaces ``path`` in one step, so readers see the old directory or the new one, never a mix.

    ``owned``: the file names the directory may hold ("name/": a subdirectory). An existing ``path`` holding
    anything else is refused before anything is written (``check_replaceable``). On error the temp directory
    is removed and ``path`` is untouched. Temp leftovers of a killed run (beside ``path`` and inside it) are
    removed first. A symlink ``path`` is followed: the directory it points to is replaced.
    """
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    owned = frozenset(owned)
    check_replaceable(path, owned)
    remove_stale_temps(path)
    with _temp_dir(path) as tmp:
        try:
            yield tmp
        except DiskFullError as e:
            if not e.path.is_relative_to(tmp):
                raise
            raise DiskFullError(path / e.path.relative_to(tmp)) from None
        stray = sorted(p.name for p in tmp.iterdir() if _owned_name(p) not in owned)
        if stray:
            raise RuntimeError(f"atomic_dir({path}): wrote {stray}, which are not in owned")
        _fsync_dir(tmp)
        _swap_in(tmp, path)


@contextlib.contextmanager
def _temp_dir(path: Path) -> Iterator[Path]:
    """A new temp directory beside ``path``, live for the block (the directory lock held), then deleted: the new
    directory on error, the old one after an exchange."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cleaned = remove_stale_temps(path.parent, path.name)
    except OSError as e:
        raise _dir_error(path, e) from None
    with _dir_lock(path.parent, fcntl.LOCK_SH):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        except OSError as e:
            raise _dir_error(path, e) from None
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not cleaned:  # a killed run's temps, which other writers kept at the start
        remove_stale_temps(path.parent, path.name)


def _dir_error(path: Path, e: OSError) -> TinyGANError:
    if _is_disk_full(e):
        return DiskFullError(path)
    return TinyGANError(f"cannot create output directory {path} ({e.strerror or e}); choose a writable "
                        f"output directory")


def _swap_in(new: Path, path: Path) -> None:
    """Put directory ``new`` at ``path``. An existing ``path`` ends up at ``new`` (exchanged in one step where
    the kernel can, else renamed aside first); the caller deletes it."""
    if not os.path.lexists(path):
        os.rename(new, path)
    elif not _exchange(new, path):
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.rename(path, aside)  # onto the empty dir
        os.rename(new, path)
        os.rename(aside, new)
    _fsync_dir(path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically: Linux ``renameat2(RENAME_EXCHANGE)`` via libc, or the raw syscall
    where libc lacks it. False where neither the platform nor the file system supports it."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    args = (at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if hasattr(libc, "renameat2"):
        fn = libc.renameat2
        fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        rc = fn(*args)
    else:
        number = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
        if number is None:
            return False
        rc = libc.syscall(ctypes.c_long(number), *(ctypes.c_int(args[0]), args[1], ctypes.c_int(args[2]),
                                                   args[3], ctypes.c_uint(args[4])))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- single files ------------------------------------------------------------------------------------------

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


# ---- TorchScript archives with reproducible bytes ---------------------------------------------------------

_FINAL_LINE = re.compile(r"^  \w+ : Final\[")


def torchscript_bytes(module, extra_files: dict[str, str] | None = None) -> bytes:
    """``torch.jit.save`` output that depends only on the module: the same module gives the same bytes.
    ``extra_files`` (name -> text) are saved as extra files of the archive (``torch.jit.save``'s
    ``_extra_files``), e.g. a teacher's description of itself.

    Saved to a buffer (a named file would lend its name to the archive's top folder); then rewritten
    without the ``*.debug_pkl`` records (source ranges with absolute paths of the .py files; loading does
    not need them), with each class's ``Final`` constants sorted (scripting lists them in Python set
    order, which changes with the hash seed of each process) and a fresh serialization id.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files=dict(extra_files or {}))
    reader = torch._C.PyTorchFileReader(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    for name in sorted(reader.get_all_records()):
        if name.endswith(".debug_pkl") or name == ".data/serialization_id":
            continue
        data = reader.get_record(name)
        if name.startswith("code/") and name.endswith(".py"):
            data = _sort_final_runs(data.decode("utf-8")).encode("utf-8")
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    del writer
    return out.getvalue()


def _sort_final_runs(code: str) -> str:
    """Sort each run of consecutive ``  name : Final[T] = value`` lines (class constants; order-free)."""
    lines, out, run = code.split("\n"), [], []
    for line in lines + [None]:
        if line is not None and _FINAL_LINE.match(line):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)
