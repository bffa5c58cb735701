"""Tiny teachers (BigGAN-deep-128's interface by default, other shapes on request), for the teacher/sample
tests (not collected by pytest).

The image depends on z, y and truncation, per sample and with elementwise ops only, so the output of one sample
does not depend on the batch it is computed in:
    img[n, h, w, c] = tanh(z[n, c] * u[h] + z[n, 3 + c] * u[w] + class[n] / 1000 + 0.1 * truncation),
with u = linspace(-1, 1, R) (R = 128 by default).
"""
from __future__ import annotations

from pathlib import Path


def save_tf_teacher(path, y_width: int | None = 1000, truncation_input: bool = True, out_key: str = "default",
                    z_dim: int | None = 128, resolution: int = 128, dynamic_output: bool = False) -> str:
    """A TF2 SavedModel with a ``default`` signature (optionally broken in one way).

    ``y_width`` None: no input y (an unconditional teacher); ``z_dim`` None: z declared [None, None];
    ``dynamic_output``: the output is declared [None, None, None, 3] (its side is computed from z's width)."""
    import tensorflow as tf

    def images(z, y, t):
        n = tf.shape(z)[1] - z_dim + resolution if dynamic_output else resolution
        u = tf.linspace(-1.0, 1.0, n)
        cls = 0.0 if y is None else tf.cast(tf.argmax(y, axis=1), tf.float32)[:, None, None, None] / 1000.0
        a, b = z[:, None, None, 0:3], z[:, None, None, 3:6]
        return {out_key: tf.tanh(a * u[:, None, None] + b * u[None, :, None] + cls + 0.1 * t)}

    specs = {"z": tf.TensorSpec([None, z_dim], tf.float32), "truncation": tf.TensorSpec([], tf.float32)}
    if y_width is not None:
        specs["y"] = tf.TensorSpec([None, y_width], tf.float32)
    if not truncation_input:
        del specs["truncation"]
    names = list(specs)

    def call(*args):
        kw = dict(zip(names, args))
        return images(kw["z"], kw.get("y"), kw.get("truncation", 0.5))

    fn = tf.function(call, input_signature=[tf.TensorSpec(s.shape, s.dtype, name=k) for k, s in specs.items()])
    module = tf.Module()
    module.fn = fn
    tf.saved_model.save(module, str(path), signatures={"default": fn.get_concrete_function()})
    return str(path)


def save_torchscript_teacher(path, resolution: int = 128, shift: float = 0.0, attrs: dict | None = None,
                             width: int | None = None, channels: int = 3, scale: float = 1.0) -> str:
    """A TorchScript teacher: forward(z, y one-hot, truncation) -> [N, channels, res, width] (same formula, NCHW).

    ``shift`` is added inside the tanh: a different teacher with the same interface. ``attrs`` (z_dim, c_dim,
    img_resolution) are set as int attributes (the declared shape); ``width``, ``channels`` and ``scale`` (of
    the output) make teachers that break the contract."""
    import torch

    class Toy(torch.nn.Module):
        def __init__(self, res: int, shift: float):
            super().__init__()
            self.register_buffer("u", torch.linspace(-1.0, 1.0, res))
            self.register_buffer("v", torch.linspace(-1.0, 1.0, width or res))
            self.shift, self.channels, self.scale = shift, channels, scale
            for name, value in (attrs or {}).items():
                setattr(self, name, int(value))

        def forward(self, z: torch.Tensor, y: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
            cls = torch.zeros(z.shape[0], 1, 1, 1)
            if y.shape[1] > 0:
                cls = y.argmax(dim=1).float()[:, None, None, None] / 1000.0
            a, b = z[:, 0:self.channels, None, None], z[:, 3:3 + self.channels, None, None]
            x = torch.tanh(a * self.u[:, None] + b * self.v[None, :] + cls + 0.1 * truncation + self.shift)
            return self.scale * x

    torch.jit.save(torch.jit.script(Toy(resolution, shift)), str(path))
    return str(path)


def reference_images(z, y, truncation, resolution: int = 128):
    """The toy formula in numpy float64 (NHWC), for checking adapters."""
    import numpy as np

    u = np.linspace(-1.0, 1.0, resolution)
    cls = np.asarray(y, dtype=np.float64)[:, None, None, None] / 1000.0
    a, b = np.asarray(z, np.float64)[:, None, None, 0:3], np.asarray(z, np.float64)[:, None, None, 3:6]
    return np.tanh(a * u[:, None, None] + b * u[None, :, None] + cls + 0.1 * truncation)


def save_tf1_hub_teacher(path) -> str:
    """A TF1 Hub-format module (like BigGAN-deep-128 on TF-Hub): a TF1 SavedModel with the empty tag set,
    signature "default" over placeholders z, y, truncation, and a ``tfhub_module.pb`` marker file."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        z = v1.placeholder(tf.float32, [None, 128], name="z")
        y = v1.placeholder(tf.float32, [None, 1000], name="y")
        t = v1.placeholder(tf.float32, [], name="truncation")
        u = tf.linspace(-1.0, 1.0, 128)
        cls = tf.cast(tf.argmax(y, axis=1), tf.float32)[:, None, None, None] / 1000.0
        a, b = z[:, None, None, 0:3], z[:, None, None, 3:6]
        out = tf.tanh(a * u[:, None, None] + b * u[None, :, None] + cls + 0.1 * t)
        with v1.Session(graph=graph) as sess:
            builder = v1.saved_model.Builder(str(path))
            sig = v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={"z": z, "y": y, "truncation": t}, outputs={"default": out})
            builder.add_meta_graph_and_variables(sess, tags=[], signature_def_map={"default": sig})
            builder.save()
    (Path(path) / "tfhub_module.pb").write_bytes(b"")
    return str(path)


def stand_in_stylegan(z_dim: int = 8, c_dim: int = 4, img_resolution: int = 16):
    """A stand-in for a StyleGAN2-ADA pickle's ``G``: ``G.mapping(z, c, truncation_psi)`` (lerp towards
    ``w_avg`` as StyleGAN does), ``G.synthesis(w, noise_mode)`` -> NCHW in [-1, 1], and the attributes
    ``z_dim``, ``c_dim``, ``img_resolution``; for checking the wrapping code in tinygan/teacher.py."""
    import torch

    class Mapping(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w_avg = torch.nn.Parameter(torch.full((8,), 0.3))
            self.lin = torch.nn.Linear(z_dim + c_dim, 8)

        def forward(self, z, c, truncation_psi=1.0):
            w = self.lin(torch.cat([z, c], dim=1))
            if truncation_psi != 1:
                w = self.w_avg.lerp(w, truncation_psi)
            return w

    class Synthesis(torch.nn.Module):
        def forward(self, w, noise_mode="random"):
            u = torch.linspace(-1.0, 1.0, img_resolution)
            return torch.tanh(w[:, :3, None, None] * u[:, None] + w[:, 3:6, None, None] * u[None, :])

    class G(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.z_dim, self.c_dim, self.img_resolution = z_dim, c_dim, img_resolution
            self.mapping, self.synthesis = Mapping(), Synthesis()

    torch.manual_seed(0)
    return G().eval().requires_grad_(False)
