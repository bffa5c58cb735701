"""Shared fixtures: tiny teacher/real shard directories made directly with the shard writer (no TF needed)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import torch

from tinygan import shards
from tinygan.models import Generator

torch.set_num_threads(1)  # tiny models on a 2-core box: one thread avoids oversubscription


def pair_arrays(classes, per_class, seed):
    """(z, y, images): images are a simple, learnable function of (z, y)."""
    rng = np.random.default_rng(seed)
    z, y, images = [], [], []
    g = np.linspace(-1, 1, 128, dtype=np.float32)
    for c in classes:
        colour = np.array([(c * 37) % 200 + 40, (c * 91) % 200 + 40, (c * 13) % 200 + 40], np.float32)
        for _ in range(per_class):
            zi = (0.5 * np.clip(rng.standard_normal(128), -2, 2)).astype(np.float32)
            ramp = 0.6 + 0.4 * np.tanh(zi[0]) * g[None, :, None]
            images.append(np.clip(colour * ramp * np.ones((128, 1, 1), np.float32), 0, 255).astype(np.uint8))
            z.append(zi)
            y.append(c)
    return np.stack(z), np.asarray(y, np.int64), np.stack(images)


def make_pairs(out_dir, classes=(1, 9, 130), per_class=10, seed=0, shard_size=16, extra=None):
    """Teacher-style shards (z, y, images) written with the real shard writer (``extra``: more manifest keys,
    e.g. the teacher's latent recipe)."""
    z, y, images = pair_arrays(classes, per_class, seed)
    infos = []
    for k in range(0, len(y), shard_size):
        sl = slice(k, k + shard_size)
        infos.append(shards.write_shard(os.path.join(out_dir, f"teacher-{k // shard_size:05d}.h5"),
                                        {"z": z[sl], "y": y[sl], "images": images[sl]},
                                        {"kind": "teacher", "fingerprint": "test", "shard": k // shard_size}))
    shards.write_manifest(out_dir, "teacher", infos, {c: per_class for c in classes}, extra, fingerprint="test",
                          resolution=128)
    return z, y, images


def make_real(out_dir, classes=(1, 9, 130), per_class=8, seed=1):
    _, y, images = pair_arrays(classes, per_class, seed)
    names = np.asarray([f"img{i}.JPEG" for i in range(len(y))], dtype=object)
    info = shards.write_shard(os.path.join(out_dir, "real-00000.h5"), {"images": images[::-1].copy(),
                              "y": y[::-1].copy(), "names": names}, {"kind": "real", "fingerprint": "test"})
    shards.write_manifest(out_dir, "real", [info], {c: per_class for c in classes}, fingerprint="test",
                          resolution=128)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    make_pairs(str(root / "teacher"))
    make_real(str(root / "real"))
    return root


def random_generator(seed: int = 0, ch: int = 4) -> Generator:
    """Eval-mode dw generator with random weights (CBN gains non-trivial) and BN running stats from a few
    batches: a stand-in for a trained student in export / generate / evaluate tests."""
    torch.manual_seed(seed)
    G = Generator("dw", ch)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_(0.0, 0.2)
        G.train()
        for _ in range(3):
            G(torch.randn(8, 128) * 0.5, torch.randint(0, 1000, (8,)))
    return G.eval()


def stand_in_encoder(feature_dim: int = 8) -> torch.jit.ScriptModule:
    """A frozen-encoder stand-in for L_DiME: the demo judge's TorchScript (Inception call signature), untrained."""
    from tinygan.demo.judge import JudgeNet

    torch.manual_seed(0)
    return torch.jit.script(JudgeNet([1, 2], width=4, feature_dim=feature_dim, input_size=32).eval())


@pytest.fixture(scope="session")
def encoder_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    torch.jit.save(stand_in_encoder(), str(path))
    return path
