"""TinyGAN generator / discriminator / EMA / summary: oracles from shared/reference/tinygan-facts.md."""
import hashlib
import io

import pytest
import torch
import torch.nn as nn

from tinygan.errors import TinyGANError
from tinygan.models import (EMA, ConditionalBatchNorm2d, Discriminator, Generator, PlainBatchNorm2d, d_channel_mults,
                            g_channel_mults, set_fast_training)
from tinygan.summary import count_macs, count_params, summary



def small_g(variant="dw", ch=2, n_classes=10):
    torch.manual_seed(0)
    return Generator(variant=variant, ch=ch, n_classes=n_classes)


def small_d(ch=4, n_classes=10):
    torch.manual_seed(0)
    return Discriminator(ch=ch, n_classes=n_classes)


def roundtrip(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ----------------------------------------------------------------------------- parameter oracles


@pytest.mark.parametrize(
    "variant,ch,expected",
    [("dw", 32, 3_070_659), ("dw", 16, 1_293_923), ("dw", 64, 8_456_579), ("std", 32, 9_329_283),
     ("std", 16, 2_852_419)],
)
def test_generator_param_oracle(variant, ch, expected):
    assert count_params(Generator(variant=variant, ch=ch)) == expected


def test_discriminator_param_oracle():
    assert count_params(Discriminator(ch=32)) == 3_300_321


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize("variant", ["dw", "std"])
def test_generator_output_shape_and_range(variant):
    G = small_g(variant)
    z = torch.randn(3, 128)
    y = torch.tensor([0, 5, 9])
    x = G(z, y)
    assert x.shape == (3, 3, 128, 128)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() <= 1.0


def test_generator_rejects_bad_config():
    with pytest.raises(TinyGANError):
        Generator(variant="wide")
    for resolution in (4, 48, 2048, 128.0, True):
        with pytest.raises(TinyGANError, match="resolution must be a power of two in 8-1024"):
            Generator(resolution=resolution)
        with pytest.raises(TinyGANError, match="resolution must be a power of two in 8-1024"):
            Discriminator(resolution=resolution)
    with pytest.raises(TinyGANError):
        Generator(ch=0)
    with pytest.raises(TinyGANError, match="n_classes must be an integer >= 0"):
        Generator(n_classes=-1)
    with pytest.raises(TinyGANError, match="n_classes must be an integer >= 0"):
        Discriminator(n_classes=-1)


def test_generator_config_rebuilds_same_module():
    G = small_g("std", ch=2, n_classes=7)
    assert G.config == dict(variant="std", ch=2, n_classes=7, z_dim=128, emb_dim=128, resolution=128)
    G2 = Generator(**G.config)
    G2.load_state_dict(G.state_dict())  # strict: same keys and shapes


def test_cbn_is_identity_affine_at_init():
    G = small_g()
    cbns = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbns) == 10
    emb = G.embedding(torch.arange(10))
    for cbn in cbns:
        gain, bias = cbn.embed(emb).chunk(2, dim=1)
        assert torch.equal(gain, torch.ones_like(gain))
        assert torch.equal(bias, torch.zeros_like(bias))
    cbn = cbns[1]
    h = torch.randn(4, cbn.num_features, 8, 8)
    torch.testing.assert_close(cbn(h, emb[:4]), cbn.bn(h))


def test_class_conditioning_changes_output():
    G = small_g().eval()
    with torch.no_grad():  # what training does to the zero-initialised CBN linears
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.embed.weight.normal_(0, 0.1)
    z = torch.randn(1, 128).repeat(2, 1)
    x = G(z, torch.tensor([1, 2]))
    assert (x[0] - x[1]).abs().max() > 1e-3


def test_generator_state_dict_roundtrip_weights_only():
    G = small_g()
    G(torch.randn(2, 128), torch.tensor([1, 2]))  # move BN running stats off their init
    G2 = Generator(**G.config)
    G2.load_state_dict(roundtrip(G.state_dict()))
    G.eval()
    G2.eval()
    z, y = torch.randn(2, 128), torch.tensor([3, 4])
    assert torch.equal(G(z, y), G2(z, y))


