"""Evaluation (paper Sec. 4): IS, FID, intra-FID and KID of the student and of the teacher, the
compression table, and the paper's image figures (Fig. 10, 11).

Two stages, two DVC outputs:

* ``reference_stats`` (stage refstats): features of the real shards (``data/real``), one class at a
  time, saved as a ``tinygan.frechet.ClassStats`` directory (``class_XXXX.npz`` per class, ``overall.npz``
  with a KID reservoir, ``index.json``) plus ``refstats.json`` (extractor, counts). Computed once per
  extractor.
* ``evaluate`` (stage evaluate): one options object, ``EvalConfig`` (``EvalConfig.from_params(p)``), and
  named steps on the loaded ``Inputs``, in the manner of stylegan2-ada-pytorch's ``metrics/`` (one small
  function per metric). Generated images are streamed batch by batch through the extractor, never all held:

  - ``student_metrics``: IS (10 splits of the class probabilities, rows shuffled into splits by a permutation
    seeded by ``seed``), FID against the overall reference stats, KID (mean and std over subsets) against the
    reference reservoir, and precision, recall, density and coverage (``tinygan.metrics.prdc``) of up to
    ``pr_samples`` generated vs up to ``pr_samples`` reference features, of ``n_samples`` student images, labels
    round-robin over ``classes`` (exactly uniform; image ``k`` of class ``c`` uses noise ``draw_z(latent,
    noise_seed, c, k, truncation)`` with the teacher manifest's latent recipe; ``EvalConfig.noise_seed``);
  - ``teacher_metrics``: the same from the teacher's images: with ``teacher_samples: fresh`` (the authors'
    way) the evaluation set of stage ``teacher_eval`` (``data/teacher_eval``: new teacher images on the
    evaluation noise stream ``evaluation_seed(seed)``, on which the student is measured too); with ``stored``
    the training pairs in ``data/teacher`` (as many as there are; when fewer than requested,
    ``teacher_note`` in metrics.json says so). metrics.json's ``teacher_samples`` says which;
  - ``intra_fid_metrics``: ``per_class_samples`` images of each class vs that class's reference stats
    (``tinygan.metrics.intra_fid`` over statistics measured class by class), and per class precision, recall,
    density and coverage of that class's generated vs real features, student and teacher;
  - ``_compression``: parameters and MACs of the student, the teacher's figures and the ratios;
  - ``fid_curve``: FID of the train stage's G snapshots (Fig. 8) on the first ``curve_samples`` images;
  - ``write_outputs``: everything into ``out_dir``, replaced as a whole (``tinygan.io.atomic_dir``: all
    new, or all old after a failure).

Protocol (``evaluate.protocol``, ``tinygan.extractors``): generated images reach the extractor as the floats G
made; under ``stylegan2-ada`` it quantises them to uint8, under ``authors`` (TF-GAN) it does not and takes IS from
the first 1000 logits. The reference statistics record the protocol they were measured under and are refused
under another.

Outputs: ``metrics.json`` (metrics only, flat, for ``dvc metrics`` / ``dvc exp show``: the numbers, and the
strings that say how to read them: ``extractor``, ``protocol``, ``teacher_figures``, ``*_note``; the settings they
were measured with are params), ``per_class.csv`` (Fig. 9 data: teacher and student intra-FID per class; and their
precision, recall, density, coverage per class) and
``fid_curve.csv`` (Fig. 8 data), both drawn by ``dvc plots`` (top-level ``plots:`` in dvc.yaml),
``worst10.png`` (Fig. 11, teacher | student samples of the classes with the worst student intra-FID, on
the teacher's own noise) and ``interpolation.png`` (Fig. 10, class and noise interpolation).

Memory: the overall statistics are O(d^2) (a float64 scatter matrix once n > d) plus feature reservoirs of
max(``kid_reservoir``, ``pr_samples``) rows (KID and precision/recall); IS keeps per-split sums (O(splits x K))
and the split index of each image (n_samples integers); the k-NN metrics form distances in row blocks
(``tinygan.metrics.BLOCK_ELEMENTS``); per-class statistics exist for one class at a time. Nothing grows with the
number of classes, and only the IS split indices grow with n_samples.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from tinygan import classes as imagenet
from tinygan import runtime, shards
from tinygan.errors import TinyGANError
from tinygan.extractors import Extractor, load_extractor
from tinygan.frechet import ClassStats, ClassStatsWriter, Stats, StatsAccumulator, frechet_distance
from tinygan.generate import class_count, interpolation_sheet, load_generator, save_png, to_uint8
from tinygan.io import atomic_dir, check_replaceable, sha256_file, write_json, write_text
from tinygan.metrics import DC_K, PR_K, InceptionScore, intra_fid, kid_subsets, prdc
from tinygan.prepare import param_classes
from tinygan.reference import REFSTATS_JSON
from tinygan.shards import ShardDataset
from tinygan.teacher import TEACHER_SAMPLES, check_truncation, draw_z, evaluation_seed

SNAPSHOT_RE = re.compile(r"^G-(\d+)\.safetensors$")
# Internals that are not params (rarely changed; StyleGAN2-ADA's values where it has them)
KID_SUBSET = 1000      # StyleGAN2-ADA's max_subset_size
KID_SUBSETS = 100      # StyleGAN2-ADA's num_subsets
KID_RESERVOIR = 5000   # raw feature rows kept per image set for KID
IS_SPLITS = 10
PRDC = ("precision", "recall", "density", "coverage")  # tinygan.metrics.prdc's keys
SHEET_SAMPLES = 6      # worst10.png: teacher and student samples per class
WORST_K = 10           # worst10.png: classes shown
OUT_FILES = ("metrics.json", "per_class.csv", "worst10.png", "interpolation.png",
             "fid_curve.csv")  # everything evaluate writes: out_dir is replaced as a whole
RETIRED_FILES = ("per_class.png", "fid_curve.png")  # written by earlier versions (dvc plots draws them now)


# ----------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``evaluate`` measures with. Fields without a default come from params (``from_params``);
    the rest are internals with named defaults. See ``evaluate`` for the paths."""

    classes: tuple[int, ...]          # params classes: the evaluated class indices
    n_samples: int                    # evaluate.n_samples: images for IS/FID/KID (paper: 50,000)
    per_class_samples: int            # evaluate.per_class_samples: images per class for intra-FID (paper: 5,000)
    curve_samples: int                # evaluate.curve_samples: images per snapshot for the FID curve
    truncation: float                 # sample.truncation: the student's noise (as the teacher's)
    seed: int                         # seed: noise of image k of class c is draw_z(latent, seed, c, k, truncation)
    extractor_kind: str               # evaluate.extractor
    extractor_path: str               # evaluate.extractor_path
    protocol: str                     # evaluate.protocol: "authors" | "stylegan2-ada" (tinygan.extractors)
    encoder: dict | None              # evaluate.encoder: a generic TorchScript encoder's input (extractor torchscript)
    d_ch: int | None                  # train.d_ch (None: the generator's ch), for the D parameter count
    device: str                       # runtime.evaluate.device: "auto", "cpu", "cuda"
    batch_size: int                   # runtime.evaluate.batch_size
    teacher_samples: str              # evaluate.teacher_samples: "fresh" (the teacher_eval set) | "stored"
    pr_samples: int                   # evaluate.pr_samples: real and generated feature rows for precision, recall, ...
    progress: bool = True
    extractor_sha256: str | None = None
    kid_reservoir: int = KID_RESERVOIR
    kid_subsets: int = KID_SUBSETS
    is_splits: int = IS_SPLITS
    sheet_samples: int = SHEET_SAMPLES
    worst_k: int = WORST_K

    def __post_init__(self):
        classes = tuple(int(c) for c in self.classes)
        object.__setattr__(self, "classes", classes)
        if not classes:
            raise TinyGANError("evaluate: no classes given; set `classes`")
        if len(set(classes)) != len(classes):
            raise TinyGANError(f"evaluate: classes {list(classes)} contain duplicates")
        for name, low in (("n_samples", self.is_splits), ("per_class_samples", 2), ("batch_size", 1),
                          ("curve_samples", 2), ("kid_subsets", 1), ("is_splits", 1),
                          ("pr_samples", max(PR_K, DC_K) + 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise TinyGANError(f"evaluate: {name} must be an integer >= {low}, got {value!r}")
        check_truncation(self.truncation, "evaluate")
        if self.teacher_samples not in TEACHER_SAMPLES:
            raise TinyGANError(f"evaluate: teacher_samples must be one of {', '.join(TEACHER_SAMPLES)}, "
                               f"got {self.teacher_samples!r}")

    @property
    def noise_seed(self) -> int:
        """The seed of the student's evaluation noise: the evaluation stream (``evaluation_seed``, the fresh
        teacher set's noise) when the teacher row is fresh, else ``seed`` (the training pairs' noise)."""
        return evaluation_seed(self.seed) if self.teacher_samples == "fresh" else self.seed

    @classmethod
    def from_params(cls, p: dict, progress: bool = True) -> "EvalConfig":
        """The evaluation options from validated params (``tinygan.params.load``)."""
        e = p["evaluate"]
        return cls(classes=tuple(param_classes(p)), n_samples=e["n_samples"], per_class_samples=e["per_class_samples"],
                   curve_samples=e["curve_samples"], truncation=p["sample"]["truncation"], seed=p["seed"],
                   extractor_kind=e["extractor"], extractor_path=e["extractor_path"], protocol=e["protocol"],
                   encoder=e["encoder"], d_ch=p["train"]["d_ch"], teacher_samples=e["teacher_samples"],
                   pr_samples=e["pr_samples"], progress=progress, **p["runtime"]["evaluate"])


# ----------------------------------------------------------------------------------------------
# Reference statistics of the real images


def _nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor (the extractor's input)."""
    return torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))


def reference_stats(real_dir: str | os.PathLike, extractor_path: str | os.PathLike, extractor_kind: str,
                    out_dir: str | os.PathLike, sha256: str | None = None, batch_size: int = 64,
                    device: str | torch.device = "cpu", progress: bool = True, kid_reservoir: int = KID_RESERVOIR,
                    seed: int = 0, protocol: str = "stylegan2-ada", encoder: dict | None = None,
                    pr_samples: int = 0) -> dict:
    """Features of every real image in ``real_dir``, saved as per-class and overall statistics.

    Classes are processed one at a time (each class's images read in batches of ``batch_size``), so
    memory holds: the overall accumulator (a float64 d x d scatter matrix once n > d, plus a seeded
    reservoir of max(``kid_reservoir``, ``pr_samples``) raw feature rows for KID and precision/recall) and the
    current class's accumulator. A class with n <= d images keeps its raw features by design (the exact
    low-rank Fréchet path needs them; they are smaller than a d x d matrix: 1,300 x 2048 float32 = 10.6 MB at
    Inception's d), a larger class a d x d scatter matrix plus a seeded reservoir of ``pr_samples`` feature rows
    (its precision/recall sample; a class whose raw features are all kept needs none). Nothing grows with the
    number of classes.

    Writes into ``out_dir`` the ``ClassStats`` layout (``class_XXXX.npz``, ``overall.npz``, ``index.json``
    last) and ``refstats.json``; returns the latter's content (extractor name and sha256, the protocol and its
    preprocessing, counts). Under the authors' protocol the real uint8 images enter as u / 127.5 - 1 (floats).
    """
    if batch_size < 1:
        raise TinyGANError(f"reference stats batch_size must be at least 1, got {batch_size}")
    ds = ShardDataset(real_dir, fields=("images",), kind="real")
    ext = load_extractor(extractor_path, extractor_kind, sha256=sha256,
                         device=runtime.device(device, "runtime.evaluate.device"), protocol=protocol, encoder=encoder)
    counts = ds.class_counts()
    if not counts:
        raise TinyGANError(f"the real shards in {real_dir} hold no images; run the prepare stage first")
    writer = ClassStatsWriter(out_dir)  # removes index.json: the directory is incomplete until close()
    overall = StatsAccumulator(ext.feature_dim, reservoir=max(kid_reservoir, pr_samples), seed=seed)
    with tqdm(total=len(ds), desc=f"reference features ({ext.name})", unit="img", disable=not progress) as bar:
        for c in sorted(counts):
            acc = StatsAccumulator(ext.feature_dim, reservoir=pr_samples, seed=[seed, c])
            writer.add(c, _without_copy(_class_stats(ds, ext, c, batch_size, acc, overall, bar)))
    total = overall.finalize()
    info = {
        "extractor": ext.name,
        "extractor_kind": extractor_kind,
        "extractor_sha256": sha256_file(extractor_path),
        "feature_dim": ext.feature_dim,
        "protocol": ext.protocol,
        "preprocessing": ext.preprocessing,
        "n": int(total.n),
        "num_classes": len(counts),
        "class_counts": {str(c): int(k) for c, k in sorted(counts.items())},
        "kid_reservoir": 0 if total.reservoir is None else int(len(total.reservoir)),
        "pr_samples": int(pr_samples),
        "real_dir": str(real_dir),
        "real_fingerprint": str(ds.manifest.get("fingerprint", "")),
        "seed": int(seed),
    }
    write_json(Path(out_dir) / REFSTATS_JSON, info)
    writer.close(total)  # index.json last: a directory with an index is complete (ClassStats.load)
    return info


def _class_stats(ds: ShardDataset, ext: Extractor, c: int, batch_size: int, acc: StatsAccumulator,
                 overall: StatsAccumulator, bar: tqdm) -> Stats:
    """Statistics (``acc``) of the real images of class ``c``; their features also go into ``overall``."""
    for batch in ds.iter_read(ds.class_indices(c), batch_size=batch_size, raw=True, fields=("images",)):
        feats, _ = ext(_nchw(batch["images"]), need_probs=False)
        acc.update(feats)
        overall.update(feats)
        bar.update(len(feats))
    return acc.finalize()


def _without_copy(stats: Stats) -> Stats:
    """``stats`` without its reservoir when it keeps all raw features: the reservoir would be a copy of some of
    them (``feature_sample`` then gives the features, and ``_subsample`` draws from them)."""
    if stats.feats is not None:
        stats.reservoir = None
    return stats


def feature_sample(stats: Stats) -> np.ndarray | None:
    """The raw feature rows a set's statistics keep for KID and precision/recall: its seeded reservoir, or, when
    all raw features are kept and no reservoir, those; None when it keeps neither."""
    return stats.reservoir if stats.reservoir is not None else stats.feats


def load_refstats(refstats_dir: Path, ext: Extractor, extractor_path, classes: Sequence[int],
                  need_reservoir: bool = True) -> tuple[ClassStats, Stats]:
    """The reference statistics (per class, lazily loaded; overall), checked: same extractor (name and
    sha256), the same protocol and preprocessing, every evaluated class, an overall KID reservoir."""
    ref = ClassStats.load(refstats_dir)
    info_path = refstats_dir / REFSTATS_JSON
    if not info_path.is_file():
        raise TinyGANError(f"{info_path} is missing; rerun the reference statistics stage")
    info = json.loads(info_path.read_text())
    sha = sha256_file(extractor_path)
    if info.get("extractor") != ext.name or info.get("extractor_sha256") != sha:
        raise TinyGANError(f"reference statistics in {refstats_dir} were computed with {info.get('extractor')!r} "
                           f"(sha256 {info.get('extractor_sha256')}), but the extractor {extractor_path} is "
                           f"{ext.name!r} (sha256 {sha}); rerun the reference statistics stage")
    if info.get("preprocessing") != ext.preprocessing:
        raise TinyGANError(f"reference statistics in {refstats_dir} were measured as {info.get('preprocessing')!r}, "
                           f"but this evaluation measures as {ext.preprocessing!r} (evaluate.protocol / "
                           f"evaluate.encoder differ); rerun the reference statistics stage")
    missing = [c for c in classes if c not in ref]
    if missing:
        raise TinyGANError(f"reference statistics in {refstats_dir} lack classes {missing[:10]}; the real shards "
                           f"must hold every evaluated class (check `classes` and rerun prepare + refstats)")
    overall = ref.overall
    if overall is None or (need_reservoir and (overall.reservoir is None or len(overall.reservoir) < 2)):
        raise TinyGANError(f"reference statistics in {refstats_dir} have no overall KID reservoir; rerun the "
                           f"reference statistics stage")
    return ref, overall


# ----------------------------------------------------------------------------------------------
# Streaming measurement


class _Measure:
    """Streaming feature statistics (with a seeded reservoir of raw feature rows for KID and precision/recall)
    and Inception Score (``metrics.InceptionScore``: per-split sums, rows shuffled into splits by ``seed``)."""

    def __init__(self, d: int, n_total: int, splits: int = IS_SPLITS, reservoir: int = 0, seed=0,
                 need_probs: bool = True):
        self.acc = StatsAccumulator(d, reservoir=reservoir, seed=seed)
        self.n_total = int(n_total)
        self.score = InceptionScore(n_total, splits, seed) if need_probs else None

    def update(self, feats: np.ndarray, probs: np.ndarray | None) -> None:
        self.acc.update(feats)
        if self.score is not None:
            self.score.update(probs)

    def result(self) -> tuple[Stats, float | None, float | None]:
        stats = self.acc.finalize()
        if stats.n != self.n_total:
            raise RuntimeError(f"measured {stats.n} images, expected {self.n_total}")
        if self.score is None:
            return stats, None, None
        return (stats, *self.score.result())


def _measure(ext: Extractor, batches: Iterable[torch.Tensor], n_total: int, desc: str, progress: bool,
             splits: int = IS_SPLITS, reservoir: int = 0, seed=0,
             need_probs: bool = True) -> tuple[Stats, float | None, float | None]:
    """Run image batches (uint8 NCHW, or float NCHW in [-1, 1]) through ``ext``; return (stats, IS mean, IS
    std), IS None when not asked for or the extractor gives no probabilities."""
    m = _Measure(ext.feature_dim, n_total, splits, reservoir, seed, need_probs and ext.has_probs)
    with tqdm(total=n_total, desc=desc, unit="img", disable=not progress) as bar:
        for images in batches:
            feats, probs = ext(images, need_probs=need_probs)
            m.update(feats, probs)
            bar.update(len(feats))
    return m.result()


def _stats(ext: Extractor, batches: Iterable[torch.Tensor], n_total: int, reservoir: int = 0, seed=0) -> Stats:
    """Feature statistics of the images (no IS, no progress bar; a ``reservoir`` of raw rows if > 0)."""
    return _measure(ext, batches, n_total, "", False, reservoir=reservoir, seed=seed, need_probs=False)[0]


def _subsample(x: np.ndarray, m: int, seed) -> np.ndarray:
    """At most ``m`` rows of ``x``: all of them, or a seeded uniform choice without replacement (in row order)."""
    if len(x) <= m:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), m, replace=False))]


