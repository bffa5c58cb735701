"""The CIFAR-10-shaped demo world: a 32², 10-class, z-512 StyleGAN-style TorchScript teacher and its real tree.

``build(root, images_per_class, seed)`` writes under ``root``:

* ``teacher/teacher.pt``: ``CifarTeacher`` (pure torch ops, scripted, saved with ``torchscript_bytes``) with
  the TorchScript teacher contract of ``tinygan.teacher`` (``z_dim`` 512, ``c_dim`` 10, ``img_resolution``
  32, ``forward(z, c one-hot, truncation) -> [N,3,32,32]`` in [-1, 1]) and its description of itself
  (``tinygan.teacher.DESCRIPTION``, an extra file of the archive);
* ``cifar10/train/<class name>/<k>.png``: 32×32 "real" images drawn by the same renderer from untruncated
  latents (plus sensor noise), and three bad files (an empty PNG, a text file, a grayscale PNG);
* ``preview.png``: per class, real images beside teacher samples (ψ 0.7).

StyleGAN-style: a fixed mapping z (+ class) -> style w (``W_DIM``), truncation ψ as
``w = w_avg + ψ (w - w_avg)``, then a procedural picture per class: a background and a shape of the class's
colours (a plane's cross, a car's box, a ship's hull, ...), placed, sized and tinted by w. The same code
gives the same bytes.
"""
from __future__ import annotations

import io as _io
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tinygan.io import torchscript_bytes, write_bytes
from tinygan.teacher import DESCRIPTION

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
Z_DIM, C_DIM, RESOLUTION, W_DIM = 512, 10, 32, 8
ABOUT = {"name": "procedural CIFAR-10 demo teacher", "g_params": None, "g_macs": None,
         "source": "procedural demo teacher, n/a"}
TEACHER_FILE = "teacher/teacher.pt"
TREE_DIR = "cifar10/train"
# Per class: (background RGB, shape RGB) in [0, 1], then two parts, each (kind 0 ellipse | 1 box | 2 triangle,
# half width, half height, centre y); a half width of 0 switches the second part off.
_LOOK = (
    ((0.45, 0.65, 0.95), (0.75, 0.75, 0.8), (1, 0.75, 0.09, 0.0), (1, 0.1, 0.45, 0.0)),     # airplane
    ((0.45, 0.45, 0.45), (0.85, 0.1, 0.1), (1, 0.7, 0.22, 0.1), (1, 0.4, 0.15, -0.2)),      # automobile
    ((0.55, 0.75, 0.95), (0.95, 0.8, 0.1), (0, 0.35, 0.22, 0.0), (2, 0.15, 0.15, -0.15)),   # bird
    ((0.6, 0.5, 0.4), (0.95, 0.55, 0.15), (0, 0.4, 0.35, 0.1), (2, 0.4, 0.25, -0.3)),       # cat
    ((0.3, 0.55, 0.25), (0.6, 0.4, 0.2), (0, 0.22, 0.5, 0.1), (2, 0.35, 0.2, -0.5)),        # deer
    ((0.4, 0.7, 0.3), (0.55, 0.35, 0.15), (0, 0.55, 0.3, 0.1), (0, 0.2, 0.2, -0.25)),       # dog
    ((0.15, 0.35, 0.15), (0.3, 0.85, 0.2), (0, 0.55, 0.22, 0.35), (0, 0.0, 0.0, 0.0)),      # frog
    ((0.7, 0.65, 0.4), (0.35, 0.2, 0.1), (1, 0.5, 0.2, 0.0), (1, 0.1, 0.45, 0.3)),          # horse
    ((0.15, 0.3, 0.7), (0.95, 0.95, 0.95), (2, 0.7, 0.25, 0.25), (1, 0.06, 0.4, -0.2)),     # ship
    ((0.5, 0.5, 0.55), (0.15, 0.3, 0.8), (1, 0.75, 0.35, 0.0), (1, 0.25, 0.2, -0.45)),      # truck
)


