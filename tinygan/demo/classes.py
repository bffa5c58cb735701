"""The 8 ImageNet animal classes of the offline demo world (no TensorFlow import, cheap to load).

Index -> (wnid, name), with the real ILSVRC-2012 wnids and class indices (sorted-wnid order). The names are
the first names of the core class table (``tinygan/imagenet_wnids.txt``), spelt as Python identifiers.
"""
from __future__ import annotations

from tinygan.errors import TinyGANError

DEMO_CLASSES: dict[int, tuple[str, str]] = {
    1: ("n01443537", "goldfish"),
    9: ("n01518878", "ostrich"),
    130: ("n02007558", "flamingo"),
    207: ("n02099601", "golden_retriever"),
    281: ("n02123045", "tabby"),
    291: ("n02129165", "lion"),
    323: ("n02279972", "monarch"),
    388: ("n02510455", "giant_panda"),
}

# Kinds of deliberately bad files written into the demo tree by `tinygan.demo.tree.make_tree`.
# Readable ones are odd but valid images (prepare converts them to RGB and keeps them);
# unreadable ones must be skipped and counted by reason.
READABLE_BAD_KINDS: tuple[str, ...] = ("grayscale", "cmyk", "png")
UNREADABLE_BAD_KINDS: tuple[str, ...] = ("truncated", "empty", "text")


def check_classes(classes) -> list[int]:
    """``classes`` as a list of ints, each a demo class, listed once; else one TinyGANError line."""
    classes = [int(k) for k in classes]
    if not classes:
        raise TinyGANError("demo classes list is empty; give at least one of " f"{sorted(DEMO_CLASSES)}")
    bad = [k for k in classes if k not in DEMO_CLASSES]
    if bad:
        raise TinyGANError(f"demo classes {bad} have no demo wnid; use a subset of {sorted(DEMO_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise TinyGANError(f"demo classes {classes} contain duplicates; list each class once")
    return classes
