"""The demo renderer: class-conditional pictures from the latent, in TensorFlow ops.

``render(z, y_onehot, truncation, height, width)`` draws the eight demo classes (tinygan.demo.scenes; any
other class gets a generic blob). It is written once in TF ops and used both by the procedural teacher
(tinygan.demo.teacher, traced into its SavedModel) and, eagerly, for the "real" tree (tinygan.demo.tree).

Latent use. u = clip(z * sqrt(truncation), -2.5, 2.5); the 128 dims are folded pairwise into 64
controls v_k = (u_k + u_{k+64}) / sqrt(2). v_0..3 set position, size and tilt; v_4..6 body colour; v_7..8
background brightness and tint; v_9 lighting; v_10..19 class-specific shape details; v_20..29 background
details. The teacher is fed z = truncation * truncated_normal, so variety shrinks like truncation^1.5.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tinygan.demo.canvas import V_MAX, Canvas, draw_scene
from tinygan.demo.scenes import SCENE_CLASSES, SCENES, generic
from tinygan.teacher import N_CLASSES, Z_DIM



def _draw_slot(slot: int, v, cls, height, width):
    """Pictures for samples that all fall in one class slot: float32 [n, height, width, 3] in ~[0, 1]."""
    hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    px = 2.0 / tf.minimum(hf, wf)  # one pixel in normalised units (the shorter side spans [-1, 1])
    x = tf.reshape((tf.range(wf) + 0.5 - wf * 0.5) * px, [1, 1, 1, -1]) + tf.zeros(tf.stack([1, 1, height, 1]))
    y = tf.reshape((tf.range(hf) + 0.5 - hf * 0.5) * px, [1, 1, -1, 1]) + tf.zeros(tf.stack([1, 1, 1, width]))
    c = Canvas(v, x, y, px)
    if slot < len(SCENES):
        draw_scene(SCENES[slot], c)
    else:
        generic(c, cls)
    img = c.img * (1.0 - 0.06 * c.p(9) * y)  # a little light from above or below
    img = tf.broadcast_to(img, tf.stack([tf.shape(v)[0], 3, height, width]))
    return tf.transpose(img, [0, 2, 3, 1])


_SLOT_FNS: dict[int, tf.types.experimental.PolymorphicFunction] = {}


def _slot_fn(slot: int):
    """One traced graph per class slot (traced on first use, shared by the tree and the teacher)."""
    if slot not in _SLOT_FNS:
        def draw(v, cls, height, width):
            return _draw_slot(slot, v, cls, height, width)

        draw.__name__ = draw.__qualname__ = f"draw_slot_{slot}"  # a unique graph name (see demo.teacher)
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
    y_onehot = tf.ensure_shape(tf.convert_to_tensor(y_onehot, tf.float32), [None, N_CLASSES])
    truncation = tf.convert_to_tensor(truncation, tf.float32)
    height = tf.convert_to_tensor(height, tf.int32)
    width = tf.convert_to_tensor(width, tf.int32)

    u = tf.clip_by_value(z * tf.sqrt(tf.maximum(truncation, 0.0)), -2.5, 2.5)
    v = tf.clip_by_value((u[:, :64] + u[:, 64:]) * 0.70710677, -V_MAX, V_MAX)
    cls = tf.argmax(y_onehot, axis=1, output_type=tf.int32)
    slot_table = np.full([N_CLASSES], len(SCENES), np.int32)
    slot_table[SCENE_CLASSES] = np.arange(len(SCENES))
    slot = tf.gather(slot_table, cls)

    n = tf.shape(z)[0]
    n_slots = len(SCENES) + 1
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
    y = np.zeros([len(classes), N_CLASSES], np.float32)
    y[np.arange(len(classes)), classes] = 1.0
    img = render(z, y, truncation, height, width).numpy()
    return np.clip(np.round((img + 1.0) * 127.5), 0, 255).astype(np.uint8)

