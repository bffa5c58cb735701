"""Demo judge: a small CNN classifier standing in for Inception in the offline demo.

It is trained on the demo's few real images (CPU, well under a minute for ~320 images of 8
classes) and saved as TorchScript with the Inception call signature

    forward(img uint8 [N,3,H,W] in [0,255], return_features=False, use_fp16=False,
            no_output_bias=False) -> features [N, feature_dim] or softmax probs [N, K]

so every metric code path runs unchanged. K is the number of demo classes; output position k is
ImageNet class ``imagenet_classes[k]`` (a buffer in the module, also in the sidecar JSON). IS / FID
measured with it are demo figures only, not comparable to Inception-based numbers: the module says so
itself, in its string attributes ``extractor_name`` (NAME) and ``extractor_note`` (NOTE), which
``tinygan.extractors.load_extractor`` reads.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from tinygan.errors import TinyGANError
from tinygan.io import sha256_file, torchscript_bytes, write_bytes, write_json

NAME = "demo-judge"
NOTE = "not Inception; demo figures only"


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class JudgeNet(nn.Module):
    """64x64 input -> four stride-2 conv-BN-ReLU stages (to 4x4) -> global average pool (the
    features, non-negative like Inception's pool features) -> Linear (logits). ~4 MMAC per image."""

    def __init__(self, imagenet_classes: list[int], width: int = 16, feature_dim: int = 128,
                 input_size: int = 64):
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            _block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, feature_dim, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.output = nn.Linear(feature_dim, len(imagenet_classes))
        self.register_buffer("imagenet_classes", torch.tensor(imagenet_classes, dtype=torch.int64))
        self.feature_dim = feature_dim
        self.num_classes = len(imagenet_classes)
        self.input_size = input_size
        self.extractor_name = NAME  # saved in the TorchScript file: the extractor names itself
        self.extractor_note = NOTE

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,H,W] -> float [N,3,S,S] in [-1, 1] (antialiased bilinear resize to S)."""
        x = img.to(torch.float32)
        s = self.input_size
        if x.shape[2] != s or x.shape[3] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x / 127.5 - 1.0

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        # use_fp16 is accepted for signature compatibility with Inception and ignored.
        features = self.layers(self.preprocess(img))
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, dim=1)


def _split(labels: np.ndarray, heldout_frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: per class, a ``heldout_frac`` share (at least 1 if the class has >= 2)."""
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * heldout_frac))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and random crop after reflect padding (small translations)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def _accuracy(net: JudgeNet, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(x) == 0:
        return float("nan")
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net.output(net.layers(x[i:i + 256])).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def _fit(net: JudgeNet, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
         seed: int, progress: bool) -> None:
    """Adam + cosine LR, cross-entropy on augmented (flip + crop) preprocessed images."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = max(1, -(-len(x) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    for _ in tqdm(range(epochs), desc="demo judge", unit="epoch", disable=not progress):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            loss = F.cross_entropy(net.output(net.layers(_augment(x[idx], gen))), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


@contextlib.contextmanager
def _seeded_deterministic_cpu(seed: int, num_threads: int) -> Iterator[None]:
    """Inside: torch seeded with ``seed``, deterministic algorithms only, ``num_threads`` CPU threads.
    The global RNG state, thread count and determinism setting are restored afterwards."""
    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(num_threads)
            torch.use_deterministic_algorithms(True)
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old[0])
        torch.use_deterministic_algorithms(old[1], warn_only=old[2])


def train_judge(images_uint8_nhwc: np.ndarray, labels: np.ndarray, classes: list[int],
                out_path: str | os.PathLike, seed: int = 0, epochs: int = 30, progress: bool = False,
                heldout_frac: float = 0.2, batch_size: int = 32, lr: float = 2e-3,
                feature_dim: int = 128, width: int = 16, input_size: int = 64, num_threads: int = 1) -> dict:
    """Train the demo judge on labelled images and save it as TorchScript (+ sidecar JSON).

    images_uint8_nhwc: uint8 [N,H,W,3]; labels: ImageNet class indices [N], each one of ``classes``
    (output position k of the judge is ``classes[k]``). A stratified ``heldout_frac`` of each class
    is held out to report accuracy; the rest trains (Adam, cosine LR, flips + small crops) for
    ``epochs`` epochs, on ``num_threads`` CPU threads (restored afterwards; one thread is fastest
    for this small net, and far faster than two on a shared, busy machine) with deterministic algorithms, so
    the same inputs and seed give the same weights. Writes ``out_path`` (TorchScript, see
    ``torchscript_bytes``) and ``out_path`` with suffix .json. Returns the report dict (train/held-out accuracy, sizes, sha256 of the .pt, seconds).
    """
    images = np.asarray(images_uint8_nhwc)
    labels = np.asarray(labels).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
        raise TinyGANError(f"judge training needs uint8 images [N,H,W,3] and N labels, got "
                           f"{images.dtype} {images.shape} and {labels.shape}")
    classes = [int(c) for c in classes]
    pos = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(int(c) for c in np.unique(labels)) - set(pos))
    if unknown:
        raise TinyGANError(f"judge training labels {unknown[:10]} are not among the demo classes {classes}")
    y_all = torch.tensor([pos[int(c)] for c in labels], dtype=torch.int64)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tr, ho = _split(y_all.numpy(), heldout_frac, rng)

    with _seeded_deterministic_cpu(seed, num_threads):
        net = JudgeNet(classes, width=width, feature_dim=feature_dim, input_size=input_size)
        x_all = torch.cat([net.preprocess(torch.from_numpy(images[i:i + 256]).permute(0, 3, 1, 2))
                           for i in range(0, len(images), 256)])
        _fit(net, x_all[tr], y_all[tr], epochs, batch_size, lr, seed, progress)
        train_acc = _accuracy(net, x_all[tr], y_all[tr])
        heldout_acc = _accuracy(net, x_all[ho], y_all[ho])

    out_path = Path(out_path)
    write_bytes(out_path, torchscript_bytes(torch.jit.script(net.eval())))
    report = {
        "name": NAME,
        "note": NOTE,
        "classes": classes,
        "feature_dim": feature_dim,
        "num_classes": len(classes),
        "input_size": input_size,
        "epochs": epochs,
        "seed": seed,
        "num_train": int(len(tr)),
        "num_heldout": int(len(ho)),
        "train_accuracy": train_acc,
        "heldout_accuracy": heldout_acc,
        "sha256": sha256_file(out_path),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    # The sidecar leaves out the wall time so that the same inputs give the same bytes.
    write_json(out_path.with_suffix(".json"), {k: v for k, v in report.items() if k != "seconds"})
    return report


def train_demo_judge(real_dir: str | os.PathLike, out_path: str | os.PathLike, seed: int = 0, epochs: int = 30,
                     progress: bool = True, max_per_class: int | None = None) -> dict:
    """Train the demo judge on the real-image shards of ``real_dir`` (``data/real``) and save it.

    The one call a pipeline stage needs: reads every real image (uint8 NHWC) with its label, trains on
    the classes present (sorted ImageNet indices) with ``train_judge`` and writes ``out_path``
    (TorchScript) plus its sidecar ``out_path`` with suffix .json. The demo world holds ~320 images
    (16 MB at 128 px), so all of them are read at once; ``max_per_class`` caps what is read per class
    (the first N samples of each class) for larger shard dirs. Returns ``train_judge``'s report plus
    ``real_dir`` and the real shards' fingerprint.
    """
    from tinygan.shards import ShardDataset

    ds = ShardDataset(real_dir, fields=("images",), kind="real")
    if len(ds) == 0:
        raise TinyGANError(f"the real shards in {real_dir} hold no images; run the prepare stage first")
    counts = ds.class_counts()
    classes = sorted(counts)
    if max_per_class is None:
        indices = np.arange(len(ds))
    else:
        if max_per_class < 2:
            raise TinyGANError(f"judge max_per_class must be at least 2 (or null for all), got {max_per_class}")
        indices = np.sort(np.concatenate([ds.class_indices(c)[:max_per_class] for c in classes]))
    images = ds.read(indices, raw=True)["images"]
    labels = ds.labels()[indices]
    report = train_judge(images, labels, classes, out_path, seed=seed, epochs=epochs, progress=progress)
    report["real_dir"] = str(real_dir)
    report["real_fingerprint"] = str(ds.manifest.get("fingerprint", ""))
    return report
