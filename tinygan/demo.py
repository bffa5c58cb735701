"""An offline demo world: a procedural stand-in for BigGAN-deep-128 and a matching ImageNet-style tree.

Everything the pipeline needs from the outside world, made locally in seconds on a CPU:

* ``render(z, y_onehot, truncation, height, width)`` draws class-conditional pictures from simple shapes
  (goldfish, ostrich, flamingo, golden retriever, tabby, lion, monarch, giant panda; any other class gets a
  generic blob). It is written once in TensorFlow ops and used both by the fake teacher and for the tree.
* ``save_teacher(path)`` saves it as a TF SavedModel with BigGAN-deep-128's Hub interface
  (signature "default": z [N,128], y [N,1000], truncation -> {"default": [N,128,128,3] in [-1,1]}).
* ``make_tree(root, ...)`` writes ``<root>/<wnid>/<wnid>_<k>.JPEG`` "real" images (untruncated z, more
  variety, noise, JPEG artefacts, varied sizes) plus a handful of deliberately bad files.
* ``build(root, ...)`` makes both and a ``preview.png`` contact sheet.

Renderer design. Coordinates are normalised so the shorter image side spans [-1, 1] (y points down), so
an image of any aspect ratio centre-cropped to a square matches the square rendering. A class is a
`_Scene`: a background function plus a back-to-front list of primitives (ellipses, capsules, convex
polygons), each with a colour, whose parameters are affine in the latent controls. Each primitive gives a
signed distance d (negative inside); its coverage is a smoothstep of d over ~1.75 pixels (a compact,
sigmoid-shaped soft edge) and it is painted over the canvas. Primitives of one kind are evaluated together
(one set of TF ops per kind) to keep the graph small. Only per-sample, exactly rounded ops are used
(+ - * /, sqrt, abs, floor, min/max, gather, concat/split; never 1/x, which TF computes with approximate
SIMD reciprocals on full vector lanes only): no matmul, no reductions across the batch,
no exp/sin and no random ops, so a sample's pixels are bit-identical whatever the batch size or its
position in the batch.

Latent use. u = clip(z * sqrt(truncation), -2.5, 2.5); the 128 dims are folded pairwise into 64
controls v_k = (u_k + u_{k+64}) / sqrt(2). v_0..3 set position, size and tilt; v_4..6 body colour; v_7..8
background brightness and tint; v_9 lighting; v_10..19 class-specific shape details; v_20..29 background
details. The teacher is fed z = truncation * truncated_normal, so variety shrinks like truncation^1.5.
"""
from __future__ import annotations

import io as _io
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from tinygan.demo_classes import DEMO_CLASSES, READABLE_BAD_KINDS, UNREADABLE_BAD_KINDS
from tinygan.errors import TinyGANError
from tinygan.io import write_bytes

__all__ = [
    "DEMO_CLASSES", "READABLE_BAD_KINDS", "UNREADABLE_BAD_KINDS", "Z_DIM", "NUM_CLASSES", "TEACHER_SIZE",
    "render", "render_numpy", "DemoTeacher", "save_teacher", "make_tree", "write_preview", "build",
]

Z_DIM = 128
NUM_CLASSES = 1000
TEACHER_SIZE = 128
_EDGE_PX = 1.75  # width of the soft edge, in pixels
_V_MAX = 2.5  # latent controls are clipped to [-_V_MAX, _V_MAX]
_SORTED_DEMO = sorted(DEMO_CLASSES)  # slot i (0..7) <-> class _SORTED_DEMO[i]; slot 8 = generic blob


# ----------------------------------------------------------------------------------------------------
# Shape parameters that depend affinely on the latent controls (pure Python, no TF)


class _Aff:
    """base + sum_k coef_k * v_k: a scene parameter, affine in the latent controls v."""

    __slots__ = ("base", "terms")

    def __init__(self, base: float = 0.0, terms: dict[int, float] | None = None):
        self.base = float(base)
        self.terms = {k: float(c) for k, c in (terms or {}).items() if c != 0.0}

    def __add__(self, other):
        other = _aff(other)
        terms = dict(self.terms)
        for k, c in other.terms.items():
            terms[k] = terms.get(k, 0.0) + c
        return _Aff(self.base + other.base, terms)

    __radd__ = __add__

    def __mul__(self, f: float):
        if isinstance(f, _Aff):
            raise TypeError("a scene parameter can only be scaled by a number")
        return _Aff(self.base * f, {k: c * f for k, c in self.terms.items()})

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_aff(other))

    def __rsub__(self, other):
        return _aff(other) - self


def _aff(x) -> _Aff:
    return x if isinstance(x, _Aff) else _Aff(float(x))


def _P(k: int) -> _Aff:
    """Latent control k (about N(0, 1) at truncation 1; |v_k| <= 2.5)."""
    return _Aff(0.0, {k: 1.0})


def _jit(rgb, amp: float = 0.0, k: int = 4) -> tuple:
    """A colour whose channels move by amp * v_k, v_{k+1}, v_{k+2}."""
    return tuple(_Aff(rgb[i], {k + i: amp}) for i in range(3))


def _shade(color, f: float) -> tuple:
    return tuple(_aff(ch) * f for ch in color)


def _half_tan(angle) -> _Aff:
    """tan(angle / 2) (linearised around the base angle when the angle depends on the latent)."""
    angle = _aff(angle)
    t0 = math.tan(angle.base / 2.0)
    return _Aff(t0, {k: c * 0.5 * (1.0 + t0 * t0) for k, c in angle.terms.items()})


# ----------------------------------------------------------------------------------------------------
# Scenes: a background plus back-to-front primitives


class _Scene:
    """Description of one class: background function, layers (primitives) and texture hooks.

    Style options of every primitive: frame ("obj": moves with the animal's pose, "img": fixed to the
    image, for background props), soft (edge width multiplier), opacity, ring (draw only an outline of
    this half-width), inset (shrink by this much), name (to refer to its coverage in hooks and masks) and
    mask (names of earlier layers; paint only inside them).
    """

    def __init__(self, background):
        self.background = background  # fn(canvas) -> sets canvas.img
        self.params: list[_Aff] = []
        self.layers: list[dict] = []
        self.hooks: dict[int, list] = {}  # layer position -> fns(canvas) run before painting that layer

    def _add(self, kind, values, color, frame="obj", soft=1.0, opacity=1.0, ring=0.0, inset=0.0,
             name=None, mask=None):
        first = len(self.params)
        self.params += [_aff(x) for x in values] + [_aff(x) for x in color]
        self.layers.append(dict(
            kind=kind, frame=frame, shape=list(range(first, first + len(values))),
            color=list(range(first + len(values), first + len(values) + 3)),
            soft=soft, opacity=opacity, ring=ring, inset=inset, name=name, mask=mask))

    @staticmethod
    def _positive(*sizes):
        """Sizes (half-axes, radii) must stay positive for every allowed latent."""
        for x in sizes:
            x = _aff(x)
            assert x.base - _V_MAX * sum(abs(c) for c in x.terms.values()) > 0.0, "size can reach zero"

    def ellipse(self, cx, cy, a, b, color, angle=0.0, **style):
        self._positive(a, b)
        self._add("ellipse", [cx, cy, a, b, _half_tan(angle)], color, **style)

    def circle(self, cx, cy, r, color, **style):
        self.ellipse(cx, cy, r, r, color, **style)

    def capsule(self, ax, ay, bx, by, r, color, **style):
        self._positive(r)
        self._add("capsule", [ax, ay, bx, by, r], color, **style)

    def polygon(self, pts, color, **style):
        """Convex polygon with 3 or 4 vertices (either winding)."""
        pts = [(_aff(x), _aff(y)) for x, y in pts]
        if len(pts) == 3:  # pad to 4 with an edge midpoint (same half-plane twice)
            pts.append(((pts[2][0] + pts[0][0]) * 0.5, (pts[2][1] + pts[0][1]) * 0.5))
        area = sum(a[0].base * b[1].base - b[0].base * a[1].base for a, b in zip(pts, pts[1:] + pts[:1]))
        if area < 0:
            pts = pts[::-1]
        self._add("polygon", [c for p in pts for c in p], color, **style)

    def hook(self, fn):
        self.hooks.setdefault(len(self.layers), []).append(fn)