def test_generator_torchscript_script_and_trace():
    G = small_g().eval()
    z, y = torch.randn(2, 128), torch.tensor([3, 4])
    ref = G(z, y)
    scripted = torch.jit.script(G)
    torch.testing.assert_close(scripted(z, y), ref)
    traced = torch.jit.trace(G, (z, y), check_trace=False)
    z2, y2 = torch.randn(3, 128), torch.tensor([0, 1, 2])  # other batch size through the trace
    torch.testing.assert_close(traced(z2, y2), G(z2, y2))


def test_generator_onnx_export_with_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    G = small_g().eval()
    z, y = torch.randn(2, 128), torch.tensor([3, 4])
    path = tmp_path / "g.onnx"
    torch.onnx.export(G, (z, y), str(path), input_names=["z", "y"], output_names=["img"],
                      dynamic_axes={"z": {0: "n"}, "y": {0: "n"}, "img": {0: "n"}}, opset_version=17, dynamo=False)
    z3, y3 = torch.randn(3, 128), torch.tensor([0, 1, 2])
    out = ort.InferenceSession(str(path)).run(None, {"z": z3.numpy(), "y": y3.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), G(z3, y3).detach(), rtol=1e-4, atol=1e-5)


def test_generator_every_parameter_gets_a_gradient():
    G = small_g()
    G(torch.randn(2, 128), torch.tensor([1, 2])).mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("n_classes", [10, 0])
def test_fast_training_path_is_the_same_function_within_float_rounding(n_classes):
    """set_fast_training (shortcut 1x1 conv before the upsampling, each norm + ReLU as cbn_relu.norm_relu: the
    fused CPU kernel) changes neither the output, the gradients nor the BN running statistics beyond float
    rounding: measured against the official order in float64, the fast path's float32 error is no larger than the
    official order's own float32 error. Eval mode keeps the official order bit for bit (export, sampling, MACs)."""
    z, y = torch.randn(4, 128, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 3, 7, 9])

    def run(fast, dtype):
        G = set_fast_training(small_g(ch=4, n_classes=n_classes).to(dtype, memory_format=torch.channels_last), fast)
        x = G(z.to(dtype), y)
        (x * torch.linspace(-1, 1, x.numel(), dtype=dtype).view_as(x)).sum().backward()
        stats = torch.cat([b.flatten() for n, b in G.named_buffers() if "running" in n])
        grads = torch.cat([p.grad.flatten() for p in G.parameters()])
        with torch.no_grad():
            G.eval()
            assert torch.equal(G(z.to(dtype), y), set_fast_training(G, not fast)(z.to(dtype), y))  # official order
        return [t.double() for t in (x, grads, stats)]

    ref = run(False, torch.float64)
    err = {fast: [float((a - b).norm() / b.norm()) for a, b in zip(run(fast, torch.float32), ref)]  # relative
           for fast in (False, True)}
    for what, official, fast in zip(("output", "gradients", "running stats"), err[False], err[True]):
        assert fast <= 2 * official + 1e-7, (what, fast, official)
    assert max(err[True]) < 1e-4


def test_generator_bf16_autocast_and_channels_last():
    G = small_g().to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = G(torch.randn(2, 128), torch.tensor([1, 2]))
    assert x.shape == (2, 3, 128, 128)
    assert torch.isfinite(x.float()).all()


# ----------------------------------------------------------------------------- resolution, unconditional


def _keys_digest(module):
    return hashlib.sha256(";".join(f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items())
                          .encode()).hexdigest()[:16]


# recorded before G and D followed the teacher's shape (the code of commit d34855c): state-dict names and
# shapes, and (sum of the output, a strided sample of its values) for seed-0 weights on seed-1 inputs
G_REFERENCE_128 = {
    "dw": ("cdb6b442bcee54c0", 37318.06176446637,
           [0.6398012638092041, 0.44070571660995483, -0.4086492657661438, 0.47203224897384644,
            -0.5556243062019348, 0.24280311167240143, 0.41127219796180725, -0.1872026026248932,
            0.9343342185020447, 0.4550110697746277]),
    "std": ("4663473f2650c6a7", 6712.85564154567,
            [-0.08348414301872253, 0.28242188692092896, -0.2755141258239746, -0.15283794701099396,
             0.22542332112789154, -0.15283794701099396, 0.2003268450498581, -0.13426458835601807,
             -0.117010198533535, 0.2767024338245392]),
}
D_REFERENCE_128 = ("f19178e43b73e6fb", [-0.6188327074050903, -0.08881616592407227],
                   [9782.050583582713, 2913.7693400072267, 690.6207080233361, 207.131906754515, 44.423533012665246])


