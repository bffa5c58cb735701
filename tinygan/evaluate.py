"""Evaluation (paper Sec. 4): IS, FID, intra-FID and KID of the student and of the teacher, the
compression table, and the paper's figures (Fig. 8-11).

Two steps, two DVC outputs:

* ``reference_stats``: features of the real shards (``data/real``), one class at a time, saved as a
  ``tinygan.frechet.ClassStats`` directory (``class_XXXX.npz`` per class, ``overall.npz`` with a KID
  reservoir, ``index.json``) plus ``refstats.json`` (extractor, counts). Computed once per extractor.
* ``evaluate``: generated images are streamed batch by batch through the extractor, never all held:

  - student, overall: ``n_samples`` images, labels round-robin over ``classes`` (exactly uniform; image
    ``k`` of class ``c`` uses noise ``truncated_z(seed, c, k, truncation)``, the same noise as
    ``tinygan generate``); IS over 10 splits from the class probabilities, FID against the overall
    reference stats, KID against the reference reservoir;
  - student, per class: ``per_class_samples`` images of one class vs that class's reference stats
    (intra-FID), one class at a time (its statistics are dropped before the next class);
  - teacher: the same metrics from the teacher's stored images in ``data/teacher`` (as many as there
    are; when fewer than requested, ``teacher_note`` in metrics.json says so).

Outputs in ``out_dir``, replaced as a whole (``tinygan.io.atomic_dir``: all new, or all old after a
failure): ``metrics.json`` (flat numbers for ``dvc metrics``),
``per_class.csv`` + ``per_class.png`` (Fig. 9, teacher vs student intra-FID per class),
``worst10.png`` (Fig. 11, teacher | student samples of the classes with the worst student intra-FID, on
the teacher's own noise), ``interpolation.png`` (Fig. 10, class and noise interpolation) and
``fid_curve.csv`` + ``fid_curve.png`` (Fig. 8, FID of the train-stage G snapshots, with fewer samples).
matplotlib is not a dependency: the charts are drawn with PIL.

Memory: the overall statistics are O(d^2) (a float64 scatter matrix once n > d) plus KID reservoirs of
``kid_reservoir`` rows; IS keeps the probabilities of one split at a time (n_samples / 10 rows of K
floats); per-class statistics exist for one class at a time. Nothing grows with the number of classes,
and only the IS split buffer grows with n_samples.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from tinygan import classes as imagenet
from tinygan.errors import TinyGANError
from tinygan.extractors import Extractor, load_extractor
from tinygan.frechet import STATS_FORMAT, ClassStats, Stats, StatsAccumulator, frechet_distance
from tinygan.generate import interpolation_sheet, load_generator, save_png, to_uint8
from tinygan.io import atomic_dir, check_replaceable, sha256_file, write_json, write_text
from tinygan.metrics import inception_score, kid
from tinygan.shards import ShardDataset
from tinygan.teacher import truncated_z_batch

REFSTATS_JSON = "refstats.json"
SNAPSHOT_RE = re.compile(r"^G-(\d+)\.safetensors$")
KID_SUBSET = 1000  # StyleGAN2-ADA's max_subset_size
OUT_FILES = ("metrics.json", "per_class.csv", "per_class.png", "worst10.png", "interpolation.png", "fid_curve.csv",
             "fid_curve.png")  # everything evaluate writes: out_dir is replaced as a whole


# ----------------------------------------------------------------------------------------------
# Reference statistics of the real images


def _nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor (the extractor's input)."""
    return torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TinyGANError(f"device {device!r} asked for, but CUDA is not available; use device 'cpu' or 'auto'")
    return dev


