"""The pictures of the eight demo classes, as `Scene`s of the drawing kit (tinygan.demo.canvas), plus the
generic blob creature drawn for every other class.

Object frame: x right, y down, the animal fits roughly in [-0.85, 0.85]². Latent controls (see
tinygan.demo.render): v_0..3 pose (applied by the canvas), v_4..6 body colour, v_7..8 background brightness
and tint, v_9 lighting, v_10..19 class-specific shape details, v_20..29 background details.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tinygan.demo.canvas import P, Canvas, Scene, frac, jitter, sd_ellipse, shade, smooth01, tri
from tinygan.demo.classes import DEMO_CLASSES

SCENE_CLASSES = sorted(DEMO_CLASSES)  # slot i (0..7) <-> class SCENE_CLASSES[i]; slot 8 = generic blob


def _goldfish() -> Scene:
    def background(c):
        c.bg_gradient((0.30, 0.62, 0.72), (0.05, 0.24, 0.36))
        gravel = smooth01((c.y - 0.84 + 0.03 * tri(c.x * 4.0)) / 0.05 + 0.5)
        c.paint_alpha(gravel, (0.55, 0.5, 0.3))

    sc = Scene(background)
    for i, (bx, by, r) in enumerate([(-0.65, -0.6, 0.05), (0.7, -0.35, 0.035), (0.55, 0.62, 0.045)]):
        sc.circle(bx + 0.08 * P(20 + i), by + 0.1 * P(23 + i), r, (0.8, 0.95, 1.0), frame="img", ring=0.008,
                  opacity=0.8)  # bubbles
    body, fin = jitter((1.0, 0.48, 0.06), 0.07), jitter((1.0, 0.62, 0.2), 0.07)
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


def _ostrich() -> Scene:
    horizon = 0.2

    def background(c):
        h = horizon + 0.1 * c.p(20)
        c.bg_gradient((0.62, 0.78, 0.95), (0.80, 0.70, 0.45), horizon=h, soft=0.06)
        bush = smooth01((0.05 - tf.abs(c.y - h + 0.02 + 0.04 * tri(c.x * 3.0 + c.p(21)))) / 0.04)
        c.paint_alpha(bush * 0.7, (0.45, 0.55, 0.3))

    sc = Scene(background)
    skin = jitter((0.88, 0.66, 0.60), 0.05)
    step = 0.08 * P(10)
    sc.capsule(-0.08, 0.05, -0.14 - step, 0.86, 0.035, skin)  # legs and feet
    sc.capsule(0.10, 0.05, 0.16 + step, 0.86, 0.035, skin)
    sc.ellipse(-0.15 - step, 0.88, 0.07, 0.025, skin)
    sc.ellipse(0.2 + step, 0.88, 0.07, 0.025, skin)
    sc.ellipse(0.0, -0.08, 0.40, 0.25 + 0.02 * P(11), jitter((0.13, 0.11, 0.10), 0.03), angle=-0.1)  # plumage
    sc.ellipse(-0.36, -0.12 + 0.04 * P(12), 0.15, 0.11, (0.96, 0.95, 0.92), angle=0.3)  # tail plume
    sc.ellipse(-0.05, -0.12, 0.16, 0.06, (0.9, 0.88, 0.84), angle=-0.1, soft=4.0, opacity=0.7)  # wing
    nx, ny = 0.36 + 0.07 * P(13), -0.72 + 0.04 * P(14)
    sc.capsule(0.26, -0.16, nx, ny, 0.04, skin)  # neck
    sc.capsule(0.26, -0.16, 0.3 + 0.5 * (nx - 0.3), -0.25, 0.06, (0.75, 0.7, 0.68))
    sc.ellipse(nx + 0.02, ny, 0.08, 0.065, skin)  # head, beak, eye
    sc.polygon([(nx + 0.06, ny - 0.02), (nx + 0.2, ny + 0.02), (nx + 0.06, ny + 0.04)], (0.85, 0.7, 0.5))
    sc.circle(nx + 0.03, ny - 0.015, 0.018, (0.05, 0.03, 0.03))
    return sc


def _flamingo() -> Scene:
    def background(c):
        h = 0.05 + 0.1 * c.p(20)
        c.bg_gradient((0.78, 0.88, 0.96), (0.36, 0.58, 0.72), horizon=h, soft=0.05)
        ripple = smooth01(1.0 - tf.abs(frac(c.y * 9.0 + 0.3 * c.p(21) + 0.5 * tri(c.x * 1.5)) - 0.5) * 6.0)
        c.paint_alpha(ripple * 0.25 * smooth01((c.y - h) * 4.0), (0.85, 0.93, 1.0))

    sc = Scene(background)
    pink, leg = jitter((0.97, 0.45, 0.58), 0.06), (0.93, 0.5, 0.55)
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


def _golden_retriever() -> Scene:
    def background(c):
        c.bg_gradient((0.72, 0.84, 0.92), (0.34, 0.56, 0.22), horizon=0.28 + 0.1 * c.p(20), soft=0.1)
        grass = tri(c.x * 23.0 + 0.4 * tri(c.y * 5.0)) * smooth01((c.y - 0.3) * 3.0)
        c.paint_alpha(0.12 * grass, (0.2, 0.35, 0.12))

    sc = Scene(background)
    fur = jitter((0.86, 0.60, 0.26), 0.07)
    walk = 0.07 * P(10)
    for lx, ph in [(-0.4, 1.0), (-0.25, -1.0), (0.12, -1.0), (0.26, 1.0)]:
        sc.capsule(lx, 0.1, lx + ph * walk, 0.66, 0.062, shade(fur, 0.8) if ph > 0 else fur)
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


def _tabby() -> Scene:
    def background(c):
        c.bg_gradient((0.86, 0.80, 0.70), (0.52, 0.38, 0.26), horizon=0.5 + 0.08 * c.p(20), soft=0.04)
        boards = tri(c.x * 4.0 + 0.3 * c.p(21)) * smooth01((c.y - 0.5) * 20.0)
        c.paint_alpha(0.1 * boards, (0.3, 0.2, 0.12))

    def stripes(c):
        inside = tf.maximum(c.alpha["body"], c.alpha["head"])
        bands = smooth01((tri(c.Y * 5.5 + 0.8 * c.X * c.X + 0.25 * c.p(13)) - 0.62) * 6.0)
        bands = bands * smooth01((c.Y + 0.02) * 10.0)
        brow = smooth01((tri(c.X * 9.0) - 0.55) * 6.0) * smooth01((-0.38 - c.Y) * 12.0)  # forehead "M"
        c.paint_alpha(inside * tf.maximum(bands, brow) * 0.85, (0.22, 0.19, 0.16))

    sc = Scene(background)
    fur = jitter((0.56, 0.50, 0.42), 0.05)
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
        sc.ellipse(0.15 * sx, 0.77, 0.1, 0.05, shade(fur, 1.1))  # paws
    sc.polygon([(-0.035, -0.22), (0.035, -0.22), (0.0, -0.18)], (0.85, 0.5, 0.5))  # nose
    return sc


def _lion() -> Scene:
    def background(c):
        c.bg_gradient((0.90, 0.83, 0.62), (0.72, 0.58, 0.28), horizon=0.35 + 0.1 * c.p(20), soft=0.2)
        grass = tri(c.x * 17.0 + 0.4 * tri(c.y * 3.0)) * smooth01((c.y - 0.3) * 3.0)
        c.paint_alpha(0.12 * grass, (0.5, 0.38, 0.12))

    mane = jitter((0.55, 0.28, 0.08), 0.06)

    def mane_hook(c):
        X, Y = c.X, c.Y + 0.05
        r = tf.sqrt(X * X + Y * Y) + 1e-6
        spikes = 0.06 * tri(6.0 * X / r + 2.0 * Y / r + 0.5 * c.p(10))  # ragged outline
        mane_r = 0.64 + 0.05 * c.p(11)
        col = tf.constant([m.base for m in mane], tf.float32, [1, 3, 1, 1])
        col = col + 0.06 * tf.concat([c.p(4), c.p(5), c.p(6)], axis=1)
        c.paint(r - mane_r - spikes, col, soft=2.0)
        c.paint_alpha(smooth01(0.5 - (r - mane_r * 0.82 - spikes) / (4.0 * c.w)) * 0.7, col * 1.3)

    sc = Scene(background)
    sc.ellipse(0.0, 0.72, 0.5, 0.3, shade(mane, 1.35))  # shoulders
    sc.hook(mane_hook)
    face = jitter((0.86, 0.64, 0.34), 0.05)
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


def _monarch() -> Scene:
    def background(c):
        c.bg_gradient((0.42, 0.62, 0.28), (0.18, 0.36, 0.14))

    def dots(c):  # white dots in the black wing border
        border = tf.maximum(c.alpha["w0"], c.alpha["w1"]) * (1.0 - tf.maximum(c.alpha["o0"], c.alpha["o1"]))
        for name in ("w2", "w3"):
            border = tf.maximum(border, c.alpha[name] * (1.0 - c.alpha["o" + name[1]]))
        gx, gy = frac(c.X * 13.0 + 0.5) - 0.5, frac(c.Y * 13.0 + 0.5) - 0.5
        dot = smooth01(0.5 - (tf.sqrt(gx * gx + gy * gy) / 13.0 - 0.014) / c.w)
        c.paint_alpha(dot * border * smooth01((tf.abs(c.X) - 0.1) * 20.0), (0.98, 0.97, 0.92))

    sc = Scene(background)
    for i, (lx, ly) in enumerate([(-0.7, -0.7), (0.6, -0.5), (-0.5, 0.6), (0.75, 0.7)]):
        sc.ellipse(lx + 0.15 * P(20 + i), ly + 0.15 * P(24 + i), 0.35, 0.14, (0.55, 0.75, 0.35),
                   angle=0.6 + 0.5 * i, frame="img", soft=12.0, opacity=0.55)  # blurred leaves
    orange, black = jitter((0.98, 0.52, 0.05), 0.05), (0.04, 0.03, 0.03)
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


def _giant_panda() -> Scene:
    def background(c):
        c.bg_gradient((0.55, 0.72, 0.38), (0.30, 0.48, 0.20))
        stalks = smooth01((tf.abs(frac(c.x * 2.6 + 0.3 * c.p(20)) - 0.5) - 0.36) * 25.0)
        nodes = smooth01((tf.abs(frac(c.y * 2.2 + 0.2 * c.p(21)) - 0.5) - 0.47) * 60.0)
        c.paint_alpha(stalks * 0.65, (0.68, 0.8, 0.38))
        c.paint_alpha(stalks * nodes * 0.6, (0.32, 0.45, 0.18))

    sc = Scene(background)
    white, black = jitter((0.95, 0.94, 0.9), 0.02), (0.06, 0.06, 0.07)
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


def generic(c: Canvas, cls) -> None:
    """Any class outside the demo set: a blob creature whose palette and proportions come from its index."""
    k = tf.reshape(tf.cast(cls, tf.float32), [-1, 1, 1, 1])
    hue = frac(k * 0.6180339)

    def hue_rgb(h, light):
        r = tf.clip_by_value(tf.abs(h * 6.0 - 3.0) - 1.0, 0.0, 1.0)
        g = tf.clip_by_value(2.0 - tf.abs(h * 6.0 - 2.0), 0.0, 1.0)
        b = tf.clip_by_value(2.0 - tf.abs(h * 6.0 - 4.0), 0.0, 1.0)
        return tf.concat([r, g, b], axis=1) * light + (1.0 - light) * 0.5

    c.bg_gradient((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    top = hue_rgb(frac(hue + 0.5), 0.5)
    c.img = c.img + top + (top * 0.6 - top) * smooth01((c.y + 1.0) * 0.5)
    body = hue_rgb(hue, 0.8) + 0.06 * tf.concat([c.p(4), c.p(5), c.p(6)], axis=1)
    a, b = 0.3 + 0.25 * frac(k * 0.377), 0.18 + 0.15 * frac(k * 0.531)
    zero = tf.zeros_like(a)
    c.paint(sd_ellipse(c.X, c.Y, zero, zero + 0.1, a, b, zero), body)
    hr = 0.12 + 0.08 * frac(k * 0.291)
    hx, hy = a * 0.85, 0.1 - b * 0.8
    c.paint(sd_ellipse(c.X, c.Y, hx, hy, hr, hr, zero), body * 0.85)
    c.paint(sd_ellipse(c.X, c.Y, hx + hr * 0.35, hy - hr * 0.2, hr * 0.25, hr * 0.25, zero), (0.02, 0.02, 0.02))


_SCENE_FNS = [_goldfish, _ostrich, _flamingo, _golden_retriever, _tabby, _lion, _monarch, _giant_panda]
assert [DEMO_CLASSES[k][1] for k in SCENE_CLASSES] == [f.__name__[1:] for f in _SCENE_FNS]
SCENES = [f() for f in _SCENE_FNS]