def _prdc(inp: "Inputs", real: np.ndarray | None, gen: np.ndarray | None, seed) -> dict:
    """precision, recall, density, coverage (``metrics.prdc``) of up to ``pr_samples`` rows of each feature
    sample; None each when either has too few rows for the k-NN radii (k + 1)."""
    need = max(PR_K, DC_K) + 1
    if real is None or gen is None or min(len(real), len(gen)) < need:
        return dict.fromkeys(PRDC)
    m = inp.cfg.pr_samples
    return prdc(_subsample(real, m, [seed, 0]), _subsample(gen, m, [seed, 1]), device=inp.device)


def _generated(G, ys: np.ndarray, ks: np.ndarray, inp: "Inputs") -> Iterator[torch.Tensor]:
    """Student images (float NCHW in [-1, 1], as G made them: the extractor quantises them or not, per protocol)
    of classes ``ys``, image index ``ks`` within each class: the noise of image k of class c is ``draw_z(latent,
    noise_seed, c, k, truncation)`` (``EvalConfig.noise_seed``) with the teacher's latent recipe and z_dim (its manifest); batches of
    ``batch_size``."""
    cfg, device = inp.cfg, inp.device
    for a in range(0, len(ys), cfg.batch_size):
        y = ys[a:a + cfg.batch_size]
        z = draw_z(inp.latent, cfg.noise_seed, y, ks[a:a + cfg.batch_size], cfg.truncation, inp.z_dim)
        with torch.inference_mode(), runtime.float32_math():  # IEEE float32 on CUDA, as measured everywhere
            x = G(torch.from_numpy(z).to(device), torch.from_numpy(y).to(device))
        yield x.float()


