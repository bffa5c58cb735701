"""The demo renderer's drawing kit: scene parameters affine in the latent, scene descriptions, signed
distances and the canvas they are painted on (TensorFlow ops).

Coordinates are normalised so the shorter image side spans [-1, 1] (y points down), so an image of any
aspect ratio centre-cropped to a square matches the square rendering. A class is a `Scene`: a background
function plus a back-to-front list of primitives (ellipses, capsules, convex polygons), each with a colour,
whose parameters are affine in the latent controls (`Aff`). Each primitive gives a signed distance d
(negative inside); its coverage is a smoothstep of d over ~1.75 pixels (a compact, sigmoid-shaped soft edge)
and it is painted over the canvas. Primitives of one kind are evaluated together (one set of TF ops per kind)
to keep the graph small. Only per-sample, exactly rounded ops are used (+ - * /, sqrt, abs, floor, min/max,
gather, concat/split; never 1/x, which TF computes with approximate SIMD reciprocals on full vector lanes
only): no matmul, no reductions across the batch, no exp/sin and no random ops, so a sample's pixels are
bit-identical whatever the batch size or its position in the batch.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

_EDGE_PX = 1.75  # width of the soft edge, in pixels
V_MAX = 2.5  # latent controls are clipped to [-V_MAX, V_MAX]


# ----------------------------------------------------------------------------------------------------
# Shape parameters that depend affinely on the latent controls (pure Python, no TF)


class Aff:
    """base + sum_k coef_k * v_k: a scene parameter, affine in the latent controls v."""

    __slots__ = ("base", "terms")

    def __init__(self, base: float = 0.0, terms: dict[int, float] | None = None):
        self.base = float(base)
        self.terms = {k: float(c) for k, c in (terms or {}).items() if c != 0.0}

    def __add__(self, other):
        other = aff(other)
        terms = dict(self.terms)
        for k, c in other.terms.items():
            terms[k] = terms.get(k, 0.0) + c
        return Aff(self.base + other.base, terms)

    __radd__ = __add__

    def __mul__(self, f: float):
        if isinstance(f, Aff):
            raise TypeError("a scene parameter can only be scaled by a number")
        return Aff(self.base * f, {k: c * f for k, c in self.terms.items()})

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-aff(other))

    def __rsub__(self, other):
        return aff(other) - self


def aff(x) -> Aff:
    return x if isinstance(x, Aff) else Aff(float(x))


def P(k: int) -> Aff:
    """Latent control k (about N(0, 1) at truncation 1; |v_k| <= 2.5)."""
    return Aff(0.0, {k: 1.0})


def jitter(rgb, amp: float = 0.0, k: int = 4) -> tuple:
    """A colour whose channels move by amp * v_k, v_{k+1}, v_{k+2}."""
    return tuple(Aff(rgb[i], {k + i: amp}) for i in range(3))


def shade(color, f: float) -> tuple:
    return tuple(aff(ch) * f for ch in color)


def half_tan(angle) -> Aff:
    """tan(angle / 2) (linearised around the base angle when the angle depends on the latent)."""
    angle = aff(angle)
    t0 = math.tan(angle.base / 2.0)
    return Aff(t0, {k: c * 0.5 * (1.0 + t0 * t0) for k, c in angle.terms.items()})


# ----------------------------------------------------------------------------------------------------
# Scenes: a background plus back-to-front primitives


class Scene:
    """Description of one class: background function, layers (primitives) and texture hooks.

    Style options of every primitive: frame ("obj": moves with the animal's pose, "img": fixed to the
    image, for background props), soft (edge width multiplier), opacity, ring (draw only an outline of
    this half-width), inset (shrink by this much), name (to refer to its coverage in hooks and masks) and
    mask (names of earlier layers; paint only inside them).
    """

    def __init__(self, background):
        self.background = background  # fn(canvas) -> sets canvas.img
        self.params: list[Aff] = []
        self.layers: list[dict] = []
        self.hooks: dict[int, list] = {}  # layer position -> fns(canvas) run before painting that layer

    def _add(self, kind, values, color, frame="obj", soft=1.0, opacity=1.0, ring=0.0, inset=0.0,
             name=None, mask=None):
        first = len(self.params)
        self.params += [aff(x) for x in values] + [aff(x) for x in color]
        self.layers.append(dict(
            kind=kind, frame=frame, shape=list(range(first, first + len(values))),
            color=list(range(first + len(values), first + len(values) + 3)),
            soft=soft, opacity=opacity, ring=ring, inset=inset, name=name, mask=mask))

    @staticmethod
    def _positive(*sizes):
        """Sizes (half-axes, radii) must stay positive for every allowed latent."""
        for x in sizes:
            x = aff(x)
            assert x.base - V_MAX * sum(abs(c) for c in x.terms.values()) > 0.0, "size can reach zero"

    def ellipse(self, cx, cy, a, b, color, angle=0.0, **style):
        self._positive(a, b)
        self._add("ellipse", [cx, cy, a, b, half_tan(angle)], color, **style)

    def circle(self, cx, cy, r, color, **style):
        self.ellipse(cx, cy, r, r, color, **style)

    def capsule(self, ax, ay, bx, by, r, color, **style):
        self._positive(r)
        self._add("capsule", [ax, ay, bx, by, r], color, **style)

    def polygon(self, pts, color, **style):
        """Convex polygon with 3 or 4 vertices (either winding)."""
        pts = [(aff(x), aff(y)) for x, y in pts]
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


def frac(v):
    return v - tf.floor(v)


def tri(v):
    """Triangle wave with period 1, values in [0, 1] (0 at integers)."""
    return 1.0 - tf.abs(frac(v) - 0.5) * 2.0


def smooth01(t):
    t = tf.clip_by_value(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def sd_ellipse(X, Y, cx, cy, a, b, t):
    """Approximate signed distance to ellipses with half-axes a, b, rotated by 2*atan(t)."""
    den = 1.0 + t * t
    cos, sin = (1.0 - t * t) / den, (2.0 * t) / den
    dx, dy = X - cx, Y - cy
    lx = (dx * cos + dy * sin) / a
    ly = (dy * cos - dx * sin) / b
    return (tf.sqrt(lx * lx + ly * ly) - 1.0) * tf.minimum(a, b)


def sd_capsule(X, Y, ax, ay, bx, by, r):
    """Distance to the segments a-b minus r (rounded strokes: legs, necks, antennae)."""
    pax, pay = X - ax, Y - ay
    bax, bay = bx - ax, by - ay
    h = tf.clip_by_value((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0.0, 1.0)
    qx, qy = pax - bax * h, pay - bay * h
    return tf.sqrt(qx * qx + qy * qy) - r


def sd_polygon(X, Y, *xy):
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


_SD = {"ellipse": sd_ellipse, "capsule": sd_capsule, "polygon": sd_polygon}


class Canvas:
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
            t = smooth01((self.y + 1.0) * 0.5)
        else:
            t = smooth01((self.y - horizon) / soft + 0.5)
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
        self.paint_alpha(smooth01(0.5 - d / w), color)


def draw_scene(scene: Scene, c: Canvas) -> None:
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
        alpha = smooth01(0.5 - d / (w * soft))
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