def reference_stats(real_dir: str | os.PathLike, extractor_path: str | os.PathLike, extractor_kind: str,
                    out_dir: str | os.PathLike, sha256: str | None = None, batch_size: int = 64,
                    device: str | torch.device = "cpu", progress: bool = True, kid_reservoir: int = 5000,
                    seed: int = 0) -> dict:
    """Features of every real image in ``real_dir``, saved as per-class and overall statistics.

    Classes are processed one at a time (each class's images read in batches of ``batch_size``), so
    memory holds: the overall accumulator (a float64 d x d scatter matrix once n > d, plus a seeded
    reservoir of ``kid_reservoir`` raw feature rows for KID) and the current class's accumulator. A class
    with n <= d images keeps its raw features by design (the exact low-rank Fréchet path needs them; they
    are smaller than a d x d matrix: 1,300 x 2048 float32 = 10.6 MB at Inception's d), a larger class a
    d x d scatter matrix. Nothing grows with the number of classes.

    Writes into ``out_dir`` the ``ClassStats`` layout (``class_XXXX.npz``, ``overall.npz``, ``index.json``
    last) and ``refstats.json``; returns the latter's content (extractor name and sha256, counts).
    """
    out_dir = Path(out_dir)
    if batch_size < 1:
        raise TinyGANError(f"reference stats batch_size must be at least 1, got {batch_size}")
    ds = ShardDataset(real_dir, fields=("images",), kind="real")
    ext = load_extractor(extractor_path, extractor_kind, sha256=sha256, device=_device(device))
    counts = ds.class_counts()
    if not counts:
        raise TinyGANError(f"the real shards in {real_dir} hold no images; run the prepare stage first")
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "index.json"
    index_path.unlink(missing_ok=True)  # the directory is incomplete until index.json is rewritten
    overall = StatsAccumulator(ext.feature_dim, reservoir=kid_reservoir, seed=seed)
    index = {"format": STATS_FORMAT, "classes": {}, "overall": None}
    bar = tqdm(total=len(ds), desc=f"reference features ({ext.name})", unit="img", disable=not progress)
    for c in sorted(counts):
        acc = StatsAccumulator(ext.feature_dim)
        for batch in ds.iter_read(ds.class_indices(c), batch_size=batch_size, raw=True, fields=("images",)):
            feats, _ = ext(_nchw(batch["images"]), need_probs=False)
            acc.update(feats)
            overall.update(feats)
            bar.update(len(feats))
        stats = acc.finalize()
        name = f"class_{c:04d}.npz"
        stats.save(out_dir / name)
        index["classes"][str(c)] = {"file": name, "n": stats.n, "d": stats.d}
        del acc, stats
    bar.close()
    total = overall.finalize()
    total.save(out_dir / "overall.npz")
    index["overall"] = {"file": "overall.npz", "n": total.n, "d": total.d}
    keep = {v["file"] for v in index["classes"].values()} | {"overall.npz"}
    for stale in out_dir.glob("*.npz"):
        if stale.name not in keep:
            stale.unlink()
    info = {
        "extractor": ext.name,
        "extractor_kind": extractor_kind,
        "extractor_sha256": sha256_file(extractor_path),
        "feature_dim": ext.feature_dim,
        "n": int(total.n),
        "num_classes": len(counts),
        "class_counts": {str(c): int(k) for c, k in sorted(counts.items())},
        "kid_reservoir": 0 if total.reservoir is None else int(len(total.reservoir)),
        "real_dir": str(real_dir),
        "real_fingerprint": str(ds.manifest.get("fingerprint", "")),
        "seed": int(seed),
    }
    write_json(out_dir / REFSTATS_JSON, info)
    write_json(index_path, index)  # last: a directory with an index is complete (ClassStats.load)
    return info


def _load_refstats(refstats_dir: Path, ext: Extractor, extractor_path, classes: Sequence[int]) -> tuple[ClassStats, dict]:
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
    missing = [c for c in classes if c not in ref]
    if missing:
        raise TinyGANError(f"reference statistics in {refstats_dir} lack classes {missing[:10]}; the real shards "
                           f"must hold every evaluated class (check `classes` and rerun prepare + refstats)")
    return ref, info


# ----------------------------------------------------------------------------------------------
# Streaming measurement


class _Measure:
    """Streaming feature statistics (with a KID reservoir) and Inception Score over fixed splits.

    Split i is rows [i*N//splits, (i+1)*N//splits) of the N rows, as in ``metrics.inception_score``; the
    probabilities of one split are buffered until it is complete, scored with ``inception_score(part, 1)``
    and dropped. mean/std over the splits then equal ``inception_score(all_probs, splits)``.
    """

    def __init__(self, d: int, n_total: int, splits: int = 10, reservoir: int = 0, seed: int = 0,
                 need_probs: bool = True):
        self.acc = StatsAccumulator(d, reservoir=reservoir, seed=seed)
        self.n_total, self.splits, self.need_probs = int(n_total), int(splits), need_probs
        self.scores: list[float] = []
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._done = 0  # rows already scored

    def update(self, feats: np.ndarray, probs: np.ndarray | None) -> None:
        self.acc.update(feats)
        if not self.need_probs:
            return
        self._buf.append(probs)
        self._buffered += len(probs)
        while len(self.scores) < self.splits:
            end = (len(self.scores) + 1) * self.n_total // self.splits
            need = end - self._done
            if self._buffered < need:
                break
            rows = np.concatenate(self._buf)
            self.scores.append(inception_score(rows[:need], splits=1)[0])
            self._buf, self._buffered, self._done = [rows[need:]], len(rows) - need, end

    def result(self) -> tuple[Stats, float | None, float | None]:
        stats = self.acc.finalize()
        if stats.n != self.n_total:
            raise RuntimeError(f"measured {stats.n} images, expected {self.n_total}")
        if not self.need_probs:
            return stats, None, None
        return stats, float(np.mean(self.scores)), float(np.std(self.scores))


