"""ImageNet-1k class table (ILSVRC-2012 wnids) and class selections.

The class index of a wnid is its rank in the sorted list of the 1000 ILSVRC-2012 wnids. This is the
label order of the ImageNet train set and of BigGAN's one-hot ``y``. Indices 0-397 are the animal
classes on which TinyGAN reports its metrics. ``resolve`` also resolves a selection against a dataset's
own class names (e.g. the folder names of a class-folder tree, see ``tinygan.prepare``).
"""
from __future__ import annotations

import collections
import functools
import numbers
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from tinygan.errors import TinyGANError

N_CLASSES = 1000
ANIMALS = range(398)

_TABLE = Path(__file__).with_name("imagenet_wnids.txt")


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, ...], tuple[str, ...], dict[str, int]]:
    wnids, names = [], []
    for line in _TABLE.read_text(encoding="utf-8").splitlines():
        wnid, name = line.split("\t", 1)
        wnids.append(wnid)
        names.append(name)
    if len(wnids) != N_CLASSES or wnids != sorted(wnids):  # pragma: no cover - packaging error
        raise RuntimeError(f"{_TABLE} must hold the {N_CLASSES} ILSVRC-2012 wnids in sorted order")
    return tuple(wnids), tuple(names), {w: i for i, w in enumerate(wnids)}


def wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids in sorted order (position = class index)."""
    return list(_table()[0])


def is_wnid(s: str) -> bool:
    """True if ``s`` is one of the 1000 ILSVRC-2012 wnids."""
    return s in _table()[2]


def index_of(wnid: str) -> int:
    """Class index (0-999) of an ILSVRC-2012 wnid such as ``"n01443537"``."""
    try:
        return _table()[2][wnid]
    except KeyError:
        raise TinyGANError(f"{wnid!r} is not one of the 1000 ILSVRC-2012 wnids (e.g. 'n01443537'); "
                           f"check the class list") from None


def _check_index(i: int) -> int:
    return _imagenet().check(i)


def wnid_of(i: int) -> str:
    """The wnid of class index ``i``."""
    return _table()[0][_check_index(i)]


def name_of(i: int) -> str:
    """The first human-readable name of class index ``i`` (e.g. 1 -> ``"goldfish"``)."""
    return _table()[1][_check_index(i)]


class _Table(NamedTuple):
    """What a class selection is resolved against: ImageNet's wnids, or a dataset's own class names."""
    n: int
    index: Mapping[str, int]  # name (wnid) -> class index
    label: Callable[[int], str]  # class index -> the name shown in messages
    word: str  # what a name is called: "wnid" / "class name"
    example: str  # one such name, described

    def check(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < self.n:
            raise TinyGANError(f"class index {i!r} is out of range: use an integer 0-{self.n - 1}")
        return int(i)


def _imagenet() -> _Table:
    return _Table(N_CLASSES, _table()[2], wnid_of, "wnid", "an ILSVRC-2012 wnid (e.g. 'n01443537')")


def _named(names: Sequence[str]) -> _Table:
    shown = f" (e.g. {names[0]!r})" if names else ""
    return _Table(len(names), {n: i for i, n in enumerate(names)}, names.__getitem__, "class name",
                  f"one of the {len(names)} class names{shown}")


def resolve(selection: str | Iterable[int | str], names: Sequence[str] | None = None) -> list[int]:
    """Turn a class selection into a sorted list of unique class indices.

    Against ImageNet (``names`` None): ``selection`` is ``"animals"`` (indices 0-397), ``"all"`` (0-999), or a
    list whose entries are class indices (ints 0-999) or wnid strings. Against a dataset's own class names
    (``names[i]`` is the name of class ``i``, e.g. the sorted folder names of a class-folder tree): ``"all"``
    or a list of indices / names (a string that is a name is that name, else a digit string is an index).
    A bad entry raises TinyGANError naming it. A class listed more than once (e.g. as an index and as its
    name) is used once, with a one-line warning on stderr.
    """
    table = _imagenet() if names is None else _named(list(names))
    choices = "'animals', 'all'" if names is None else "'all'"
    if isinstance(selection, str):
        if selection == "animals" and names is None:
            return list(ANIMALS)
        if selection == "all":
            return list(range(table.n))
        raise TinyGANError(f"class selection {selection!r} is not understood: use {choices}, or a list "
                           f"of class indices (0-{table.n - 1}) / {table.word}s")
    try:
        entries = list(selection)
    except TypeError:
        raise TinyGANError(f"class selection {selection!r} is not understood: use {choices}, or a list "
                           f"of class indices / {table.word}s") from None
    if not entries:
        raise TinyGANError(f"class selection is empty: give at least one class index or {table.word}")
    out = [_entry_index(e, table) for e in entries]
    twice = sorted(c for c, k in collections.Counter(out).items() if k > 1)
    if twice:
        shown = ", ".join(f"{c} ({table.label(c)})" for c in twice)
        print(f"warning: classes listed twice: {shown}; using each once", file=sys.stderr)
    return sorted(set(out))


def _entry_index(e: int | str, table: _Table) -> int:
    """Class index of one entry of a class selection: an int index or a string name / index."""
    if isinstance(e, str):
        s = e.strip()
        if s in table.index:
            return table.index[s]
        if s.isdigit():
            return table.check(int(s))
        raise TinyGANError(f"class {e!r} in the class selection is neither a class index (0-{table.n - 1}) nor "
                           f"{table.example}")
    try:
        return table.check(e)
    except TinyGANError:
        raise TinyGANError(f"class {e!r} in the class selection is out of range: use an integer "
                           f"0-{table.n - 1} or a {table.word}") from None