# ----------------------------------------------------------------------------------------------------
# TF helpers and signed distances. Layout inside the renderer is channels-first: images [n,3,H,W],
# coordinates [1 or n,1,H,W]; a group of G primitives has parameters [n,G,1,1] -> distances [n,G,H,W].


def _frac(v):
    return v - tf.floor(v)


def _tri(v):
    """Triangle wave with period 1, values in [0, 1] (0 at integers)."""
    return 1.0 - tf.abs(_frac(v) - 0.5) * 2.0


def _smooth01(t):
    t = tf.clip_by_value(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sd_ellipse(X, Y, cx, cy, a, b, t):
    """Approximate signed distance to ellipses with half-axes a, b, rotated by 2*atan(t)."""
    den = 1.0 + t * t
    cos, sin = (1.0 - t * t) / den, (2.0 * t) / den
    dx, dy = X - cx, Y - cy
    lx = (dx * cos + dy * sin) / a
    ly = (dy * cos - dx * sin) / b
    return (tf.sqrt(lx * lx + ly * ly) - 1.0) * tf.minimum(a, b)


def _sd_capsule(X, Y, ax, ay, bx, by, r):
    """Distance to the segments a-b minus r (rounded strokes: legs, necks, antennae)."""
    pax, pay = X - ax, Y - ay
    bax, bay = bx - ax, by - ay
    h = tf.clip_by_value((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0.0, 1.0)
    qx, qy = pax - bax * h, pay - bay * h
    return tf.sqrt(qx * qx + qy * qy) - r


def _sd_polygon(X, Y, *xy):
    """Signed distance (exact inside, approximate outside) to convex counter-clockwise quads."""
    d = None
    for i in range(4):
        ax, ay, bx, by = xy[2 * i], xy[2 * i + 1], xy[(2 * i + 2) % 8], xy[(2 * i + 3) % 8]
        ex, ey = bx - ax, by - ay
        # Note: no 1/x or 1/sqrt(x) here: TF's CPU kernels compute those with approximate SIMD
        # instructions for full vector lanes and exactly for the rest, which breaks per-sample identity.
        length = tf.maximum(tf.sqrt(ex * ex + ey * ey), 1e-6)
        di = (X - ax) * (ey / length) - (Y - ay) * (ex / length)
        d = di if d is None else tf.maximum(d, di)
    return d


_SD = {"ellipse": _sd_ellipse, "capsule": _sd_capsule, "polygon": _sd_polygon}


class _Canvas:
    """The image being painted for one group of samples that share a class slot."""

    def __init__(self, v, x, y, px):
        self.v = v  # [n, 64] latent controls
        self.x, self.y = x, y  # image coordinates, [1,1,H,W]
        p = self.p
        cx, cy = 0.14 * p(0), 0.09 * p(1)
        self.s = 1.0 + 0.11 * p(2)
        t = 0.08 * p(3)  # tan of half the tilt (about +-0.16 rad per unit)
        cos, sin = (1.0 - t * t) / (1.0 + t * t), (2.0 * t) / (1.0 + t * t)
        dx, dy = x - cx, y - cy
        self.X = (dx * cos + dy * sin) / self.s  # object coordinates
        self.Y = (dy * cos - dx * sin) / self.s
        self.w_img = _EDGE_PX * px  # soft edge in image units
        self.w = self.w_img / self.s  # ... and in object units
        self.img = None
        self.alpha: dict[str, tf.Tensor] = {}

    def p(self, k):
        """Control k as an [n,1,1,1] tensor."""
        return tf.reshape(self.v[:, k], [-1, 1, 1, 1])

    def bg_gradient(self, top, bottom, horizon=None, soft=0.08):
        """Start the canvas with a vertical gradient, or a soft sky/ground split at y = horizon."""
        bright = 1.0 + 0.07 * self.p(7)
        tint = tf.constant([0.03, 0.0, -0.03], tf.float32, [1, 3, 1, 1]) * self.p(8)
        if horizon is None:
            t = _smooth01((self.y + 1.0) * 0.5)
        else:
            t = _smooth01((self.y - horizon) / soft + 0.5)
        top_c = tf.constant(top, tf.float32, [1, 3, 1, 1])
        bot_c = tf.constant(bottom, tf.float32, [1, 3, 1, 1])
        self.img = (top_c + (bot_c - top_c) * t) * bright + tint

    def paint_alpha(self, alpha, color):
        if isinstance(color, (tuple, list)):
            color = tf.constant(color, tf.float32, [1, 3, 1, 1])
        self.img = self.img + (color - self.img) * alpha

    def paint(self, d, color, soft=1.0, image_units=False):
        """Paint a shape given directly by its signed distance d (for custom shapes in hooks)."""
        w = (self.w_img if image_units else self.w) * soft
        self.paint_alpha(_smooth01(0.5 - d / w), color)


def _draw_scene(scene: _Scene, c: _Canvas) -> None:
    """Paint `scene` on canvas `c`: background, then all layers back to front (with hooks between)."""
    scene.background(c)
    layers = scene.layers
    # all parameters at once: vals[:, j] = base_j + sum_t coef_tj * v[:, idx_tj]
    n_terms = max(1, max(len(p.terms) for p in scene.params))
    idx = np.zeros([n_terms, len(scene.params)], np.int32)
    coef = np.zeros([n_terms, len(scene.params)], np.float32)
    for j, p in enumerate(scene.params):
        for t, (k, cf) in enumerate(sorted(p.terms.items())):
            idx[t, j], coef[t, j] = k, cf
    vals = tf.constant([p.base for p in scene.params], tf.float32)[None, :]
    for t in range(n_terms):
        vals = vals + tf.gather(c.v, idx[t], axis=1) * coef[t]

    # coverage of every layer, one batch of ops per (kind, frame) group
    groups: dict[tuple[str, str], list[int]] = {}
    for i, layer in enumerate(layers):
        groups.setdefault((layer["kind"], layer["frame"]), []).append(i)
    by_layer = {}
    for (kind, frame), ids in groups.items():
        n_par = len(layers[ids[0]]["shape"])
        pidx = np.array([layers[i]["shape"] for i in ids], np.int32).T.reshape(-1)  # param-major
        prm = tf.reshape(tf.gather(vals, pidx, axis=1), [-1, n_par, len(ids), 1, 1])
        X, Y, w = (c.X, c.Y, c.w) if frame == "obj" else (c.x, c.y, c.w_img)
        full = tf.stack([tf.shape(vals)[0], len(ids), tf.shape(c.x)[2], tf.shape(c.x)[3]])
        X, Y = tf.broadcast_to(X, full), tf.broadcast_to(Y, full)  # (one-sided broadcasts are much faster)
        d = _SD[kind](X, Y, *tf.unstack(prm, axis=1))
        ring = np.array([layers[i]["ring"] for i in ids], np.float32).reshape(-1, 1, 1)
        if ring.any():
            is_ring = (ring > 0).astype(np.float32)
            d = d + is_ring * (tf.abs(d) - d) - ring
        inset = np.array([layers[i]["inset"] for i in ids], np.float32).reshape(-1, 1, 1)
        if inset.any():
            d = d + inset
        soft = np.array([layers[i]["soft"] for i in ids], np.float32).reshape(-1, 1, 1)
        alpha = _smooth01(0.5 - d / (w * soft))
        opacity = np.array([layers[i]["opacity"] for i in ids], np.float32).reshape(-1, 1, 1)
        if (opacity != 1.0).any():
            alpha = alpha * opacity
        by_layer.update(zip(ids, tf.split(alpha, len(ids), axis=1)))
    alphas = [by_layer[i] for i in range(len(layers))]  # back into painting order
    cidx = np.array([layer["color"] for layer in layers], np.int32).reshape(-1)
    colors = tf.split(tf.reshape(tf.gather(vals, cidx, axis=1), [-1, 3 * len(layers), 1, 1]), len(layers), axis=1)
    c.alpha = {layer["name"]: alphas[i] for i, layer in enumerate(layers) if layer["name"]}

    for i, layer in enumerate(layers):
        for fn in scene.hooks.get(i, []):
            fn(c)
        a = alphas[i]
        if layer["mask"]:
            inside = c.alpha[layer["mask"][0]]
            for name in layer["mask"][1:]:
                inside = tf.maximum(inside, c.alpha[name])
            a = a * inside
        c.paint_alpha(a, colors[i])
    for fn in scene.hooks.get(len(layers), []):
        fn(c)


# ----------------------------------------------------------------------------------------------------
# The eight demo classes (object frame: x right, y down, the animal fits roughly in [-0.85, 0.85]²)

P = _P


def _goldfish() -> _Scene:
    def background(c):
        c.bg_gradient((0.30, 0.62, 0.72), (0.05, 0.24, 0.36))
        gravel = _smooth01((c.y - 0.84 + 0.03 * _tri(c.x * 4.0)) / 0.05 + 0.5)
        c.paint_alpha(gravel, (0.55, 0.5, 0.3))

    sc = _Scene(background)
    for i, (bx, by, r) in enumerate([(-0.65, -0.6, 0.05), (0.7, -0.35, 0.035), (0.55, 0.62, 0.045)]):
        sc.circle(bx + 0.08 * P(20 + i), by + 0.1 * P(23 + i), r, (0.8, 0.95, 1.0), frame="img", ring=0.008,
                  opacity=0.8)  # bubbles
    body, fin = _jit((1.0, 0.48, 0.06), 0.07), _jit((1.0, 0.62, 0.2), 0.07)
    wag, tail = 0.12 * P(10), 0.42 + 0.06 * P(11)
    sc.polygon([(-0.36, 0.0), (-0.36 - tail, -0.32 + wag), (-0.28 - tail, wag), (-0.36 - tail, 0.32 + wag)],
               fin, soft=1.5)
    sc.polygon([(-0.15, -0.2), (0.2, -0.22), (-0.1, -0.39 - 0.04 * P(12))], fin, soft=1.5)  # dorsal fin
    sc.polygon([(-0.05, 0.2), (0.15, 0.2), (0.0, 0.35 + 0.03 * P(13))], fin, soft=1.5)
    sc.ellipse(0.04, 0.0, 0.46, 0.27 + 0.03 * P(14), body)
    sc.ellipse(0.08, 0.1, 0.34, 0.13, (1.0, 0.78, 0.42), soft=6.0, opacity=0.7)  # belly
    sc.ellipse(0.24, 0.0, 0.03, 0.2, (0.85, 0.35, 0.02), angle=0.2, soft=2.0, opacity=0.6)  # gill
    sc.circle(0.35, -0.06, 0.065, (1.0, 1.0, 1.0))
    sc.circle(0.36 + 0.01 * P(15), -0.06, 0.035, (0.02, 0.02, 0.05))
    return sc


def _ostrich() -> _Scene:
    horizon = 0.2

    def background(c):
        h = horizon + 0.1 * c.p(20)
        c.bg_gradient((0.62, 0.78, 0.95), (0.80, 0.70, 0.45), horizon=h, soft=0.06)
        bush = _smooth01((0.05 - tf.abs(c.y - h + 0.02 + 0.04 * _tri(c.x * 3.0 + c.p(21)))) / 0.04)
        c.paint_alpha(bush * 0.7, (0.45, 0.55, 0.3))

    sc = _Scene(background)
    skin = _jit((0.88, 0.66, 0.60), 0.05)
    step = 0.08 * P(10)
    sc.capsule(-0.08, 0.05, -0.14 - step, 0.86, 0.035, skin)  # legs and feet
    sc.capsule(0.10, 0.05, 0.16 + step, 0.86, 0.035, skin)
    sc.ellipse(-0.15 - step, 0.88, 0.07, 0.025, skin)
    sc.ellipse(0.2 + step, 0.88, 0.07, 0.025, skin)
    sc.ellipse(0.0, -0.08, 0.40, 0.25 + 0.02 * P(11), _jit((0.13, 0.11, 0.10), 0.03), angle=-0.1)  # plumage
    sc.ellipse(-0.36, -0.12 + 0.04 * P(12), 0.15, 0.11, (0.96, 0.95, 0.92), angle=0.3)  # tail plume
    sc.ellipse(-0.05, -0.12, 0.16, 0.06, (0.9, 0.88, 0.84), angle=-0.1, soft=4.0, opacity=0.7)  # wing
    nx, ny = 0.36 + 0.07 * P(13), -0.72 + 0.04 * P(14)
    sc.capsule(0.26, -0.16, nx, ny, 0.04, skin)  # neck
    sc.capsule(0.26, -0.16, 0.3 + 0.5 * (nx - 0.3), -0.25, 0.06, (0.75, 0.7, 0.68))
    sc.ellipse(nx + 0.02, ny, 0.08, 0.065, skin)  # head, beak, eye
    sc.polygon([(nx + 0.06, ny - 0.02), (nx + 0.2, ny + 0.02), (nx + 0.06, ny + 0.04)], (0.85, 0.7, 0.5))
    sc.circle(nx + 0.03, ny - 0.015, 0.018, (0.05, 0.03, 0.03))
    return sc


def _flamingo() -> _Scene:
    def background(c):
        h = 0.05 + 0.1 * c.p(20)
        c.bg_gradient((0.78, 0.88, 0.96), (0.36, 0.58, 0.72), horizon=h, soft=0.05)
        ripple = _smooth01(1.0 - tf.abs(_frac(c.y * 9.0 + 0.3 * c.p(21) + 0.5 * _tri(c.x * 1.5)) - 0.5) * 6.0)
        c.paint_alpha(ripple * 0.25 * _smooth01((c.y - h) * 4.0), (0.85, 0.93, 1.0))

    sc = _Scene(background)
    pink, leg = _jit((0.97, 0.45, 0.58), 0.06), (0.93, 0.5, 0.55)
    sc.capsule(0.0, 0.1, 0.02 + 0.06 * P(10), 0.88, 0.022, leg)
    kx, ky = -0.2 + 0.05 * P(11), 0.45
    sc.capsule(-0.06, 0.1, kx, ky, 0.02, leg)  # the folded leg
    sc.capsule(kx, ky, kx + 0.16, ky + 0.05, 0.02, leg)
    sc.polygon([(-0.28, -0.16), (-0.5, -0.05 + 0.05 * P(12)), (-0.28, 0.06)], (0.8, 0.28, 0.38))  # tail
    sc.ellipse(0.0, -0.06, 0.32, 0.17, pink, angle=-0.12)
    sc.ellipse(-0.08, -0.1, 0.2, 0.08, (0.85, 0.3, 0.42), angle=-0.2, soft=3.0, opacity=0.8)  # wing
    hx, hy, mx = 0.2 + 0.06 * P(13), -0.72 + 0.04 * P(14), 0.38 + 0.05 * P(15)
    sc.capsule(0.22, -0.12, mx, -0.42, 0.03, pink)  # S-shaped neck
    sc.capsule(mx, -0.42, hx, hy, 0.03, pink)
    sc.circle(hx + 0.02, hy, 0.06, pink)
    sc.capsule(hx + 0.06, hy, hx + 0.14, hy + 0.12, 0.025, (0.98, 0.9, 0.85))  # beak with black tip
    sc.capsule(hx + 0.12, hy + 0.09, hx + 0.14, hy + 0.12, 0.026, (0.08, 0.05, 0.05))
    sc.circle(hx + 0.03, hy - 0.015, 0.013, (0.1, 0.05, 0.02))
    return sc


def _golden_retriever() -> _Scene:
    def background(c):
        c.bg_gradient((0.72, 0.84, 0.92), (0.34, 0.56, 0.22), horizon=0.28 + 0.1 * c.p(20), soft=0.1)
        grass = _tri(c.x * 23.0 + 0.4 * _tri(c.y * 5.0)) * _smooth01((c.y - 0.3) * 3.0)
        c.paint_alpha(0.12 * grass, (0.2, 0.35, 0.12))

    sc = _Scene(background)
    fur = _jit((0.86, 0.60, 0.26), 0.07)
    walk = 0.07 * P(10)
    for lx, ph in [(-0.4, 1.0), (-0.25, -1.0), (0.12, -1.0), (0.26, 1.0)]:
        sc.capsule(lx, 0.1, lx + ph * walk, 0.66, 0.062, _shade(fur, 0.8) if ph > 0 else fur)
    sc.capsule(-0.5, -0.02, -0.78, -0.28 + 0.12 * P(11), 0.055, fur)  # tail
    sc.ellipse(-0.1, 0.02, 0.47, 0.23 + 0.02 * P(12), fur)
    sc.ellipse(0.2, 0.12, 0.22, 0.12, (0.95, 0.78, 0.48), soft=6.0, opacity=0.6)  # chest
    hx, hy = 0.42 + 0.04 * P(13), -0.28 + 0.05 * P(14)
    sc.circle(hx, hy, 0.2, fur)
    sc.ellipse(hx + 0.18, hy + 0.07, 0.14, 0.095, (0.95, 0.78, 0.5))  # snout
    sc.ellipse(hx - 0.1, hy + 0.1, 0.075, 0.17 + 0.02 * P(15), (0.68, 0.42, 0.14), angle=0.25 + 0.1 * P(16))
    sc.circle(hx + 0.31, hy + 0.04, 0.038, (0.05, 0.03, 0.03))  # nose
    sc.circle(hx + 0.07, hy - 0.06, 0.026, (0.08, 0.05, 0.03))  # eye
    sc.ellipse(hx + 0.2, hy + 0.17, 0.04, 0.05 + 0.012 * P(17), (0.9, 0.4, 0.45))  # tongue
    return sc


def _tabby() -> _Scene:
    def background(c):
        c.bg_gradient((0.86, 0.80, 0.70), (0.52, 0.38, 0.26), horizon=0.5 + 0.08 * c.p(20), soft=0.04)
        boards = _tri(c.x * 4.0 + 0.3 * c.p(21)) * _smooth01((c.y - 0.5) * 20.0)
        c.paint_alpha(0.1 * boards, (0.3, 0.2, 0.12))

    def stripes(c):
        inside = tf.maximum(c.alpha["body"], c.alpha["head"])
        bands = _smooth01((_tri(c.Y * 5.5 + 0.8 * c.X * c.X + 0.25 * c.p(13)) - 0.62) * 6.0)
        bands = bands * _smooth01((c.Y + 0.02) * 10.0)
        brow = _smooth01((_tri(c.X * 9.0) - 0.55) * 6.0) * _smooth01((-0.38 - c.Y) * 12.0)  # forehead "M"
        c.paint_alpha(inside * tf.maximum(bands, brow) * 0.85, (0.22, 0.19, 0.16))

    sc = _Scene(background)
    fur = _jit((0.56, 0.50, 0.42), 0.05)
    sc.capsule(0.25, 0.7, 0.55 + 0.08 * P(10), 0.45 + 0.08 * P(11), 0.05, fur)  # tail
    sc.ellipse(0.0, 0.34, 0.34, 0.42, fur, name="body")
    sc.circle(0.0, -0.3, 0.27, fur, name="head")
    for sx in (-1.0, 1.0):
        sc.polygon([(0.26 * sx, -0.38), (0.06 * sx, -0.5), ((0.24 + 0.03 * P(12)) * sx, -0.72)], fur)
        sc.polygon([(0.22 * sx, -0.45), (0.12 * sx, -0.5), (0.21 * sx, -0.64)], (0.85, 0.6, 0.6))
    sc.hook(stripes)
    sc.ellipse(0.0, 0.3, 0.16, 0.26, (0.78, 0.73, 0.64), soft=6.0, opacity=0.6)  # chest
    sc.ellipse(0.0, -0.17, 0.13, 0.09, (0.8, 0.76, 0.68), soft=3.0)  # muzzle
    for sx in (-1.0, 1.0):
        sc.ellipse(0.11 * sx, -0.32, 0.062, 0.045, (0.55, 0.72, 0.2))  # eyes with slit pupils
        sc.ellipse(0.11 * sx + 0.01 * P(14), -0.32, 0.014, 0.04, (0.02, 0.02, 0.02))
        for wy in (-0.06, 0.09):
            sc.capsule(0.07 * sx, -0.17, 0.32 * sx, -0.19 + wy, 0.004, (0.95, 0.95, 0.9), opacity=0.8)
        sc.ellipse(0.15 * sx, 0.77, 0.1, 0.05, _shade(fur, 1.1))  # paws
    sc.polygon([(-0.035, -0.22), (0.035, -0.22), (0.0, -0.18)], (0.85, 0.5, 0.5))  # nose
    return sc


def _lion() -> _Scene:
    def background(c):
        c.bg_gradient((0.90, 0.83, 0.62), (0.72, 0.58, 0.28), horizon=0.35 + 0.1 * c.p(20), soft=0.2)
        grass = _tri(c.x * 17.0 + 0.4 * _tri(c.y * 3.0)) * _smooth01((c.y - 0.3) * 3.0)
        c.paint_alpha(0.12 * grass, (0.5, 0.38, 0.12))

    mane = _jit((0.55, 0.28, 0.08), 0.06)

    def mane_hook(c):
        X, Y = c.X, c.Y + 0.05
        r = tf.sqrt(X * X + Y * Y) + 1e-6
        spikes = 0.06 * _tri(6.0 * X / r + 2.0 * Y / r + 0.5 * c.p(10))  # ragged outline
        mane_r = 0.64 + 0.05 * c.p(11)
        col = tf.constant([m.base for m in mane], tf.float32, [1, 3, 1, 1])
        col = col + 0.06 * tf.concat([c.p(4), c.p(5), c.p(6)], axis=1)
        c.paint(r - mane_r - spikes, col, soft=2.0)
        c.paint_alpha(_smooth01(0.5 - (r - mane_r * 0.82 - spikes) / (4.0 * c.w)) * 0.7, col * 1.3)

    sc = _Scene(background)
    sc.ellipse(0.0, 0.72, 0.5, 0.3, _shade(mane, 1.35))  # shoulders
    sc.hook(mane_hook)
    face = _jit((0.86, 0.64, 0.34), 0.05)
    for sx in (-1.0, 1.0):
        sc.circle(0.26 * sx, -0.38, 0.085, face)  # ears
        sc.circle(0.26 * sx, -0.38, 0.04, (0.35, 0.2, 0.1))
    sc.ellipse(0.0, -0.02, 0.32, 0.38, face)
    sc.ellipse(0.0, 0.2, 0.19, 0.14, (0.96, 0.88, 0.7))  # muzzle, nose, mouth
    sc.polygon([(-0.08, 0.04), (0.08, 0.04), (0.0, 0.13)], (0.3, 0.15, 0.12))
    sc.capsule(0.0, 0.13, 0.0, 0.22, 0.008, (0.3, 0.15, 0.12))
    sc.capsule(-0.08, 0.27, 0.08, 0.27, 0.008 + 0.002 * P(12), (0.3, 0.15, 0.12))
    for sx in (-1.0, 1.0):
        sc.ellipse(0.13 * sx, -0.12, 0.06, 0.04, (0.85, 0.65, 0.15))
        sc.circle(0.13 * sx + 0.01 * P(13), -0.12, 0.022, (0.05, 0.03, 0.02))
    return sc


def _monarch() -> _Scene:
    def background(c):
        c.bg_gradient((0.42, 0.62, 0.28), (0.18, 0.36, 0.14))

    def dots(c):  # white dots in the black wing border
        border = tf.maximum(c.alpha["w0"], c.alpha["w1"]) * (1.0 - tf.maximum(c.alpha["o0"], c.alpha["o1"]))
        for name in ("w2", "w3"):
            border = tf.maximum(border, c.alpha[name] * (1.0 - c.alpha["o" + name[1]]))
        gx, gy = _frac(c.X * 13.0 + 0.5) - 0.5, _frac(c.Y * 13.0 + 0.5) - 0.5
        dot = _smooth01(0.5 - (tf.sqrt(gx * gx + gy * gy) / 13.0 - 0.014) / c.w)
        c.paint_alpha(dot * border * _smooth01((tf.abs(c.X) - 0.1) * 20.0), (0.98, 0.97, 0.92))

    sc = _Scene(background)
    for i, (lx, ly) in enumerate([(-0.7, -0.7), (0.6, -0.5), (-0.5, 0.6), (0.75, 0.7)]):
        sc.ellipse(lx + 0.15 * P(20 + i), ly + 0.15 * P(24 + i), 0.35, 0.14, (0.55, 0.75, 0.35),
                   angle=0.6 + 0.5 * i, frame="img", soft=12.0, opacity=0.55)  # blurred leaves
    orange, black = _jit((0.98, 0.52, 0.05), 0.05), (0.04, 0.03, 0.03)
    spread = 1.0 + 0.12 * P(10)  # wing opening
    wings = []
    for sx in (-1.0, 1.0):
        wings.append((0.34 * sx * spread, -0.2, 0.38 * spread, 0.25, 0.45 * sx + 0.05 * P(11)))  # forewing
        wings.append((0.25 * sx * spread, 0.25, 0.27 * spread, 0.23, -0.5 * sx))  # hindwing
    names = ["w0", "w2", "w1", "w3"]  # w0/w1 forewings, w2/w3 hindwings
    for (cx, cy, a, b, ang), name in zip(wings, names):
        sc.ellipse(cx, cy, a, b, black, angle=ang, name=name)
    for (cx, cy, a, b, ang), name in zip(wings, names):
        sc.ellipse(cx, cy, a, b, orange, angle=ang, inset=0.05, name="o" + name[1])
    for ang in (-0.9, -0.4, 0.15, 0.7):  # veins, only inside the wings
        for sx in (-1.0, 1.0):
            sc.capsule(0.0, 0.0, 0.75 * math.cos(ang) * sx * spread, 0.75 * math.sin(ang), 0.004, black,
                       soft=1.3, mask=names)
    for cx, cy, a, b, ang in wings[::2]:  # dark line between fore- and hindwing
        sc.ellipse(cx, cy, a, b, black, angle=ang, ring=0.008)
    sc.hook(dots)
    sc.capsule(0.0, -0.3, 0.0, 0.38, 0.045, black)  # body, head, antennae
    sc.circle(0.0, -0.38, 0.06, black)
    for sx in (-1.0, 1.0):
        tip = (0.18 + 0.05 * P(12)) * sx
        sc.capsule(0.02 * sx, -0.42, tip, -0.7, 0.007, black)
        sc.circle(tip, -0.7, 0.018, black)
    return sc


def _giant_panda() -> _Scene:
    def background(c):
        c.bg_gradient((0.55, 0.72, 0.38), (0.30, 0.48, 0.20))
        stalks = _smooth01((tf.abs(_frac(c.x * 2.6 + 0.3 * c.p(20)) - 0.5) - 0.36) * 25.0)
        nodes = _smooth01((tf.abs(_frac(c.y * 2.2 + 0.2 * c.p(21)) - 0.5) - 0.47) * 60.0)
        c.paint_alpha(stalks * 0.65, (0.68, 0.8, 0.38))
        c.paint_alpha(stalks * nodes * 0.6, (0.32, 0.45, 0.18))

    sc = _Scene(background)
    white, black = _jit((0.95, 0.94, 0.9), 0.02), (0.06, 0.06, 0.07)
    sc.ellipse(0.0, 0.36, 0.4, 0.4, white)  # body
    for sx in (-1.0, 1.0):
        sc.ellipse(0.27 * sx, 0.7, 0.17, 0.12, black, angle=0.35 * sx)  # hind legs with pale soles
        sc.ellipse(0.3 * sx, 0.72, 0.07, 0.06, (0.55, 0.5, 0.45), angle=0.35 * sx)
    sc.ellipse(0.0, 0.07, 0.43, 0.11, black)  # shoulder band
    arm = 0.05 * P(10)
    for sx in (-1.0, 1.0):
        sc.capsule(0.33 * sx, 0.08, (0.13 + arm) * sx, 0.38, 0.085, black)  # arms hugging the belly
        sc.circle(0.24 * sx, -0.56, 0.1 + 0.015 * P(11), black)  # ears
    sc.ellipse(0.0, -0.32, 0.3, 0.27, white)  # head
    for sx in (-1.0, 1.0):
        sc.ellipse(0.12 * sx, -0.35, 0.075, 0.11, black, angle=0.5 * sx + 0.1 * P(12))  # eye patches
        sc.circle(0.12 * sx + 0.01 * P(13), -0.37, 0.02, (0.9, 0.9, 0.9))
    sc.ellipse(0.0, -0.22, 0.05, 0.035, black)
    sc.capsule(-0.04, -0.15, 0.04, -0.15, 0.006, black)
    return sc


def _generic(c: _Canvas, cls) -> None:
    """Any class outside the demo set: a blob creature whose palette and proportions come from its index."""
    k = tf.reshape(tf.cast(cls, tf.float32), [-1, 1, 1, 1])
    hue = _frac(k * 0.6180339)

    def hue_rgb(h, light):
        r = tf.clip_by_value(tf.abs(h * 6.0 - 3.0) - 1.0, 0.0, 1.0)
        g = tf.clip_by_value(2.0 - tf.abs(h * 6.0 - 2.0), 0.0, 1.0)
        b = tf.clip_by_value(2.0 - tf.abs(h * 6.0 - 4.0), 0.0, 1.0)
        return tf.concat([r, g, b], axis=1) * light + (1.0 - light) * 0.5

    c.bg_gradient((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    top = hue_rgb(_frac(hue + 0.5), 0.5)
    c.img = c.img + top + (top * 0.6 - top) * _smooth01((c.y + 1.0) * 0.5)
    body = hue_rgb(hue, 0.8) + 0.06 * tf.concat([c.p(4), c.p(5), c.p(6)], axis=1)
    a, b = 0.3 + 0.25 * _frac(k * 0.377), 0.18 + 0.15 * _frac(k * 0.531)
    zero = tf.zeros_like(a)
    c.paint(_sd_ellipse(c.X, c.Y, zero, zero + 0.1, a, b, zero), body)
    hr = 0.12 + 0.08 * _frac(k * 0.291)
    hx, hy = a * 0.85, 0.1 - b * 0.8
    c.paint(_sd_ellipse(c.X, c.Y, hx, hy, hr, hr, zero), body * 0.85)
    c.paint(_sd_ellipse(c.X, c.Y, hx + hr * 0.35, hy - hr * 0.2, hr * 0.25, hr * 0.25, zero), (0.02, 0.02, 0.02))


_SCENE_FNS = [_goldfish, _ostrich, _flamingo, _golden_retriever, _tabby, _lion, _monarch, _giant_panda]
assert [DEMO_CLASSES[k][1] for k in _SORTED_DEMO] == [f.__name__[1:] for f in _SCENE_FNS]
_SCENES = [f() for f in _SCENE_FNS]


# ----------------------------------------------------------------------------------------------------
# The renderer


def _draw_slot(slot: int, v, cls, height, width):
    """Pictures for samples that all fall in one class slot: float32 [n, height, width, 3] in ~[0, 1]."""
    hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    px = 2.0 / tf.minimum(hf, wf)  # one pixel in normalised units (the shorter side spans [-1, 1])
    x = tf.reshape((tf.range(wf) + 0.5 - wf * 0.5) * px, [1, 1, 1, -1]) + tf.zeros(tf.stack([1, 1, height, 1]))
    y = tf.reshape((tf.range(hf) + 0.5 - hf * 0.5) * px, [1, 1, -1, 1]) + tf.zeros(tf.stack([1, 1, 1, width]))
    c = _Canvas(v, x, y, px)
    if slot < len(_SCENES):
        _draw_scene(_SCENES[slot], c)
    else:
        _generic(c, cls)
    img = c.img * (1.0 - 0.06 * c.p(9) * y)  # a little light from above or below
    img = tf.broadcast_to(img, tf.stack([tf.shape(v)[0], 3, height, width]))
    return tf.transpose(img, [0, 2, 3, 1])


_SLOT_FNS: dict[int, tf.types.experimental.PolymorphicFunction] = {}


def _slot_fn(slot: int):
    """One traced graph per class slot (traced on first use, shared by the tree and the teacher)."""
    if slot not in _SLOT_FNS:
        def draw(v, cls, height, width):
            return _draw_slot(slot, v, cls, height, width)

        draw.__name__ = draw.__qualname__ = f"draw_slot_{slot}"  # a unique graph name (see _canonical_saved_model)
        _SLOT_FNS[slot] = tf.function(
            draw,
            autograph=False,
            input_signature=[tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32),
                             tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
        )
    return _SLOT_FNS[slot]


def render(z, y_onehot, truncation, height, width) -> tf.Tensor:
    """Draw class-conditional pictures: float32 [N, height, width, 3] in [-1, 1].

    z: float [N, 128] latents; y_onehot: float [N, 1000] (the class is its argmax); truncation: scalar
    (variation also scales with sqrt(truncation), on top of the caller's z scaling); height, width: ints
    or int32 scalar tensors. Deterministic and per-sample (bit-identical whatever the batch). Works
    eagerly (then only the class slots present are run) and inside tf.function.
    """
    z = tf.ensure_shape(tf.convert_to_tensor(z, tf.float32), [None, Z_DIM])
    y_onehot = tf.ensure_shape(tf.convert_to_tensor(y_onehot, tf.float32), [None, NUM_CLASSES])
    truncation = tf.convert_to_tensor(truncation, tf.float32)
    height = tf.convert_to_tensor(height, tf.int32)
    width = tf.convert_to_tensor(width, tf.int32)

    u = tf.clip_by_value(z * tf.sqrt(tf.maximum(truncation, 0.0)), -2.5, 2.5)
    v = tf.clip_by_value((u[:, :64] + u[:, 64:]) * 0.70710677, -_V_MAX, _V_MAX)
    cls = tf.argmax(y_onehot, axis=1, output_type=tf.int32)
    slot_table = np.full([NUM_CLASSES], len(_SCENES), np.int32)
    slot_table[_SORTED_DEMO] = np.arange(len(_SCENES))
    slot = tf.gather(slot_table, cls)

    n = tf.shape(z)[0]
    n_slots = len(_SCENES) + 1
    idx_parts = tf.dynamic_partition(tf.range(n), slot, n_slots)
    v_parts = tf.dynamic_partition(v, slot, n_slots)
    cls_parts = tf.dynamic_partition(cls, slot, n_slots)
    # eagerly, run only the slots present; inside a graph every slot is built (empty ones cost little)
    present = set(slot.numpy().tolist()) if tf.executing_eagerly() else set(range(n_slots))
    out_idx, out_img = [], []
    for s in sorted(present):
        out_idx.append(idx_parts[s])
        out_img.append(_slot_fn(s)(v_parts[s], cls_parts[s], height, width))
    out = tf.dynamic_stitch(out_idx, out_img)
    out = tf.clip_by_value(out * 2.0 - 1.0, -1.0, 1.0)
    return tf.reshape(out, tf.stack([n, height, width, 3]))


def render_numpy(z: np.ndarray, classes, truncation: float, height: int, width: int) -> np.ndarray:
    """Convenience: render with integer class labels, returning uint8 [N, H, W, 3] (round((x+1)*127.5))."""
    classes = np.asarray(classes, np.int64).reshape(-1)
    y = np.zeros([len(classes), NUM_CLASSES], np.float32)
    y[np.arange(len(classes)), classes] = 1.0
    img = render(z, y, truncation, height, width).numpy()
    return np.clip(np.round((img + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# The fake teacher (BigGAN-deep-128's Hub interface)


class DemoTeacher(tf.Module):
    """A stand-in for BigGAN-deep-128: same inputs and output, drawn by `render` at 128x128."""

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
        tf.TensorSpec([None, NUM_CLASSES], tf.float32, name="y"),
        tf.TensorSpec([], tf.float32, name="truncation"),
    ])
    def __call__(self, z, y, truncation):
        img = render(z, y, truncation, TEACHER_SIZE, TEACHER_SIZE)
        return {"default": tf.ensure_shape(img, [None, TEACHER_SIZE, TEACHER_SIZE, 3])}


def save_teacher(path: str | os.PathLike) -> None:
    """Save the demo teacher as a SavedModel directory readable by ``tensorflow_hub.load(path)``.

    ``hub.load(path).signatures["default"](z=..., y=..., truncation=...)["default"]`` gives
    float32 [N,128,128,3] in [-1, 1]. Written into a temp dir beside ``path`` and renamed into place.
    The same code gives the same bytes, whatever ran before in the process (see _canonical_saved_model).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        module = DemoTeacher()
        tf.saved_model.save(module, str(tmp), signatures={"default": module.__call__})
        _canonical_saved_model(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_TRACED_NAME = re.compile(r"^__inference_(.+)_(\d+)$")


def _canonical_saved_model(export_dir: Path) -> None:
    """Make a freshly saved SavedModel's bytes depend only on the model, not on the saving process.

    TF names every traced function ``__inference_<name>_<uid>`` with a process-wide counter, so the same
    model saved after other tracing (or twice in one process) gets other names. They are renamed to
    ``__inference_<name>_<k>`` (k numbers functions of the same name in trace order; TF renames functions
    on load anyway), the function library is sorted by name and saved_model.pb rewritten deterministically.
    fingerprint.pb (hashes plus a random UUID, read only for TF's load metrics; loading works without it,
    as for SavedModels from before TF 2.12) is removed.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb = export_dir / "saved_model.pb"
    model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    by_name: dict[str, list[tuple[int, str]]] = {}
    for graph in model.meta_graphs:
        for fdef in graph.graph_def.library.function:
            m = _TRACED_NAME.match(fdef.signature.name)
            if m:
                by_name.setdefault(m.group(1), []).append((int(m.group(2)), fdef.signature.name))
    rename = {old: f"__inference_{name}_{k}" for name, olds in by_name.items()
              for k, (_, old) in enumerate(sorted(olds))}
    rename = {old: new for old, new in rename.items() if old != new}
    _rename_strings(model, lambda s: rename.get(s, s))
    for graph in model.meta_graphs:
        lib = graph.graph_def.library
        fdefs = sorted((type(f).FromString(f.SerializeToString()) for f in lib.function),
                       key=lambda f: f.signature.name)
        del lib.function[:]
        lib.function.extend(fdefs)
    data = model.SerializeToString(deterministic=True)
    left = [old for old in rename if old.encode() in data]
    if left:  # a name stored somewhere other than a string field: a TF change this code must follow
        raise RuntimeError(f"saving the demo teacher: traced function names {left[:3]} were not renamed")
    pb.write_bytes(data)
    (export_dir / "fingerprint.pb").unlink(missing_ok=True)


def _rename_strings(msg, rename) -> None:
    """Apply ``rename`` to every string in a protobuf message: fields, repeated fields, map keys and values."""
    for field, value in msg.ListFields():
        if isinstance(value, str):
            setattr(msg, field.name, rename(value))
        elif hasattr(value, "ListFields"):
            _rename_strings(value, rename)
        elif hasattr(value, "items"):  # a map field
            entries = [(rename(k) if isinstance(k, str) else k, value[k]) for k in list(value)]
            entries = [(k, type(v).FromString(v.SerializeToString()) if hasattr(v, "ListFields")
                        else rename(v) if isinstance(v, str) else v) for k, v in entries]
            value.clear()
            for k, v in entries:
                if hasattr(v, "ListFields"):
                    _rename_strings(v, rename)
                    value[k].CopyFrom(v)
                else:
                    value[k] = v
        elif not isinstance(value, (bytes, bool, int, float)):  # a repeated field
            for i, item in enumerate(value):
                if isinstance(item, str):
                    value[i] = rename(item)
                elif hasattr(item, "ListFields"):
                    _rename_strings(item, rename)


# ----------------------------------------------------------------------------------------------------
# The "real" ImageNet-layout tree


def _check_classes(classes) -> list[int]:
    classes = [int(k) for k in classes]
    if not classes:
        raise TinyGANError("demo classes list is empty; give at least one of " f"{sorted(DEMO_CLASSES)}")
    bad = [k for k in classes if k not in DEMO_CLASSES]
    if bad:
        raise TinyGANError(f"demo classes {bad} have no demo wnid; use a subset of {sorted(DEMO_CLASSES)}")
    if len(set(classes)) != len(classes):
        raise TinyGANError(f"demo classes {classes} contain duplicates; list each class once")
    return classes


def _random_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """(height, width) with aspect width/height in [0.6, 1.7] and both sides within [min_side, max_side]."""
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))
    ratio = min(max(aspect, 1.0 / aspect), max_side / min_side)
    long_side = int(rng.integers(math.ceil(min_side * ratio), max_side + 1))
    short_side = max(min_side, min(max_side, round(long_side / ratio)))
    return (short_side, long_side) if aspect >= 1.0 else (long_side, short_side)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _real_image(cls: int, rng: np.random.Generator, min_side: int, max_side: int) -> np.ndarray:
    """One 'real' photo: untruncated z, truncation 1, random size, brightness jitter and sensor noise."""
    h, w = _random_size(rng, min_side, max_side)
    z = rng.standard_normal([1, Z_DIM]).astype(np.float32)
    img = render_numpy(z, [cls], 1.0, h, w)[0].astype(np.float32)
    img = img * rng.uniform(0.88, 1.12) + rng.uniform(-12, 12)
    img = img + rng.uniform(0.0, 6.0) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_tree(root: str | os.PathLike, classes: list[int], images_per_class: int, seed: int,
              min_side: int = 64, max_side: int = 224, progress: bool = True) -> dict:
    """Write an ImageNet-layout train tree ``<root>/<wnid>/<wnid>_<k>.JPEG`` of synthetic photos.

    Also writes six deliberately bad files, spread over the class dirs: ``<wnid>_bad_truncated.JPEG``
    (cut JPEG), ``<wnid>_bad_empty.JPEG`` (0 bytes), ``<wnid>_bad_gray.JPEG`` (mode L),
    ``<wnid>_bad_cmyk.JPEG`` (CMYK), ``<wnid>_bad_png.JPEG`` (PNG bytes) and ``<wnid>_notes.JPEG`` (text).
    Returns ``{class index: number of good RGB images, "bad_files": {"<wnid>/<file>": kind}}`` with kinds
    from READABLE_BAD_KINDS / UNREADABLE_BAD_KINDS. Deterministic given ``seed`` (each image has its own
    stream seeded by (seed, class, k)). Files of the same name are replaced; other files under ``root``
    are left alone (run it on an empty or fresh dir).
    """
    classes = _check_classes(classes)
    for name, value in (("images_per_class", images_per_class), ("min_side", min_side), ("max_side", max_side)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TinyGANError(f"demo {name} must be an integer, got {value!r}")
    if images_per_class < 1:
        raise TinyGANError(f"demo images_per_class is {images_per_class}; it must be at least 1")
    if not 16 <= min_side <= max_side:
        raise TinyGANError(f"demo sides min_side={min_side}, max_side={max_side}: need 16 <= min_side <= max_side")
    root = Path(root)
    summary: dict = {}
    bar = tqdm(total=len(classes) * images_per_class, desc="demo tree", unit="img", disable=not progress)
    for cls in classes:
        wnid = DEMO_CLASSES[cls][0]
        for k in range(images_per_class):
            rng = np.random.default_rng([seed, cls, k])
            img = _real_image(cls, rng, min_side, max_side)
            quality = int(rng.integers(70, 96))
            write_bytes(root / wnid / f"{wnid}_{k}.JPEG", _jpeg_bytes(Image.fromarray(img), quality))
            bar.update(1)
        summary[cls] = images_per_class
    bar.close()

    bad: dict[str, str] = {}
    kinds = ["truncated", "empty", "grayscale", "cmyk", "png", "text"]
    for i, kind in enumerate(kinds):
        cls = classes[i % len(classes)]
        wnid = DEMO_CLASSES[cls][0]
        rng = np.random.default_rng([seed, cls, 10_000 + i])
        rgb = Image.fromarray(_real_image(cls, rng, min_side, max_side))
        if kind == "truncated":
            data = _jpeg_bytes(rgb, 90)
            name, data = f"{wnid}_bad_truncated.JPEG", data[: len(data) // 2]
        elif kind == "empty":
            name, data = f"{wnid}_bad_empty.JPEG", b""
        elif kind == "grayscale":
            name, data = f"{wnid}_bad_gray.JPEG", _jpeg_bytes(rgb.convert("L"), 90)
        elif kind == "cmyk":
            name, data = f"{wnid}_bad_cmyk.JPEG", _jpeg_bytes(rgb.convert("CMYK"), 90)
        elif kind == "png":
            buf = _io.BytesIO()
            rgb.save(buf, format="PNG")
            name, data = f"{wnid}_bad_png.JPEG", buf.getvalue()
        else:
            name = f"{wnid}_notes.JPEG"
            data = b"Not an image: notes about this class folder, saved with the wrong extension.\n"
        write_bytes(root / wnid / name, data)
        bad[f"{wnid}/{name}"] = kind
    summary["bad_files"] = bad
    return summary


# ----------------------------------------------------------------------------------------------------
# Demo world = tree + teacher + preview


def _square64(path: Path) -> np.ndarray:
    """Centre-crop the long edge to a square and resize to 64x64 (how the prepare stage sees it)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return np.asarray(im.resize((64, 64), Image.BICUBIC))


def write_preview(path: str | os.PathLike, tree_root: str | os.PathLike, classes: list[int],
                  per_side: int = 6, truncation: float = 0.5, seed: int = 0) -> None:
    """PNG contact sheet: per class one row, `per_side` real-tree images | `per_side` teacher samples.

    Teacher samples use the official noise, z = truncation * truncated_normal(+-2), at 128² then 64².
    """
    tree_root = Path(tree_root)
    rows = []
    rng = np.random.default_rng(seed)
    for cls in _check_classes(classes):
        wnid = DEMO_CLASSES[cls][0]
        files = sorted(tree_root.glob(f"{wnid}/{wnid}_[0-9]*.JPEG"), key=lambda p: int(p.stem.split("_")[1]))
        real = [_square64(f) for f in files[:per_side]]
        real += [np.zeros([64, 64, 3], np.uint8)] * (per_side - len(real))
        z = rng.standard_normal([per_side, Z_DIM]).astype(np.float32)
        while np.any(np.abs(z) > 2.0):
            bad = np.abs(z) > 2.0
            z[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
        fake = render_numpy(truncation * z, [cls] * per_side, truncation, TEACHER_SIZE, TEACHER_SIZE)
        fake = [np.asarray(Image.fromarray(f).resize((64, 64), Image.BICUBIC)) for f in fake]
        gap = np.full([64, 8, 3], 255, np.uint8)
        rows.append(np.concatenate(real + [gap] + fake, axis=1))
        rows.append(np.full([2, rows[-1].shape[1], 3], 255, np.uint8))
    sheet = np.concatenate(rows[:-1], axis=0)
    buf = _io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def build(root: str | os.PathLike, classes: list[int], images_per_class: int, seed: int,
          min_side: int = 64, max_side: int = 224, progress: bool = True) -> dict:
    """Make the whole demo world under ``root``: ``imagenet/train`` tree (see make_tree), ``teacher``
    SavedModel (see save_teacher) and ``preview.png`` (see write_preview). Returns make_tree's summary."""
    root = Path(root)
    summary = make_tree(root / "imagenet" / "train", classes, images_per_class, seed, min_side=min_side,
                        max_side=max_side, progress=progress)
    save_teacher(root / "teacher")
    write_preview(root / "preview.png", root / "imagenet" / "train", classes, seed=seed)
    return summary