def _measure(ext: Extractor, batches: Iterable[torch.Tensor], n_total: int, desc: str, progress: bool,
             splits: int = 10, reservoir: int = 0, seed: int = 0,
             need_probs: bool = True) -> tuple[Stats, float | None, float | None]:
    """Run uint8 NCHW image batches through ``ext``; return (stats, IS mean, IS std)."""
    m = _Measure(ext.feature_dim, n_total, splits, reservoir, seed, need_probs)
    with tqdm(total=n_total, desc=desc, unit="img", disable=not progress) as bar:
        for images in batches:
            feats, probs = ext(images, need_probs=need_probs)
            m.update(feats, probs)
            bar.update(len(feats))
    return m.result()


def _generated(G, ys: np.ndarray, ks: np.ndarray, truncation: float, seed: int, batch_size: int,
               device: torch.device) -> Iterator[torch.Tensor]:
    """Student images (uint8 NCHW, CPU) of classes ``ys``, image index ``ks`` within each class."""
    for a in range(0, len(ys), batch_size):
        y = ys[a:a + batch_size]
        z = truncated_z_batch(seed, y, ks[a:a + batch_size], truncation)
        with torch.inference_mode():
            x = G(torch.from_numpy(z).to(device), torch.from_numpy(y).to(device))
        yield _nchw(to_uint8(x.float().cpu().numpy()))


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


# ----------------------------------------------------------------------------------------------
# Compression table


def _compression(G, d_ch: int | None, device: torch.device, teacher_info: dict) -> dict:
    """Student size (measured) vs the teacher's ``teacher_info`` (``tinygan.teacher.describe``)."""
    from tinygan.models import Discriminator
    from tinygan.summary import count_macs, count_params

    cfg = G.config
    z = torch.zeros(2, cfg["z_dim"], device=device)
    y = torch.zeros(2, dtype=torch.long, device=device)
    g_params, g_macs = count_params(G), count_macs(G, z, y)
    d_params = count_params(Discriminator(ch=int(d_ch or cfg["ch"]), n_classes=cfg["n_classes"]))
    teacher = dict(teacher_info)
    ratio = teacher["g_params"] / g_params if teacher["g_params"] else None
    macs_ratio = teacher["g_macs"] / g_macs if teacher["g_macs"] else None
    return {
        "student": {"g_params": int(g_params), "g_macs": int(g_macs), "d_params": int(d_params),
                    "variant": cfg["variant"], "ch": cfg["ch"], "d_ch": int(d_ch or cfg["ch"]),
                    "source": "measured (tinygan.summary: conv/linear multiply-adds per 128x128 image)"},
        "teacher": teacher,
        "compression_ratio": ratio,
        "macs_ratio": macs_ratio,
    }