@pytest.mark.parametrize("variant", ["dw", "std"])
def test_generator_at_128_matches_the_recorded_reference(variant):
    """Same modules, names and init order at 128² as before, so the same seed gives the same weights and output."""
    keys, total, sample = G_REFERENCE_128[variant]
    G = small_g(variant).eval()
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = G(z, torch.tensor([0, 3, 7, 9]))
    assert _keys_digest(G) == keys
    torch.testing.assert_close(x.flatten()[::20000], torch.tensor(sample), rtol=1e-5, atol=1e-6)
    assert x.double().sum().item() == pytest.approx(total, rel=1e-6)


def test_discriminator_at_128_matches_the_recorded_reference():
    keys, logits, feat_sums = D_REFERENCE_128
    D = small_d(ch=4).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logit, feats = D(x, torch.tensor([1, 2]))
    assert _keys_digest(D) == keys
    torch.testing.assert_close(logit, torch.tensor(logits), rtol=1e-5, atol=1e-6)
    assert [f.double().sum().item() for f in feats] == pytest.approx(feat_sums, rel=1e-6)


def test_channel_rule():
    assert g_channel_mults(128) == [16, 16, 8, 4, 2, 1]  # the paper's
    assert d_channel_mults(128) == [1, 2, 4, 8, 16]
    assert g_channel_mults(8) == [1, 1]
    assert g_channel_mults(32) == [4, 4, 2, 1]
    assert g_channel_mults(64) == [8, 8, 4, 2, 1]
    assert g_channel_mults(256) == [16, 16, 16, 8, 4, 2, 1]
    assert d_channel_mults(256) == [1, 2, 4, 8, 16, 16]
    assert d_channel_mults(1024) == [1, 2, 4, 8, 16, 16, 16, 16]


@pytest.mark.parametrize("resolution, g_params, d_params", [
    (32, 614_339, 293_729), (64, 1_280_195, 946_401), (256, 4_133_059, 7_495_137)])
def test_param_counts_at_other_resolutions(resolution, g_params, d_params):
    assert count_params(Generator("dw", 32, resolution=resolution)) == g_params
    assert count_params(Discriminator(32, resolution=resolution)) == d_params


@pytest.mark.parametrize("resolution", [32, 64, 256])
@pytest.mark.parametrize("n_classes", [10, 0])
def test_generator_and_discriminator_follow_the_resolution(resolution, n_classes):
    torch.manual_seed(0)
    G = Generator("dw", ch=2, n_classes=n_classes, z_dim=16, resolution=resolution)
    D = Discriminator(ch=2, n_classes=n_classes, resolution=resolution)
    y = torch.tensor([1, 2])
    x = G(torch.randn(2, 16), y)
    assert x.shape == (2, 3, resolution, resolution)
    assert len(G.blocks) == resolution.bit_length() - 3
    logit, feats = D(x, y)
    assert logit.shape == (2,)
    assert [f.shape[-1] for f in feats] == [resolution >> (i + 1) for i in range(len(feats))]
    assert feats[-1].shape[-2:] == (4, 4) and len(feats) == resolution.bit_length() - 3
    assert G.config["resolution"] == D.config["resolution"] == resolution
    G2, D2 = Generator(**G.config), Discriminator(**D.config)
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())


def test_unconditional_generator_uses_affine_batchnorm_and_ignores_y():
    torch.manual_seed(0)
    G = Generator("dw", ch=2, n_classes=0, resolution=32).eval()
    assert G.embedding is None
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in G.modules())
    norms = [m for m in G.modules() if isinstance(m, PlainBatchNorm2d)]
    assert len(norms) == 2 * len(G.blocks) and all(m.bn.affine for m in norms)
    assert not any("embed" in name for name, _ in G.named_parameters())
    z = torch.randn(3, 128)
    with torch.no_grad():
        x = G(z)
        assert torch.equal(G(z, torch.tensor([0, 5, 999])), x)
        assert torch.equal(G(z, torch.zeros(3, 7)), x)
        assert torch.equal(torch.jit.script(G)(z, None), x)
    G.train()(z).mean().backward()
    assert [n for n, p in G.named_parameters() if p.grad is None] == []


