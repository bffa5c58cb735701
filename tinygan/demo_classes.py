"""The 8 ImageNet animal classes of the offline demo world (no TensorFlow import, cheap to load).

Index -> (wnid, name), with the real ILSVRC-2012 wnids and class indices (sorted-wnid order).
"""
from __future__ import annotations

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

# Kinds of deliberately bad files written into the demo tree by `tinygan.demo.make_tree`.
# Readable ones are odd but valid images (prepare converts them to RGB and keeps them);
# unreadable ones must be skipped and counted by reason.
READABLE_BAD_KINDS: tuple[str, ...] = ("grayscale", "cmyk", "png")
UNREADABLE_BAD_KINDS: tuple[str, ...] = ("truncated", "empty", "text")