# ----------------------------------------------------------------------------------------------
# Charts and sheets (PIL only)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    mag = 10 ** math.floor(math.log10(span / n))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if span / (m * mag) <= n)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _chart(series: list[dict], title: str, xlabel: str, ylabel: str, diagonal: bool = False,
           size: tuple[int, int] = (720, 540), note: str | None = None) -> np.ndarray:
    """A simple chart as uint8 HxWx3. Each series: {x, y, color, lines (bool), labels (optional), name}.
    ``diagonal``: equal x/y ranges and a dashed y = x line (for teacher-vs-student scatter plots).
    ``note``: a message written in the middle of the plot area (e.g. why it is empty)."""
    from PIL import Image, ImageDraw

    W, H = size
    left, right, top, bottom = 78, 24, 44, 56
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = _font()
    xs = [float(v) for s in series for v in s["x"]]
    ys = [float(v) for s in series for v in s["y"]]
    if diagonal:
        xs = ys = xs + ys
    def rng(vals):
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else max(1.0, abs(lo) * 0.1)
        return lo - pad, hi + pad
    (x0, x1), (y0, y1) = rng(xs), rng(ys)
    pw, ph = W - left - right, H - top - bottom
    fx = lambda v: left + (v - x0) / (x1 - x0) * pw  # noqa: E731
    fy = lambda v: top + ph - (v - y0) / (y1 - y0) * ph  # noqa: E731
    for t in _ticks(x0, x1):
        draw.line([(fx(t), top), (fx(t), top + ph)], fill=(230, 230, 230))
        draw.text((fx(t), top + ph + 6), _fmt(t), fill="black", font=font, anchor="ma")
    for t in _ticks(y0, y1):
        draw.line([(left, fy(t)), (left + pw, fy(t))], fill=(230, 230, 230))
        draw.text((left - 6, fy(t)), _fmt(t), fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    if diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        n = 40
        for i in range(0, n, 2):
            a, b = lo + (hi - lo) * i / n, lo + (hi - lo) * (i + 1) / n
            draw.line([(fx(a), fy(a)), (fx(b), fy(b))], fill=(150, 150, 150))
    for s in series:
        pts = [(fx(float(x)), fy(float(y))) for x, y in zip(s["x"], s["y"])]
        if s.get("lines") and len(pts) > 1:
            draw.line(pts, fill=s["color"], width=2)
        for i, (px, py) in enumerate(pts):
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=s["color"])
            if s.get("labels"):
                draw.text((px + 6, py - 6), str(s["labels"][i]), fill=(60, 60, 60), font=font)
    if note:
        draw.multiline_text((left + pw / 2, top + ph / 2), note, fill=(120, 120, 120), font=font, anchor="mm",
                            align="center")
    draw.text((W / 2, 14), title, fill="black", font=font, anchor="ma")
    draw.text((left + pw / 2, H - 18), xlabel, fill="black", font=font, anchor="ma")
    label = Image.new("RGB", (ph, 16), "white")
    ImageDraw.Draw(label).text((ph / 2, 2), ylabel, fill="black", font=font, anchor="ma")
    img.paste(label.rotate(90, expand=True), (8, top))
    x = left
    for s in (s for s in series if s.get("name")):  # legend: one line between the title and the plot
        draw.ellipse([x, top - 16, x + 8, top - 8], fill=s["color"])
        draw.text((x + 12, top - 18), s["name"], fill="black", font=font)
        x += 24 + int(draw.textlength(s["name"], font=font))
    return np.asarray(img)


def _text_strip(lines: list[str], width: int, height: int, top: int = 6) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, top + 14 * i), line, fill="black", font=_font())
    return np.asarray(img)


def _worst_sheet(G, ds: ShardDataset, rows: list[dict], m: int, truncation: float, seed: int,
                 device: torch.device) -> np.ndarray:
    """Paper Fig. 11: per class a row of ``m`` teacher samples | ``m`` student samples on the same z."""
    res = int(ds.manifest["resolution"])
    gap = np.full((res, 8, 3), 255, np.uint8)
    label_w = 170
    out = [np.concatenate([_text_strip(["class"], label_w, 20), _text_strip(["teacher (stored samples)"], m * res, 20),
                           np.full((20, 8, 3), 255, np.uint8), _text_strip(["student (same z, y)"], m * res, 20)],
                          axis=1)]
    for r in rows:
        c = r["class"]
        idx = ds.class_indices(c)[:m]
        got = ds.read(idx, raw=True, fields=("z", "images")) if len(idx) else {"z": np.zeros((0, 128), np.float32)}
        z = np.zeros((m, G.config["z_dim"]), np.float32)
        z[:len(idx)] = got["z"]
        if len(idx) < m:  # fewer stored teacher samples: the student uses its own noise for the rest
            z[len(idx):] = truncated_z_batch(seed, [c] * (m - len(idx)), range(len(idx), m), truncation)
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