def test_unconditional_discriminator_has_no_projection():
    torch.manual_seed(0)
    D = Discriminator(ch=2, n_classes=0, resolution=64).eval()
    assert D.embedding is None
    x = torch.randn(2, 3, 64, 64)
    logit, feats = D(x)
    torch.testing.assert_close(logit, D.linear(feats[-1].sum(dim=(2, 3))).squeeze(1))
    assert torch.equal(D(x, torch.tensor([4, 1]))[0], logit)
    assert count_params(D) == count_params(Discriminator(ch=2, n_classes=10, resolution=64)) - 10 * 16  # 8ch at 64 px


def test_conditional_models_need_labels():
    G, D = small_g(), small_d()
    with pytest.raises(TinyGANError, match="class-conditional generator needs the labels y"):
        G(torch.randn(2, 128))
    with pytest.raises(torch.jit.Error, match="TinyGANError: a class-conditional generator needs the labels y"):
        torch.jit.script(G)(torch.randn(2, 128), None)
    with pytest.raises(TinyGANError, match="class-conditional discriminator needs the labels y"):
        D(torch.randn(2, 3, 32, 32))


# ----------------------------------------------------------------------------- discriminator


def test_discriminator_outputs_and_feature_shapes():
    D = small_d(ch=4)
    x = torch.randn(3, 3, 128, 128)
    logit, feats = D(x, torch.tensor([0, 1, 9]))
    assert logit.shape == (3,)
    assert [tuple(f.shape) for f in feats] == [(3, 4, 64, 64), (3, 8, 32, 32), (3, 16, 16, 16), (3, 32, 8, 8),
                                               (3, 64, 4, 4)]
    logit.sum().backward()
    assert all(p.grad is not None for p in D.parameters())


def test_discriminator_projection_formula():
    D = small_d(ch=4).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    logit, feats = D(x, y)
    h = feats[-1].sum(dim=(2, 3))
    expected = D.linear(h).squeeze(1) + (h * D.embedding(y)).sum(1)
    torch.testing.assert_close(logit, expected)


def test_discriminator_weights_are_spectrally_normalised():
    D = small_d(ch=4).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    with torch.no_grad():
        for _ in range(30):  # power iteration converges over forwards
            D(x, y)
    for layer in list(D.convs) + [D.linear, D.embedding]:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 1e-2


def test_discriminator_state_dict_roundtrip_weights_only():
    D = small_d()
    D(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))  # update u, v
    sd = roundtrip(D.state_dict())
    assert any(k.endswith("parametrizations.weight.original") for k in sd)
    D2 = Discriminator(**D.config)
    D2.load_state_dict(sd)
    D.eval()
    D2.eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 4])
    assert torch.equal(D(x, y)[0], D2(x, y)[0])


def test_discriminator_bf16_autocast():
    D = small_d()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logit, feats = D(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    assert torch.isfinite(logit.float()).all()
    logit.float().sum().backward()
    assert all(p.grad is not None for p in D.parameters())


# ----------------------------------------------------------------------------- EMA


def test_ema_update_math_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    assert all(torch.equal(old[k], v) for k, v in model.state_dict().items())  # starts at the model's weights
    assert all(not p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(4, 3))  # changes BN running stats
    ema.update(model)
    new = model.state_dict()
    for name, _ in model.named_parameters():
        torch.testing.assert_close(ema.module.state_dict()[name], 0.9 * old[name] + 0.1 * new[name])
    for name, _ in model.named_buffers():  # buffers are copied, not averaged
        assert torch.equal(ema.module.state_dict()[name], new[name])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema.update(model, copy=True)  # before train.ema_start: an exact copy
    for name, p in model.named_parameters():
        assert torch.equal(ema.module.state_dict()[name], p)
    ema.update(model)  # and averaging goes on afterwards
    with pytest.raises(TinyGANError):
        EMA(model, decay=1.5)


def test_ema_is_bit_equal_to_a_lerp_per_step():
    """The EMA gives the bits of shadow.lerp_(param, 1 - decay) per tensor after every G update, as the EMA of
    earlier versions (AveragedModel + get_ema_multi_avg_fn) did: checkpoints and exports keep their bytes."""
    G = small_g()
    decay = 0.999
    ema = EMA(G, decay)
    ref = {k: v.clone() for k, v in G.state_dict().items()}
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    for step in range(4):
        G(torch.randn(4, 128), torch.randint(0, 10, (4,))).square().mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(G, copy=step == 0)
        params = dict(G.named_parameters())
        for k, v in G.state_dict().items():
            ref[k] = ref[k].lerp(v, 1.0 if step == 0 else 1.0 - decay) if k in params else v.clone()
        for k, v in ema.module.state_dict().items():
            assert torch.equal(v, ref[k]), (step, k)


def test_ema_state_dict_loads_into_a_fresh_generator():
    G = small_g()
    ema = EMA(G, decay=0.999)
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(0.5)
    ema.update(G)
    target = small_g()
    target.load_state_dict(roundtrip(ema.module.state_dict()))  # what a checkpoint's "ema" entry holds
    for k, v in target.state_dict().items():
        assert torch.equal(v, ema.module.state_dict()[k])


# ----------------------------------------------------------------------------- params / MACs


def test_mac_counter_matches_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 4*8*8 outputs * 3*3*3 = 6912
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # 256 outputs * 1*3*3 = 2304
        nn.Flatten(),
        nn.Linear(256, 10),  # 10 * 256 = 2560
    )
    assert count_macs(model, torch.randn(2, 3, 8, 8)) == 6912 + 2304 + 2560  # per image, batch of 2
    assert count_params(model) == (3 * 4 * 9 + 4) + (4 * 9 + 4) + (256 * 10 + 10)


