"""Extractor loading (hash check, call path, the name and note an extractor gives itself) and the demo judge."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tinygan.errors import TinyGANError
from tinygan.demo.judge import NAME, NOTE, train_judge
from tinygan.extractors import INCEPTION_SHA256, INCEPTION_URL, load_encoder, load_extractor
from tinygan.io import sha256_file


class FakeInception(nn.Module):
    """Same forward signature as the NVlabs TorchScript Inception; d = 6 features, K = 10 classes."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.output = nn.Linear(6, 10)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=(16, 16), mode="bilinear", align_corners=False)
        features = self.layers((x - 128) / 128)
        if return_features:
            return features
        logits = F.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return F.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def fake_inception(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inc") / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(FakeInception()), str(path))
    return path


def _images(n, seed=0, size=20):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_missing_inception_names_path_url_and_hash(tmp_path):
    where = tmp_path / "weights" / "inception-2015-12-05.pt"
    with pytest.raises(TinyGANError) as e:
        load_extractor(where, "inception")
    msg = str(e.value)
    assert str(where) in msg and INCEPTION_URL in msg and INCEPTION_SHA256 in msg and "\n" not in msg


def test_wrong_hash_is_rejected(fake_inception):
    # The fake file is not the real Inception, so the default pinned hash must reject it.
    with pytest.raises(TinyGANError) as e:
        load_extractor(fake_inception, "inception")
    msg = str(e.value)
    assert sha256_file(fake_inception) in msg and INCEPTION_SHA256 in msg and INCEPTION_URL in msg


def test_corrupt_file_with_matching_hash_is_a_user_error(tmp_path):
    bad = tmp_path / "inception-2015-12-05.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(TinyGANError, match="cannot load"):
        load_extractor(bad, "inception", sha256=sha256_file(bad))


@pytest.mark.parametrize("which", ["inception_like", "judge"])
def test_load_encoder_is_frozen_and_passes_gradients_to_float_images(fake_inception, encoder_file, which):
    # L_DiME's encoder: eval mode, no parameter gradients, float input in [0, 255] differentiable
    E = load_encoder(fake_inception if which == "inception_like" else encoder_file)
    assert not E.training and not any(p.requires_grad for p in E.parameters())
    x = (torch.rand(2, 3, 20, 20) * 255).requires_grad_()
    E(x, return_features=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_load_encoder_missing_or_corrupt_is_one_line(tmp_path):
    with pytest.raises(TinyGANError, match="train.dime_encoder"):
        load_encoder(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(TinyGANError, match="lambda_dime: 0"):
        load_encoder(tmp_path / "bad.pt")


def test_unknown_kind(fake_inception):
    with pytest.raises(TinyGANError, match="kind"):
        load_extractor(fake_inception, "vgg")


def test_inception_call_path(fake_inception):
    ext = load_extractor(fake_inception, "inception", sha256=sha256_file(fake_inception))
    assert ext.name == "inception-2015-12-05" and ext.note is None and ext.feature_dim == 6 and ext.num_classes == 10
    assert ext._one_pass  # probs derived from the features' pass, verified against the module
    imgs = _images(5)
    feats, probs = ext(imgs)
    assert feats.dtype == np.float32 and feats.shape == (5, 6)
    assert probs.dtype == np.float32 and probs.shape == (5, 10)
    module = torch.jit.load(str(fake_inception))
    with torch.no_grad():
        ref_f = module(imgs, return_features=True).numpy()
        ref_p = module(imgs, return_features=False, no_output_bias=True).numpy()  # IS as StyleGAN2-ADA
    np.testing.assert_allclose(feats, ref_f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)
    f2, p2 = ext(imgs, need_probs=False)
    assert p2 is None and np.array_equal(f2, feats)
    with pytest.raises(ValueError):
        ext(imgs.to(torch.int32))


def test_features_are_measured_in_ieee_float32(fake_inception, monkeypatch):
    """Whatever the process allows (here: TF32 everywhere), the extractor runs with CUDA's TF32 off, as the
    reference implementations' figures on CPU and the authors' GPU; the process's settings come back after."""
    ext = load_extractor(fake_inception, "inception", sha256=sha256_file(fake_inception))
    seen, module = [], ext.module

    class Spy:
        output = module.output

        def __call__(self, *a, **k):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return module(*a, **k)
    monkeypatch.setattr(ext, "module", Spy())
    for flags in (torch.backends.cudnn, torch.backends.cuda.matmul):  # monkeypatch puts them back afterwards
        monkeypatch.setattr(flags, "allow_tf32", True)
    feats, _ = ext(_images(3))
    assert seen and set(seen) == {(False, False)} and feats.shape == (3, 6)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)


class NamedClassifier(FakeInception):
    """A judge-kind extractor (Inception's interface, its own class map) that names itself, or not."""

    def __init__(self, name: str | None, note: str | None):
        super().__init__()
        self.register_buffer("imagenet_classes", torch.arange(10, dtype=torch.int64) * 3)
        if name is not None:
            self.extractor_name = name
        if note is not None:
            self.extractor_note = note


@pytest.mark.parametrize("name, note, label", [
    ("my-classifier", None, "my-classifier"),
    ("inception-lookalike", "a demo judge in disguise", "inception-lookalike (a demo judge in disguise)"),
])
def test_a_judge_names_itself(tmp_path, name, note, label):
    path = tmp_path / "demo-judge.pt"  # the file's name says nothing: the module's attributes do
    torch.jit.save(torch.jit.script(NamedClassifier(name, note)), str(path))
    ext = load_extractor(path, "judge")
    assert (ext.name, ext.note, ext.class_map) == (label, note, list(range(0, 30, 3)))


def test_a_judge_that_does_not_name_itself_is_a_user_error(tmp_path):
    path = tmp_path / "judge.pt"
    torch.jit.save(torch.jit.script(NamedClassifier(None, None)), str(path))
    with pytest.raises(TinyGANError, match="does not name itself"):
        load_extractor(path, "judge")


def _squares(n_per_class, seed, size=32):
    """Three classes: a red, green or blue square at a random place on a dark noisy background."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], dtype=np.uint8)
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            img = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
            s = rng.integers(size // 3, size // 2)
            y, x = rng.integers(0, size - s, 2)
            img[y:y + s, x:x + s] = colours[c]
            images.append(img)
            labels.append([7, 42, 300][c])  # ImageNet indices of the demo classes
    return np.stack(images), np.array(labels)


def test_judge_trains_separates_classes_and_loads_as_extractor(tmp_path):
    images, labels = _squares(20, seed=0)
    out = tmp_path / "judge.pt"
    report = train_judge(images, labels, [7, 42, 300], out, seed=0, epochs=12, progress=False)
    assert report["heldout_accuracy"] >= 0.9 and report["train_accuracy"] >= 0.9
    assert report["num_heldout"] == 12 and report["num_train"] == 48
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["classes"] == [7, 42, 300] and side["sha256"] == sha256_file(out)

    ext = load_extractor(out, "judge", sha256=report["sha256"])
    assert ext.name == f"{NAME} ({NOTE})" == "demo-judge (not Inception; demo figures only)" and ext.note == NOTE
    assert ext.class_map == [7, 42, 300] and ext.num_classes == 3 and ext.feature_dim == report["feature_dim"]
    test_images, test_labels = _squares(5, seed=1, size=48)  # other size: the judge resizes inside
    feats, probs = ext(torch.from_numpy(test_images).permute(0, 3, 1, 2).contiguous())
    assert feats.shape == (15, report["feature_dim"]) and probs.shape == (15, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    predicted = np.array(ext.class_map)[probs.argmax(1)]
    assert (predicted == test_labels).mean() >= 0.8
    with pytest.raises(TinyGANError, match="sha256"):
        load_extractor(out, "judge", sha256="0" * 64)


def test_judge_is_deterministic_and_checks_labels(tmp_path):
    images, labels = _squares(4, seed=2, size=16)
    a = train_judge(images, labels, [7, 42, 300], tmp_path / "a.pt", seed=3, epochs=1)
    b = train_judge(images, labels, [7, 42, 300], tmp_path / "b.pt", seed=3, epochs=1)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert a["sha256"] == b["sha256"]
    with pytest.raises(TinyGANError, match="not among"):
        train_judge(images, labels, [7, 42], tmp_path / "c.pt", seed=0, epochs=1)
