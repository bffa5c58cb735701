"""Evaluation protocols (authors' TF-GAN vs StyleGAN2-ADA) on a stand-in with the NVlabs Inception's interface and
attributes, and the generic TorchScript image encoder (evaluate.extractor: torchscript)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tinygan.errors import TinyGANError
from tinygan.evaluate import _measure, load_refstats, reference_stats
from tinygan.extractors import AUTHORS_LOGITS, load_extractor
from tinygan.io import sha256_file
from tinygan.teacher import quantize


class StandInInception(nn.Module):
    """The NVlabs TorchScript Inception's interface and attributes (``layers``, ``output`` a Linear to 1,008
    logits; float cast, resize, (x - 128) / 128 inside), with d = 6 features."""

    def __init__(self, classes: int = 1008):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.output = nn.Linear(6, classes)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=(16, 16), mode="bilinear", align_corners=False)
        x = x - 128
        x = x / 128
        features = self.layers(x).reshape(-1, 6).to(torch.float32)
        if return_features:
            return features
        logits = F.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return F.softmax(logits, dim=1)


class NoHead(StandInInception):
    """Inception's call interface without a usable ``output`` layer (probabilities computed some other way)."""

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        f = self.layers((F.interpolate(img.to(torch.float32), size=(16, 16)) - 128) / 128)
        return f if return_features else F.softmax(f * 3.0, dim=1)


def _script(tmp_path, module, name="inception-2015-12-05.pt"):
    torch.manual_seed(0)
    path = tmp_path / name
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 1.0)
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    return _script(tmp_path_factory.mktemp("inc"), StandInInception())


def _load(path, protocol, kind="inception", **kw):
    return load_extractor(path, kind, sha256=sha256_file(path), protocol=protocol, **kw)


def _floats(n=4, size=20, seed=0):
    """Generator-like float images in [-1, 1], NCHW."""
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32))