def _stored(ds: ShardDataset, indices: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """Stored teacher images (uint8 NCHW) at ``indices``, in that order."""
    for batch in ds.iter_read(indices, batch_size=batch_size, raw=True, fields=("images",)):
        yield _nchw(batch["images"])


def _round_robin(ds: ShardDataset, classes: Sequence[int], n: int) -> np.ndarray:
    """Up to ``n`` sample indices taking the classes in turn (sample 0 of each class, then 1, ...)."""
    per = [ds.class_indices(c) for c in classes]
    longest = max((len(p) for p in per), default=0)
    order = [p[k] for k in range(longest) for p in per if k < len(p)]
    return np.asarray(order[:n], dtype=np.int64)


def student_labels(classes: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, image index within the class) of ``n`` student images, labels round-robin over ``classes``."""
    ys = np.asarray(classes, dtype=np.int64)[np.arange(n) % len(classes)]
    return ys, np.arange(n, dtype=np.int64) // len(classes)


class _Measured(Mapping):
    """class -> Stats, measured when asked for and not kept: intra-FID holds one class at a time."""

    def __init__(self, classes: Sequence[int], measure: Callable[[int], Stats]):
        self._classes, self._measure = list(classes), measure

    def __getitem__(self, c) -> Stats:
        if c not in self._classes:
            raise KeyError(c)
        return self._measure(c)

    def __contains__(self, c) -> bool:  # without measuring (Mapping's would measure)
        return c in self._classes

    def __iter__(self) -> Iterator[int]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


# ----------------------------------------------------------------------------------------------
# Compression table


def _compression(G, d_ch: int | None, device: torch.device, teacher_info: dict) -> dict:
    """The compression table as flat metrics: student G/D parameters and G MACs per image (measured
    by tinygan.summary), the teacher's figures from its ``teacher_info`` (``tinygan.teacher.describe``,
    recorded in the teacher manifest; ``teacher_figures`` says where they come from) and the ratios (None
    when the teacher's size is unknown)."""
    from tinygan.models import Discriminator
    from tinygan.summary import count_macs, count_params

    cfg = G.config
    z = torch.zeros(2, cfg["z_dim"], device=device)
    y = torch.zeros(2, dtype=torch.long, device=device)
    g_params, g_macs = count_params(G), count_macs(G, z, y)
    d_params = count_params(Discriminator(ch=int(d_ch or cfg["ch"]), n_classes=cfg["n_classes"],
                                          resolution=cfg["resolution"]))
    teacher = teacher_info
    return {
        "g_params": int(g_params), "d_params": int(d_params), "g_macs": int(g_macs),
        "teacher_g_params": teacher["g_params"], "teacher_g_macs": teacher["g_macs"],
        "teacher_figures": teacher["source"],
        "compression_ratio": teacher["g_params"] / g_params if teacher["g_params"] else None,
        "macs_ratio": teacher["g_macs"] / g_macs if teacher["g_macs"] else None,
    }


# ----------------------------------------------------------------------------------------------
# Image sheets (PIL)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_strip(lines: list[str], width: int, height: int, top: int = 6) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, top + 14 * i), line, fill="black", font=_font())
    return np.asarray(img)


def _worst_sheet(inp: Inputs, rows: list[dict]) -> np.ndarray:
    """Paper Fig. 11: per class a row of ``m`` teacher samples | ``m`` student samples on the same z."""
    G, ds, m, device = inp.G, inp.teacher, inp.cfg.sheet_samples, inp.device
    res = int(ds.manifest["resolution"])
    gap = np.full((res, 8, 3), 255, np.uint8)
    label_w = 170
    out = [np.concatenate([_text_strip(["class"], label_w, 20), _text_strip(["teacher (stored samples)"], m * res, 20),
                           np.full((20, 8, 3), 255, np.uint8), _text_strip(["student (same z, y)"], m * res, 20)],
                          axis=1)]
    for r in rows:
        c = r["class"]
        idx = ds.class_indices(c)[:m]
        got = (ds.read(idx, raw=True, fields=("z", "images")) if len(idx)
               else {"z": np.zeros((0, inp.z_dim), np.float32)})
        z = np.zeros((m, G.config["z_dim"]), np.float32)
        z[:len(idx)] = got["z"]
        if len(idx) < m:  # fewer stored teacher samples: the student uses its own noise for the rest
            z[len(idx):] = draw_z(inp.latent, inp.cfg.noise_seed, [c] * (m - len(idx)), range(len(idx), m),
                                  inp.cfg.truncation, inp.z_dim)
        with torch.inference_mode():
            x = G(torch.from_numpy(z).to(device), torch.full((m,), c, dtype=torch.long, device=device))
        student = to_uint8(x.float().cpu().numpy())
        if student.shape[1] != res:
            from PIL import Image
            student = np.stack([np.asarray(Image.fromarray(s).resize((res, res), Image.BICUBIC)) for s in student])
        teacher = np.full((m, res, res, 3), 255, np.uint8)
        if len(idx):
            teacher[:len(idx)] = got["images"]
        t_fid = "n/a" if r["teacher_intra_fid"] is None else f"{r['teacher_intra_fid']:.4g}"
        label = _text_strip([f"{c} {r['wnid']}", r["name"][:24], f"student {r['student_intra_fid']:.4g}",
                             f"teacher {t_fid}"], label_w, res)
        out.append(np.concatenate([label] + list(teacher) + [gap] + list(student), axis=1))
    return np.concatenate(out, axis=0)


def _interpolation(inp: Inputs, steps: int = 8) -> np.ndarray:
    """Paper Fig. 10: z fixed, classes[0] -> classes[1] (3 rows); class fixed, seed -> seed+1 (up to 3 rows).
    Each part has an 18-pixel caption above it. z follows the teacher's latent recipe."""
    G, classes, seed, truncation, latent = inp.G, inp.cfg.classes, inp.cfg.seed, inp.cfg.truncation, inp.latent
    parts = []
    if len(classes) >= 2:
        a, b = classes[0], classes[1]
        parts.append((f"class {a} ({inp.labels[a][1]}) -> class {b} ({inp.labels[b][1]}), z fixed per row "
                      f"(seeds {seed}-{seed + 2})",
                      interpolation_sheet(G, "classes", a, b, [seed, seed + 1, seed + 2], steps, truncation, latent)))
    rows = list(classes[:3])
    parts.append((f"z from seed {seed} -> seed {seed + 1}, class fixed per row ({', '.join(map(str, rows))})",
                  interpolation_sheet(G, "seeds", seed, seed + 1, rows, steps, truncation, latent)))
    width = parts[0][1].shape[1]
    return np.concatenate([p for caption, sheet in parts for p in (_text_strip([caption], width, 18, top=2), sheet)],
                          axis=0)


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _snapshots(snapshots_dir: str | os.PathLike | None) -> list[tuple[int, Path]]:
    if not snapshots_dir or not Path(snapshots_dir).is_dir():
        return []
    found = []
    for p in Path(snapshots_dir).iterdir():
        m = SNAPSHOT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# The evaluation: inputs, one function per metric, outputs


@dataclass
class Inputs:
    """What the steps measure: the extractor, the reference statistics, the student and the teacher shards."""

    cfg: EvalConfig
    device: torch.device
    ext: Extractor
    ref: ClassStats           # per class, loaded lazily
    ref_overall: Stats        # with the KID reservoir
    G: torch.nn.Module
    teacher: ShardDataset     # the teacher shards (fields z, images)
    teacher_idx: np.ndarray   # the teacher images for IS/FID/KID: round-robin over the classes, <= n_samples
    teacher_info: dict        # the teacher's description from its manifest (tinygan.teacher.describe)
    latent: str               # the teacher's latent recipe and z width (its manifest): the student's noise
    z_dim: int
    labels: dict              # class -> (wnid, name): ImageNet's, or ("", folder name) for other data


def class_labels(real_manifest: dict | None, classes: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(wnid, name) of each class: ImageNet's for ImageNet data (and when no real manifest is given); for
    other data no wnid and the name the real manifest records (``shards.own_class_names``; "" if none)."""
    own = shards.own_class_names(real_manifest) if real_manifest is not None else None
    if own is None:
        return {c: (imagenet.wnid_of(c), imagenet.name_of(c)) for c in classes}
    return {c: ("", own.get(c, "")) for c in classes}


def load_inputs(cfg: EvalConfig, generator_path: str | os.PathLike, teacher_dir: str | os.PathLike,
                refstats_dir: str | os.PathLike, real_dir: str | os.PathLike | None = None) -> Inputs:
    """Load and check everything before the long measurement (user mistakes: one TinyGANError line).
    ``real_dir``: the real shards, whose manifest names the classes (None: ImageNet's names)."""
    dev = runtime.device(cfg.device, "runtime.evaluate.device")
    ext = load_extractor(cfg.extractor_path, cfg.extractor_kind, sha256=cfg.extractor_sha256, device=dev,
                         protocol=cfg.protocol, encoder=cfg.encoder)
    ref, ref_overall = load_refstats(Path(refstats_dir), ext, cfg.extractor_path, cfg.classes)
    G = load_generator(generator_path).to(dev)
    n_classes = class_count(G.config)  # an unconditional model takes class 0 only
    if max(cfg.classes) >= n_classes:
        raise TinyGANError(f"evaluate: class {max(cfg.classes)} is out of range for the generator "
                           f"({n_classes} classes)")
    teacher = ShardDataset(teacher_dir, fields=("z", "images"), kind="teacher")
    if cfg.teacher_samples == "fresh":
        _check_evaluation_set(teacher, teacher_dir, cfg)
    teacher_idx = _round_robin(teacher, cfg.classes, cfg.n_samples)
    if len(teacher_idx) < cfg.is_splits:
        raise TinyGANError(f"the teacher shards in {teacher_dir} hold {len(teacher_idx)} images of the evaluated "
                           f"classes; IS needs at least {cfg.is_splits}: rerun the sample stage")
    info = teacher.manifest.get("teacher_info")
    if not isinstance(info, dict):
        raise TinyGANError(f"the teacher manifest in {teacher_dir} has no teacher_info; rerun the sample stage")
    real = shards.read_manifest(real_dir) if real_dir is not None else None
    return Inputs(cfg, dev, ext, ref, ref_overall, G, teacher, teacher_idx, info,
                  *shards.manifest_latent(teacher.manifest), class_labels(real, cfg.classes))


def _check_evaluation_set(ds: ShardDataset, directory, cfg: EvalConfig) -> None:
    """The fresh teacher set must be of the evaluation noise stream and hold per_class_samples images of every
    evaluated class (one TinyGANError line: rerun the teacher_eval stage)."""
    m, fix = ds.manifest, "rerun the teacher_eval stage (`dvc repro teacher_eval`)"
    if m.get("seed") != evaluation_seed(cfg.seed):
        raise TinyGANError(f"the teacher evaluation set in {directory} was not drawn with the evaluation noise of "
                           f"seed {cfg.seed}; {fix}")
    counts = ds.class_counts()
    short = [c for c in cfg.classes if counts.get(c, 0) < cfg.per_class_samples]
    if short:
        raise TinyGANError(f"the teacher evaluation set in {directory} has fewer than per_class_samples="
                           f"{cfg.per_class_samples} images of class(es) {short[:8]}; {fix}")


def teacher_samples_note(cfg: EvalConfig, ds: ShardDataset) -> str:
    """metrics.json's ``teacher_samples``: which teacher images the teacher row measures."""
    counts = [ds.class_counts().get(c, 0) for c in cfg.classes]
    if cfg.teacher_samples == "fresh":
        return (f"fresh: {min(counts)} new teacher images per class on the evaluation noise "
                f"(the authors' way; the student is evaluated on the same noise)")
    return (f"stored: the training pairs (at most {max(counts)} per class; the student is evaluated "
            f"on the training pairs' noise)")


def is_fid_kid(inp: Inputs, images: Iterable[torch.Tensor], n: int, desc: str, prefix: str) -> dict:
    """IS (mean, std over splits), FID, KID (mean, std over subsets), precision, recall, density and coverage of
    ``n`` images, from one pass through the extractor."""
    cfg = inp.cfg
    stats, is_mean, is_std = _measure(inp.ext, images, n, desc, cfg.progress, cfg.is_splits,
                                      max(cfg.kid_reservoir, cfg.pr_samples), cfg.seed)
    ref = inp.ref_overall
    kid_mean = kid_std = None  # reference statistics without raw features (an imported mu/sigma file): no KID
    if ref.reservoir is not None:
        kids = kid_subsets(ref.reservoir, stats.reservoir, num_subsets=cfg.kid_subsets, max_subset_size=KID_SUBSET,
                           seed=cfg.seed)
        kid_mean, kid_std = float(kids.mean()), float(kids.std())
    pr = _prdc(inp, ref.reservoir, stats.reservoir, cfg.seed)
    return {f"{prefix}is": is_mean, f"{prefix}is_std": is_std, f"{prefix}fid": frechet_distance(stats, ref),
            f"{prefix}kid": kid_mean, f"{prefix}kid_std": kid_std, **{f"{prefix}{k}": v for k, v in pr.items()}}


def student_metrics(inp: Inputs) -> dict:
    """is, is_std, fid, kid, kid_std, precision, recall, density, coverage of ``n_samples`` student images, labels
    round-robin over the classes."""
    cfg = inp.cfg
    ys, ks = student_labels(cfg.classes, cfg.n_samples)
    images = _generated(inp.G, ys, ks, inp)
    return is_fid_kid(inp, images, cfg.n_samples, "student samples", "")


def teacher_metrics(inp: Inputs) -> tuple[dict, str | None]:
    """teacher_is, teacher_is_std, teacher_fid, teacher_kid, ... (as ``student_metrics``) of the stored teacher
    images; a note when there are fewer than ``n_samples``."""
    n, want = len(inp.teacher_idx), inp.cfg.n_samples
    images = _stored(inp.teacher, inp.teacher_idx, inp.cfg.batch_size)
    note = None if n >= want else (f"teacher IS/FID/KID/precision/recall use the {n} stored teacher images of the "
                                   f"evaluated classes (fewer than n_samples={want})")
    return is_fid_kid(inp, images, n, "teacher samples", "teacher_"), note


def intra_fid_metrics(inp: Inputs) -> tuple[list[dict], dict, str | None]:
    """intra_fid and teacher_intra_fid (``metrics.intra_fid``: the mean over classes of the class's FID
    against its reference stats); the per-class rows, with each class's precision, recall, density and coverage
    (``_prdc``: that class's generated vs real features; None with fewer than k + 1 samples, or when the class's
    reference keeps no raw features: ``prdc_note`` then says so); a note on classes
    with fewer stored teacher images than ``per_class_samples`` (classes with < 2 are left out of the teacher's
    mean). The reference of a class is loaded once for both (``ref``, a one-class cache)."""
    cfg, n = inp.cfg, inp.cfg.per_class_samples
    ref = _Measured(inp.ref.classes, functools.lru_cache(maxsize=1)(inp.ref.__getitem__))
    prdc_of: dict[str, dict[int, dict]] = {"student": {}, "teacher": {}}
    no_real: set[int] = set()  # classes whose reference keeps no raw features (imported mean/cov, older refstats)

    def measured(who: str, c: int, images: Iterable[torch.Tensor], count: int) -> Stats:
        stats = _stats(inp.ext, images, count, cfg.pr_samples, [cfg.seed, c])
        real = feature_sample(ref[c])
        if real is None:
            no_real.add(c)
        prdc_of[who][c] = _prdc(inp, real, feature_sample(stats), [cfg.seed, c])
        return stats

    def student(c: int) -> Stats:
        ys, ks = np.full(n, c, np.int64), np.arange(n, dtype=np.int64)
        return measured("student", c, _generated(inp.G, ys, ks, inp), n)

    def teacher(c: int) -> Stats:
        ids = inp.teacher.class_indices(c)[:n]
        return measured("teacher", c, _stored(inp.teacher, ids, cfg.batch_size), len(ids))

    s_mean, s_per = intra_fid(_Measured(cfg.classes, student), ref, cfg.progress, "intra-FID (student)")
    t_n = {c: min(n, len(inp.teacher.class_indices(c))) for c in cfg.classes}
    t_classes = [c for c in cfg.classes if t_n[c] >= 2]
    t_mean, t_per = (intra_fid(_Measured(t_classes, teacher), ref, cfg.progress, "intra-FID (teacher)")
                     if t_classes else (None, {}))
    none = dict.fromkeys(PRDC)
    rows = [{"class": c, "wnid": inp.labels[c][0], "name": inp.labels[c][1], "student_intra_fid": s_per[c],
             "teacher_intra_fid": t_per.get(c),
             **{f"{who}_{k}": v for who in prdc_of for k, v in prdc_of[who].get(c, none).items()}}
            for c in cfg.classes]
    short = [k for k in t_n.values() if k < n]
    note = None if not short else (
        f"teacher intra-FID uses the stored teacher images: {len(short)} of {len(cfg.classes)} classes have "
        f"fewer than per_class_samples={n} (as few as {min(short)})"
        + ("; classes with < 2 images are left out of the mean" if len(t_classes) < len(cfg.classes) else ""))
    prdc_note = {} if not no_real else {"prdc_note": (
        f"per-class precision/recall/density/coverage are empty for {len(no_real)} of {len(cfg.classes)} classes: "
        "their reference statistics keep no real features (imported mean/covariance, or computed without "
        "evaluate.pr_samples); rerun the reference statistics stage to get them")}
    return rows, {"intra_fid": s_mean, "teacher_intra_fid": t_mean, **prdc_note}, note


def fid_curve(inp: Inputs, snapshots_dir: str | os.PathLike | None) -> tuple[list[tuple[int, float]], str | None]:
    """Paper Fig. 8: (step, FID) of each ``G-<step>.safetensors`` snapshot on the first
    ``min(curve_samples, n_samples)`` student images' noise; a note saying why when there are none."""
    cfg = inp.cfg
    n = min(cfg.curve_samples, cfg.n_samples)
    ys, ks = student_labels(cfg.classes, n)
    curve = []
    for step, path in tqdm(_snapshots(snapshots_dir), desc="FID over training", unit="snapshot",
                           disable=not cfg.progress):
        G = load_generator(path).to(inp.device)
        curve.append((step, frechet_distance(_stats(inp.ext, _generated(G, ys, ks, inp), n),
                                             inp.ref_overall)))
        del G
    if curve:
        return curve, None
    return curve, ("no snapshots_dir given" if not snapshots_dir else
                   f"no G-<step>.safetensors snapshots in {snapshots_dir} (train.snapshot_every = 0, or training "
                   f"stopped before the first snapshot)")


def _checked(metrics: dict) -> dict:
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise TinyGANError(f"evaluate: metric {k} is {v}; the images or the extractor are broken")
    return metrics


def write_outputs(out_dir: Path, inp: Inputs, metrics: dict, rows: list[dict],
                  curve: list[tuple[int, float]]) -> None:
    """metrics.json, per_class.csv, fid_curve.csv, worst10.png, interpolation.png: all new, or (on any error)
    the old ones kept."""
    cfg = inp.cfg
    worst = sorted(rows, key=lambda r: -r["student_intra_fid"])[:cfg.worst_k]
    with atomic_dir(out_dir, OUT_FILES + RETIRED_FILES) as out:
        write_text(out / "fid_curve.csv", _csv(["step", "fid"], [[s, _num(f)] for s, f in curve]))
        numeric = ["student_intra_fid", "teacher_intra_fid"] + [f"{who}_{k}" for who in ("student", "teacher")
                                                                for k in PRDC]
        write_text(out / "per_class.csv", _csv(["class", "wnid", "name", *numeric],
                                               [[r["class"], r["wnid"], r["name"], *(_num(r[k]) for k in numeric)]
                                                for r in rows]))
        save_png(out / "worst10.png", _worst_sheet(inp, worst))
        save_png(out / "interpolation.png", _interpolation(inp))
        write_json(out / "metrics.json", metrics)


def evaluate(cfg: EvalConfig, generator_path: str | os.PathLike, teacher_dir: str | os.PathLike,
             refstats_dir: str | os.PathLike, out_dir: str | os.PathLike,
             snapshots_dir: str | os.PathLike | None = None, real_dir: str | os.PathLike | None = None,
             teacher_eval_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate the student (and, for comparison, the teacher's stored samples); write ``out_dir``.

    generator_path: ``data/student/generator.safetensors`` (or an exported one). teacher_dir: the teacher
    shards (the training pairs); teacher_eval_dir: the fresh teacher evaluation set (stage teacher_eval), used
    instead when ``cfg.teacher_samples`` is "fresh". refstats_dir: the output of ``reference_stats`` made with the same extractor (checked by name
    and sha256). snapshots_dir: the train stage's ``G-<step>.safetensors`` snapshots for the FID curve.
    real_dir: the real shards, whose manifest names the classes in per_class.csv and the sheets.
    Returns the dict written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    check_replaceable(out_dir, OUT_FILES + RETIRED_FILES)  # before the long measurement
    if cfg.teacher_samples == "fresh":
        if teacher_eval_dir is None:
            raise TinyGANError("evaluate: teacher_samples is 'fresh' but no teacher evaluation set was given")
        teacher_dir = teacher_eval_dir
    inp = load_inputs(cfg, generator_path, teacher_dir, refstats_dir, real_dir)
    student = student_metrics(inp)
    teacher, teacher_note = teacher_metrics(inp)
    rows, intra, intra_note = intra_fid_metrics(inp)
    comp = _compression(inp.G, cfg.d_ch, inp.device, inp.teacher_info)
    curve, curve_note = fid_curve(inp, snapshots_dir)
    notes = {"fid_curve_note": curve_note,
             "teacher_note": "; ".join(n for n in (teacher_note, intra_note) if n) or None,
             "reference_note": _reference_note(inp)}
    notes["extractor_note"] = inp.ext.note
    notes["is_note"] = None if inp.ext.has_probs else f"IS n/a: {inp.ext.name} gives features only"
    metrics = _checked({**student, **teacher, **intra, **comp, "extractor": inp.ext.name, "protocol": cfg.protocol,
                        "teacher_samples": teacher_samples_note(cfg, inp.teacher),
                        **{k: v for k, v in notes.items() if v}})
    write_outputs(out_dir, inp, metrics, rows, curve)
    return metrics


def _reference_note(inp: Inputs) -> str | None:
    ref_classes, n_cls = inp.ref.classes, len(inp.cfg.classes)
    if set(ref_classes) == set(inp.cfg.classes):
        return None
    return (f"the reference statistics cover {len(ref_classes)} classes, {n_cls} are evaluated: FID/KID "
            f"compare with all {len(ref_classes)}")