class CifarTeacher(torch.nn.Module):
    """A StyleGAN-style stand-in: mapping (fixed random linear + tanh) -> w, truncation in w, render."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution = Z_DIM, C_DIM, RESOLUTION
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("w_z", torch.randn(Z_DIM, W_DIM, generator=gen) / Z_DIM ** 0.5)
        self.register_buffer("w_c", 0.3 * torch.randn(C_DIM, W_DIM, generator=gen))
        self.register_buffer("w_avg", torch.tanh(self.w_c).mean(0))  # the mean style (z's share averages out)
        look = torch.tensor([[*bg, *fg, *p1, *p2] for bg, fg, p1, p2 in _LOOK], dtype=torch.float32)
        self.register_buffer("colours", look[:, :6] * 2 - 1)
        self.register_buffer("parts", look[:, 6:].reshape(C_DIM, 2, 4))
        u = torch.linspace(-1.0, 1.0, RESOLUTION)
        self.register_buffer("grid_y", u[:, None].expand(RESOLUTION, RESOLUTION).contiguous())
        self.register_buffer("grid_x", u[None, :].expand(RESOLUTION, RESOLUTION).contiguous())

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        w = torch.tanh(z @ self.w_z + c @ self.w_c)
        w = self.w_avg + truncation * (w - self.w_avg)
        parts = torch.einsum("nk,kpj->npj", c, self.parts)  # [N, 2, 4] the sample's class parts
        col = c @ self.colours  # [N, 6]
        scale = (1.0 + 0.25 * w[:, 2])[:, None, None]
        x = (self.grid_x[None] - 0.3 * w[:, 0, None, None]) / scale
        y = (self.grid_y[None] - 0.3 * w[:, 1, None, None]) / scale
        inside = torch.maximum(self._part(parts[:, 0], x, y), self._part(parts[:, 1], x, y))[:, None]
        bg = col[:, 0:3, None, None] * (1.0 - 0.25 * self.grid_y) + 0.2 * w[:, 3:6, None, None]
        stripes = 0.1 * torch.sin(6.0 * x + 4.0 * w[:, 7, None, None])[:, None]
        fg = col[:, 3:6, None, None] + 0.25 * w[:, 5:8, None, None] + stripes
        return torch.clamp(bg * (1.0 - inside) + fg * inside, -1.0, 1.0)

    def _part(self, part: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Soft mask [N, R, R] of one shape part (kind, half width a, half height b, centre y) per sample."""
        kind, a = part[:, 0, None, None], part[:, 1, None, None].clamp(min=1e-3)
        b, cy = part[:, 2, None, None].clamp(min=1e-3), part[:, 3, None, None]
        u, v = x / a, (y - cy) / b
        ellipse = torch.sqrt(u * u + v * v) - 1.0
        box = torch.maximum(u.abs(), v.abs()) - 1.0
        triangle = torch.maximum(v.abs(), u.abs() - (1.0 + v) / 2.0) - 1.0  # wide at the bottom
        sdf = torch.where(kind < 0.5, ellipse, torch.where(kind < 1.5, box, triangle))
        on = (part[:, 1, None, None] > 0).float()
        return on * torch.sigmoid(-12.0 * sdf)


def teacher_bytes(seed: int = 0) -> bytes:
    """The scripted teacher as TorchScript archive bytes, with its description (``ABOUT``) inside."""
    return torchscript_bytes(torch.jit.script(CifarTeacher(seed).eval()),
                             extra_files={DESCRIPTION: json.dumps(ABOUT, sort_keys=True)})


def render(teacher: CifarTeacher, z: np.ndarray, classes, truncation: float) -> np.ndarray:
    """uint8 NHWC pictures of ``teacher`` for noise ``z`` [N, 512] and class indices ``classes``."""
    c = torch.nn.functional.one_hot(torch.as_tensor(list(classes)), C_DIM).float()
    with torch.inference_mode():
        img = teacher(torch.from_numpy(np.asarray(z, np.float32)), c, torch.tensor(float(truncation)))
    return np.round((img.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_tree(root: str | os.PathLike, teacher: CifarTeacher, images_per_class: int, seed: int) -> dict:
    """``<root>/<class name>/<k:04d>.png``: 32² images, each from its own stream (seed, class, k): untruncated z,
    brightness jitter and sensor noise. Plus ``bird/bad_empty.png`` (0 bytes), ``cat/notes.png`` (text) and
    ``dog/bad_gray.png`` (grayscale, readable). Returns {class name: good images}."""
    root = Path(root)
    for cls, name in enumerate(CLASS_NAMES):
        for k in range(images_per_class):
            rng = np.random.default_rng([seed, cls, k])
            img = render(teacher, rng.standard_normal([1, Z_DIM]), [cls], 1.0)[0].astype(np.float32)
            img = img * rng.uniform(0.9, 1.1) + rng.uniform(0.0, 5.0) * rng.standard_normal(img.shape)
            write_bytes(root / name / f"{k:04d}.png", _png(np.clip(np.round(img), 0, 255).astype(np.uint8)))
    gray = render(teacher, np.random.default_rng([seed, 5, 10_000]).standard_normal([1, Z_DIM]), [5], 1.0)[0]
    write_bytes(root / "bird" / "bad_empty.png", b"")
    write_bytes(root / "cat" / "notes.png", b"Not an image: notes saved with the wrong extension.\n")
    write_bytes(root / "dog" / "bad_gray.png", _png(np.asarray(Image.fromarray(gray).convert("L"))))
    return {name: images_per_class for name in CLASS_NAMES}


def write_preview(path: str | os.PathLike, tree: str | os.PathLike, teacher: CifarTeacher, seed: int,
                  per_side: int = 6, truncation: float = 0.7) -> None:
    """PNG contact sheet: per class one row, ``per_side`` real-tree images | ``per_side`` teacher samples."""
    rng = np.random.default_rng([seed, 20_000])
    rows = []
    for cls, name in enumerate(CLASS_NAMES):
        files = sorted(Path(tree, name).glob("[0-9]*.png"))[:per_side]
        real = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        real += [np.zeros([RESOLUTION, RESOLUTION, 3], np.uint8)] * (per_side - len(real))
        fake = list(render(teacher, rng.standard_normal([per_side, Z_DIM]), [cls] * per_side, truncation))
        rows.append(np.concatenate(real + [np.full([RESOLUTION, 4, 3], 255, np.uint8)] + fake, axis=1))
    write_bytes(path, _png(np.concatenate(rows, axis=0)))


def build(root: str | os.PathLike, images_per_class: int, seed: int) -> Path:
    """The whole CIFAR-10-shaped world under ``root`` (see the module docstring); returns the train tree dir.
    The teacher's weights are fixed (seed 0): ``seed`` varies the tree and the preview only."""
    root = Path(root)
    write_bytes(root / TEACHER_FILE, teacher_bytes())
    teacher = CifarTeacher().eval()
    make_tree(root / TREE_DIR, teacher, images_per_class, seed)
    write_preview(root / "preview.png", root / TREE_DIR, teacher, seed)
    return root / TREE_DIR