def _interpolation(G, classes: Sequence[int], seed: int, truncation: float, steps: int = 8) -> np.ndarray:
    """Paper Fig. 10: z fixed, classes[0] -> classes[1] (3 rows); class fixed, seed -> seed+1 (up to 3 rows).
    Each part has an 18-pixel caption above it."""
    parts = []
    if len(classes) >= 2:
        a, b = classes[0], classes[1]
        parts.append((f"class {a} ({imagenet.name_of(a)}) -> class {b} ({imagenet.name_of(b)}), z fixed per row "
                      f"(seeds {seed}-{seed + 2})",
                      interpolation_sheet(G, "classes", a, b, [seed, seed + 1, seed + 2], steps, truncation)))
    rows = list(classes[:3])
    parts.append((f"z from seed {seed} -> seed {seed + 1}, class fixed per row ({', '.join(map(str, rows))})",
                  interpolation_sheet(G, "seeds", seed, seed + 1, rows, steps, truncation)))
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
# The evaluation


def _check_args(classes, n_samples, per_class_samples, truncation, batch_size, is_splits, curve_samples) -> list[int]:
    classes = [int(c) for c in classes]
    if not classes:
        raise TinyGANError("evaluate: no classes given; set `classes`")
    if len(set(classes)) != len(classes):
        raise TinyGANError(f"evaluate: classes {classes} contain duplicates")
    for name, value, low in (("n_samples", n_samples, is_splits), ("per_class_samples", per_class_samples, 2),
                             ("batch_size", batch_size, 1), ("curve_samples", curve_samples, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise TinyGANError(f"evaluate: {name} must be an integer >= {low}, got {value!r}")
    if not 0.0 < float(truncation) <= 1.0:
        raise TinyGANError(f"evaluate: truncation must be in (0, 1], got {truncation}")
    return classes


def evaluate(generator_path: str | os.PathLike, teacher_dir: str | os.PathLike, refstats_dir: str | os.PathLike,
             extractor_path: str | os.PathLike, extractor_kind: str, out_dir: str | os.PathLike,
             classes: Sequence[int], n_samples: int = 50_000, per_class_samples: int = 5_000,
             truncation: float = 0.5, seed: int = 0, batch_size: int = 64, device: str | torch.device = "cpu",
             snapshots_dir: str | os.PathLike | None = None,
             progress: bool = True, *, extractor_sha256: str | None = None, d_ch: int | None = None,
             curve_samples: int = 1000, kid_reservoir: int = 5000, kid_subsets: int = 100,
             is_splits: int = 10, sheet_samples: int = 6, worst_k: int = 10) -> dict:
    """Evaluate the student (and, for comparison, the teacher's stored samples); write ``out_dir``.

    generator_path: ``data/student/generator.safetensors`` (or an exported one). teacher_dir: the teacher
    shards. refstats_dir: the output of ``reference_stats`` made with the same extractor (checked by name
    and sha256). classes: the evaluated class indices. n_samples: images for IS/FID/KID (paper: 50,000);
    per_class_samples: images per class for intra-FID (paper: 5,000). truncation/seed: the student's noise
    (image k of class c uses ``truncated_z(seed, c, k, truncation)``). snapshots_dir: the train stage's
    ``G-<step>.safetensors`` snapshots for the FID curve, each measured on the first
    ``min(curve_samples, n_samples)`` images of the same noise. The compression table takes the teacher's
    size from the ``teacher_info`` of the teacher manifest. d_ch: the discriminator's channel multiplier
    (default: the generator's ``ch``).
    Returns the dict written to ``metrics.json``.
    """
    classes = _check_args(classes, n_samples, per_class_samples, truncation, batch_size, is_splits, curve_samples)
    out_dir = Path(out_dir)
    check_replaceable(out_dir, OUT_FILES)  # before the long measurement: atomic_dir replaces the whole directory
    dev = _device(device)
    ext = load_extractor(extractor_path, extractor_kind, sha256=extractor_sha256, device=dev)
    ref, ref_info = _load_refstats(Path(refstats_dir), ext, extractor_path, classes)
    ref_overall = ref.overall
    if ref_overall is None or ref_overall.reservoir is None or len(ref_overall.reservoir) < 2:
        raise TinyGANError(f"reference statistics in {refstats_dir} have no overall KID reservoir; rerun the "
                           f"reference statistics stage")
    G = load_generator(generator_path).to(dev)
    n_classes = G.config["n_classes"]
    if max(classes) >= n_classes:
        raise TinyGANError(f"evaluate: class {max(classes)} is out of range for the generator ({n_classes} classes)")
    tds = ShardDataset(teacher_dir, fields=("images",), kind="teacher")
    teacher_info = tds.manifest.get("teacher_info")
    if not isinstance(teacher_info, dict):
        raise TinyGANError(f"the teacher manifest in {teacher_dir} has no teacher_info; rerun the sample stage")
    notes: list[str] = []
    kid_seed = seed

    # -- student: IS / FID / KID over n_samples images, labels round-robin over the classes
    n_cls = len(classes)
    ys = np.asarray(classes, dtype=np.int64)[np.arange(n_samples) % n_cls]
    ks = np.arange(n_samples, dtype=np.int64) // n_cls
    s_stats, s_is, s_is_std = _measure(ext, _generated(G, ys, ks, truncation, seed, batch_size, dev), n_samples,
                                       "student samples", progress, is_splits, kid_reservoir, seed)
    s_fid = frechet_distance(s_stats, ref_overall)
    s_kid = kid(ref_overall.reservoir, s_stats.reservoir, num_subsets=kid_subsets, max_subset_size=KID_SUBSET,
                seed=kid_seed)
    del s_stats

    # -- teacher: the same from its stored images
    t_idx = _round_robin(tds, classes, n_samples)
    if len(t_idx) < is_splits:
        raise TinyGANError(f"the teacher shards in {teacher_dir} hold {len(t_idx)} images of the evaluated classes; "
                           f"IS needs at least {is_splits}: rerun the sample stage")
    if len(t_idx) < n_samples:
        notes.append(f"teacher IS/FID/KID use the {len(t_idx)} stored teacher images of the evaluated classes "
                     f"(fewer than n_samples={n_samples})")
    t_stats, t_is, t_is_std = _measure(ext, _stored(tds, t_idx, batch_size), len(t_idx), "teacher samples",
                                       progress, is_splits, kid_reservoir, seed)
    t_fid = frechet_distance(t_stats, ref_overall)
    t_kid = kid(ref_overall.reservoir, t_stats.reservoir, num_subsets=kid_subsets, max_subset_size=KID_SUBSET,
                seed=kid_seed)
    del t_stats

    # -- intra-FID, one class at a time (student and teacher)
    rows = []
    short = []
    bar = tqdm(total=n_cls, desc="intra-FID", unit="class", disable=not progress)
    for c in classes:
        ref_c = ref[c]
        ks_c = np.arange(per_class_samples, dtype=np.int64)
        g_c, _, _ = _measure(ext, _generated(G, np.full(per_class_samples, c, np.int64), ks_c, truncation, seed,
                                             batch_size, dev), per_class_samples, f"student class {c}", False,
                             need_probs=False)
        s_c = frechet_distance(g_c, ref_c)
        t_ids = tds.class_indices(c)[:per_class_samples]
        t_c = None
        if len(t_ids) >= 2:
            tc_stats, _, _ = _measure(ext, _stored(tds, t_ids, batch_size), len(t_ids), f"teacher class {c}",
                                      False, need_probs=False)
            t_c = frechet_distance(tc_stats, ref_c)
            del tc_stats
        if len(t_ids) < per_class_samples:
            short.append((c, len(t_ids)))
        rows.append({"class": c, "wnid": imagenet.wnid_of(c), "name": imagenet.name_of(c),
                     "student_intra_fid": s_c, "teacher_intra_fid": t_c, "teacher_n": int(len(t_ids))})
        del g_c, ref_c
        bar.update(1)
    bar.close()
    s_intra = float(np.mean([r["student_intra_fid"] for r in rows]))
    t_vals = [r["teacher_intra_fid"] for r in rows if r["teacher_intra_fid"] is not None]
    t_intra = float(np.mean(t_vals)) if t_vals else None
    if short:
        few = min(n for _, n in short)
        notes.append(f"teacher intra-FID uses the stored teacher images: {len(short)} of {n_cls} classes have fewer "
                     f"than per_class_samples={per_class_samples} (as few as {few})"
                     + ("; classes with < 2 images are left out of the mean" if len(t_vals) < n_cls else ""))

    # -- compression table
    comp = _compression(G, d_ch, dev, teacher_info)

    # -- FID over training (Fig. 8)
    snaps = _snapshots(snapshots_dir)
    n_curve = min(curve_samples, n_samples)
    curve = []
    for step, path in tqdm(snaps, desc="FID over training", unit="snapshot", disable=not progress):
        Gs = load_generator(path).to(dev)
        st, _, _ = _measure(ext, _generated(Gs, ys[:n_curve], ks[:n_curve], truncation, seed, batch_size, dev),
                            n_curve, f"snapshot {step}", False, need_probs=False)
        curve.append((step, frechet_distance(st, ref_overall)))
        del Gs, st
    with atomic_dir(out_dir, OUT_FILES) as out:  # all outputs new, or (on any error) the old ones kept
        write_text(out / "fid_curve.csv", _csv(["step", "fid"], [[s, _num(f)] for s, f in curve]))
        if curve:
            save_png(out / "fid_curve.png", _chart(
                [{"x": [s for s, _ in curve], "y": [f for _, f in curve], "color": (31, 119, 180), "lines": True,
                  "name": "student snapshots"}],
                f"FID over training ({n_curve} samples per snapshot, {ext.name})", "iteration", "FID"))
        else:
            why = ("no snapshots_dir given" if not snapshots_dir else
                   f"no G-<step>.safetensors snapshots in {snapshots_dir} (train.snapshot_every = 0, or training "
                   f"stopped before the first snapshot)")
            save_png(out / "fid_curve.png", _chart([], "FID over training: no snapshots", "iteration", "FID",
                                                   note=why.replace(" (", "\n(")))

        # -- per-class table and figures
        write_text(out / "per_class.csv", _csv(
            ["class", "wnid", "name", "student_intra_fid", "teacher_intra_fid"],
            [[r["class"], r["wnid"], r["name"], _num(r["student_intra_fid"]), _num(r["teacher_intra_fid"])]
             for r in rows]))
        paired = [r for r in rows if r["teacher_intra_fid"] is not None]
        save_png(out / "per_class.png", _chart(
            [{"x": [r["teacher_intra_fid"] for r in paired], "y": [r["student_intra_fid"] for r in paired],
              "color": (214, 39, 40), "labels": [r["class"] for r in paired] if len(paired) <= 20 else None,
              "name": "class (above the line: student worse)"}],
            f"intra-FID per class ({ext.name})", "teacher intra-FID", "student intra-FID", diagonal=True))
        worst = sorted(rows, key=lambda r: -r["student_intra_fid"])[:worst_k]
        save_png(out / "worst10.png", _worst_sheet(G, ShardDataset(teacher_dir, fields=("z", "images")), worst,
                                                   sheet_samples, truncation, seed, dev))
        save_png(out / "interpolation.png", _interpolation(G, classes, seed, truncation))

        # -- metrics.json
        metrics = {
            "is": s_is, "is_std": s_is_std, "fid": s_fid, "intra_fid": s_intra, "kid": s_kid,
            "teacher_is": t_is, "teacher_is_std": t_is_std, "teacher_fid": t_fid, "teacher_intra_fid": t_intra,
            "teacher_kid": t_kid,
            "g_params": comp["student"]["g_params"], "d_params": comp["student"]["d_params"],
            "g_macs": comp["student"]["g_macs"],
            "teacher_g_params": comp["teacher"]["g_params"], "teacher_g_macs": comp["teacher"]["g_macs"],
            "teacher_figures": comp["teacher"]["source"],
            "compression_ratio": comp["compression_ratio"], "macs_ratio": comp["macs_ratio"],
            "compression": comp,
            "n_samples": int(n_samples), "per_class_samples": int(per_class_samples),
            "teacher_n_samples": int(len(t_idx)),
            "classes": n_cls, "truncation": float(truncation), "seed": int(seed),
            "extractor": ext.name, "feature_dim": ext.feature_dim,
            "kid_subsets": int(kid_subsets), "kid_reservoir": int(kid_reservoir), "is_splits": int(is_splits),
            "fid_curve_samples": int(n_curve), "fid_curve_points": len(curve),
            "reference_n": int(ref_info.get("n", 0)),
        }
        if not curve:
            metrics["fid_curve_note"] = why
        if notes:
            metrics["teacher_note"] = "; ".join(notes)
        if ext.note:
            metrics["extractor_note"] = ext.note
        if set(ref.classes) != set(classes):
            metrics["reference_note"] = (f"the reference statistics cover {len(ref.classes)} classes, {n_cls} are "
                                         f"evaluated: FID/KID compare with all {len(ref.classes)}")
        for k, v in metrics.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise TinyGANError(f"evaluate: metric {k} is {v}; the images or the extractor are broken")
        write_json(out / "metrics.json", metrics)
    return metrics
