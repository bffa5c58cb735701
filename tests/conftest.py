"""Shared fixtures: tiny teacher/real shard directories made directly with the shard writer (no TF needed)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import torch

from tinygan import shards
from tinygan.models import Generator

torch.set_num_threads(1)  # tiny models on a 2-core box: one thread avoids oversubscription


@pytest.fixture(autouse=True, scope="session")
def _verify_records(tmp_path_factory):
    """Shard verify records (tinygan.shards.record_dir) go to a temp dir, not the user's cache."""
    os.environ[shards.RECORD_ENV] = str(tmp_path_factory.mktemp("verify-records"))


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


def make_pairs(out_dir, classes=(1, 9, 130), per_class=10, seed=0, shard_size=16, resolution=128, extra=None):
    """Teacher-style shards (z, y, images) written with the real shard writer; images subsampled to
    ``resolution`` (a divisor of 128); ``extra``: more manifest keys (the teacher's c_dim, z_dim)."""
    z, y, images = pair_arrays(classes, per_class, seed)
    images = images[:, ::128 // resolution, ::128 // resolution].copy()
    infos = []
    for k in range(0, len(y), shard_size):
        sl = slice(k, k + shard_size)
        infos.append(shards.write_shard(os.path.join(out_dir, f"teacher-{k // shard_size:05d}.h5"),
                                        {"z": z[sl], "y": y[sl], "images": images[sl]},
                                        {"kind": "teacher", "fingerprint": "test", "shard": k // shard_size}))
    shards.write_manifest(out_dir, "teacher", infos, {c: per_class for c in classes}, extra, fingerprint="test",
                          resolution=resolution)
    return z, y, images


def make_real(out_dir, classes=(1, 9, 130), per_class=8, seed=1, resolution=128):
    _, y, images = pair_arrays(classes, per_class, seed)
    images = images[:, ::128 // resolution, ::128 // resolution]
    names = np.asarray([f"img{i}.JPEG" for i in range(len(y))], dtype=object)
    info = shards.write_shard(os.path.join(out_dir, "real-00000.h5"), {"images": images[::-1].copy(),
                              "y": y[::-1].copy(), "names": names}, {"kind": "real", "fingerprint": "test"})
    shards.write_manifest(out_dir, "real", [info], {c: per_class for c in classes}, fingerprint="test",
                          resolution=resolution)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    make_pairs(str(root / "teacher"))
    make_real(str(root / "real"))
    return root


def random_generator(seed: int = 0, ch: int = 4, **shape) -> Generator:
    """Eval-mode dw generator with random weights (CBN gains non-trivial) and BN running stats from a few
    batches: a stand-in for a trained student in export / generate / evaluate tests. ``shape``: Generator's
    n_classes, z_dim, resolution (default: the 128² ImageNet student's)."""
    torch.manual_seed(seed)
    G = Generator("dw", ch, **shape)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_(0.0, 0.2)
        G.train()
        for _ in range(3):
            G(torch.randn(8, G.config["z_dim"]) * 0.5, torch.randint(0, max(G.config["n_classes"], 1), (8,)))
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