def test_stylegan2_ada_quantises_and_takes_all_outputs_without_bias(inception):
    ext = _load(inception, "stylegan2-ada")
    t = _floats()
    u = torch.from_numpy(quantize(t.numpy()))  # the generator's uint8 round trip
    feats, probs = ext(t)
    module = torch.jit.load(str(inception))
    with torch.no_grad():
        np.testing.assert_allclose(feats, module(u, return_features=True).numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(probs, module(u, no_output_bias=True).numpy(), rtol=1e-5, atol=1e-8)
    assert probs.shape == (4, 1008)
    f_u, p_u = ext(u)
    assert np.array_equal(f_u, feats) and np.array_equal(p_u, probs)  # float input is quantised first


def test_authors_feeds_floats_and_takes_the_first_1000_logits_with_bias(inception):
    ext = _load(inception, "authors")
    t = _floats()
    feats, probs = ext(t)
    module = torch.jit.load(str(inception))
    with torch.no_grad():
        ref_f = module(t * 128 + 128, return_features=True)  # inside: (x - 128) / 128 = t exactly
        logits = ref_f @ module.output.weight.t() + module.output.bias
    np.testing.assert_allclose(feats, ref_f.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs, F.softmax(logits[:, :AUTHORS_LOGITS], dim=1).numpy(), rtol=1e-5, atol=1e-8)
    assert probs.shape == (4, AUTHORS_LOGITS)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # uint8 images (real, stored teacher) enter as u / 127.5 - 1
    u = torch.from_numpy(quantize(t.numpy()))
    f_u, _ = ext(u)
    f_t, _ = ext(u.float() / 127.5 - 1)
    np.testing.assert_allclose(f_u, f_t, rtol=1e-6, atol=1e-6)


def test_the_protocols_differ_as_specified(inception):
    sg, au = _load(inception, "stylegan2-ada"), _load(inception, "authors")
    t = _floats(seed=3)
    (f_sg, p_sg), (f_au, p_au) = sg(t), au(t)
    assert p_sg.shape[1] == 1008 and p_au.shape[1] == 1000
    assert not np.allclose(f_sg, f_au, rtol=0, atol=1e-7)  # uint8 round trip vs float pixels
    assert "authors" in au.preprocessing and "first 1000 logits" in au.preprocessing
    assert "stylegan2-ada" in sg.preprocessing and "without the output bias" in sg.preprocessing
    assert sg.preprocessing != au.preprocessing and sg.name == au.name == "inception-2015-12-05"


def test_authors_needs_the_output_layer_one_line(tmp_path):
    path = _script(tmp_path, NoHead())
    assert _load(path, "stylegan2-ada").num_classes == 6  # two passes, as before
    with pytest.raises(TinyGANError, match="output") as e:
        _load(path, "authors")
    assert "\n" not in str(e.value)


def test_unknown_protocol_is_one_line(inception):
    with pytest.raises(TinyGANError, match="protocol"):
        _load(inception, "tf-gan")


def test_demo_judge_under_authors_takes_its_own_logits_on_floats(encoder_file):
    ext = load_extractor(encoder_file, "judge", protocol="authors")
    t = _floats(size=32)
    feats, probs = ext(t)
    module = torch.jit.load(str(encoder_file))
    with torch.no_grad():  # the judge maps x -> x / 127.5 - 1, so it is fed 127.5 (t + 1)
        ref_f = module(127.5 * (t + 1), return_features=True)
        ref_p = module(127.5 * (t + 1), return_features=False)  # its K < 1000 outputs, bias included
    np.testing.assert_allclose(feats, ref_f.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, ref_p.numpy(), rtol=1e-5, atol=1e-7)


def test_reference_stats_of_another_protocol_are_refused(inception, tiny_data, tmp_path):
    info = reference_stats(tiny_data / "real", inception, "inception", tmp_path / "ref", sha256=sha256_file(inception),
                           batch_size=5, progress=False, kid_reservoir=10, protocol="authors")
    assert info["protocol"] == "authors" and "first 1000 logits" in info["preprocessing"]
    assert json.loads((tmp_path / "ref" / "refstats.json").read_text())["protocol"] == "authors"
    load_refstats(tmp_path / "ref", _load(inception, "authors"), inception, [1, 9])
    with pytest.raises(TinyGANError, match="evaluate.protocol") as e:
        load_refstats(tmp_path / "ref", _load(inception, "stylegan2-ada"), inception, [1, 9])
    assert "\n" not in str(e.value)


# ---- a generic TorchScript image encoder ----------------------------------------------------------------------

class TinyEncoder(nn.Module):
    """``forward(x [N,3,S,S]) -> [N, 5]``, as a DINOv2 / CLIP image-encoder export would be (no Inception
    interface); names itself when ``name`` is given."""

    def __init__(self, name: str | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 5, 3, 2, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if name is not None:
            self.extractor_name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MapEncoder(TinyEncoder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # a feature map, not [N, d]


ENCODER = {"input_size": 24, "input_range": "unit", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def test_generic_encoder_features_only_and_its_preprocessing(tmp_path):
    path = _script(tmp_path, TinyEncoder(), "dino.pt")
    ext = _load(path, "stylegan2-ada", kind="torchscript", encoder=ENCODER)
    assert ext.name == "torchscript dino.pt" and not ext.has_probs and ext.feature_dim == 5
    assert "24x24" in ext.preprocessing and "[0.5, 0.4, 0.3]" in ext.preprocessing
    u = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 40, 40), dtype=np.uint8))
    feats, probs = ext(u)
    assert probs is None
    x = F.interpolate(u.float(), size=(24, 24), mode="bilinear", align_corners=False, antialias=True) / 255
    mean, std = torch.tensor(ENCODER["mean"]).view(1, 3, 1, 1), torch.tensor(ENCODER["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = torch.jit.load(str(path))((x - mean) / std)
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-5, atol=1e-6)
    stats, is_mean, is_std = _measure(ext, [u, u], 6, "", False, splits=2)  # IS n/a, FID statistics still
    assert stats.n == 6 and is_mean is None and is_std is None


def test_generic_encoder_names_itself_and_bad_ones_are_one_line(tmp_path):
    named = _script(tmp_path, TinyEncoder("dinov2-vits14"), "a.pt")
    assert _load(named, "authors", kind="torchscript", encoder=ENCODER).name == "dinov2-vits14"
    with pytest.raises(TinyGANError, match="evaluate.encoder"):
        _load(named, "authors", kind="torchscript", encoder=None)
    bad = _script(tmp_path, MapEncoder(), "b.pt")
    with pytest.raises(TinyGANError, match=r"\[N, d\]") as e:
        _load(bad, "authors", kind="torchscript", encoder=ENCODER)
    assert "\n" not in str(e.value)


def test_paper_profiles_use_the_authors_protocol_and_encoder_params_validate():
    from tinygan import params, profiles

    for name, protocol in (("paper", "authors"), ("paper256", "authors"), ("demo", "stylegan2-ada"),
                           ("demo-c10", "stylegan2-ada")):
        assert params.validate(profiles.compose(name))["evaluate"]["protocol"] == protocol
    enc = params.SCHEMA["evaluate"]["encoder"]
    assert enc["mean"].check("evaluate.encoder.mean", "[0.5, 0.4, 0.3]") == [0.5, 0.4, 0.3]  # as -S passes it
    for key, value in (("mean", [0.5, 0.5]), ("std", [1.0, 0.0, 1.0]), ("mean", "x")):
        with pytest.raises(TinyGANError, match=key):
            enc[key].check(f"evaluate.encoder.{key}", value)