def test_generator_macs_match_paper():
    z, y = torch.randn(1, 128), torch.tensor([0])
    info = summary(Generator("dw", 32), (z, y))
    assert 0.40e9 <= info["macs_per_image"] <= 0.46e9  # paper: 0.44 B
    assert info["params"] == 3_070_659
    assert sum(r["params"] for r in info["layers"]) == info["params"]
    assert "to_rgb" in info["table"]
    macs_std16 = count_macs(Generator("std", 16), z, y)
    assert abs(macs_std16 / 0.58e9 - 1) < 0.02  # paper: 0.58 B
    assert sum(r["macs"] for r in info["layers"]) == info["macs_per_image"]


@pytest.mark.parametrize("make, macs", [
    (lambda: Generator("dw", 32), 428_843_008), (lambda: Generator("std", 32), 2_280_759_296),
    (lambda: Generator("std", 16), 574_148_608), (lambda: Discriminator(32), 140_509_696)])
def test_macs_exact(make, macs):
    """Exact MACs per image (the figures of the hand-written counter FlopCounterMode replaced), at batch 1 and 2."""
    model = make()
    for n in (1, 2):
        x = torch.zeros(n, 128) if isinstance(model, Generator) else torch.zeros(n, 3, 128, 128)
        assert count_macs(model, x, torch.zeros(n, dtype=torch.long)) == macs


def test_summary_command_takes_the_teacher_shape():
    import json

    from typer.testing import CliRunner

    from tinygan.cli import app

    res = CliRunner().invoke(app, ["summary", "--resolution", "32", "--n-classes", "0", "--z-dim", "512",
                                   "--ch", "8", "--d-ch", "8"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["generator"]["params"] == count_params(Generator("dw", 8, 0, 512, resolution=32))
    assert out["discriminator"]["params"] == count_params(Discriminator(8, 0, 32))
    assert (out["generator"]["resolution"], out["generator"]["n_classes"], out["generator"]["z_dim"]) == (32, 0, 512)
    res = CliRunner().invoke(app, ["summary", "--resolution", "96"])
    assert res.exit_code != 0 and "resolution must be a power of two in 8-1024" in res.output


def test_mac_counter_restores_training_mode():
    G = small_g().train()
    count_macs(G, torch.randn(1, 128), torch.tensor([0]))
    assert all(m.training for m in G.modules())


def test_ema_update_never_reads_a_tensor_back_to_the_host(monkeypatch):
    """EMA.update converts no tensor to a Python value (on a GPU each such read is a sync per training step;
    AveragedModel read its counter twice per update)."""
    G = small_g()
    ema = EMA(G, decay=0.9)

    def host_read(*_a, **_k):
        raise AssertionError("a tensor was read back to the host")
    for name in ("__bool__", "item", "__int__", "__float__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    ema.update(G, copy=True)
    ema.update(G)
    monkeypatch.undo()
    for a, b in zip(ema.module.parameters(), G.parameters()):
        assert torch.equal(a, b)
