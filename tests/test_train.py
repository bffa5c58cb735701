"""The train loop: learning, resume after kill -9, DDP (gloo, 2 processes), ablations, bad settings."""
import csv
import json
import shutil
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tinygan import params
from tinygan.errors import TinyGANError
from tinygan.train import TrainConfig, _config_key, train

ROOT = Path(__file__).resolve().parents[1]
# variant pinned: these tests were tuned on the dw student (the demo profile trains TinyGAN-std)
TINY = dict(variant="dw", ch=4, d_ch=4, batch_size=6, holdout_per_class=2, checkpoint_every=4, sample_every=8,
            log_every=1, snapshot_every=8)


def config(**kw) -> TrainConfig:
    """The shipped params' training config with the tiny test settings on top."""
    return TrainConfig.from_params(params.load(ROOT / "params.yaml"), **{**TINY, **kw})


def run(tiny_data, out, **kw):
    cfg = config(**kw)
    summary = train(str(tiny_data / "teacher"), str(tiny_data / "real"), str(out / "ckpt.pt"),
                    str(out / "student" / "generator.safetensors"), str(out / "live"), cfg,
                    snapshot_dir=str(out / "snap"), progress=False)
    return summary


def column(out, name):
    with open(out / "live" / "plots" / "metrics" / f"{name}.tsv") as f:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(f, delimiter="\t")]


def test_training_reduces_heldout_l1_and_writes_outputs(tiny_data, tmp_path):
    # learning itself, not the demo profile's EMA / lr decay schedule (an EMA of a few steps lags the weights)
    s = run(tiny_data, tmp_path, epochs=8, lr_g=2e-3, lr_d=2e-3, ema=False, lr_decay_start=300000)
    assert s["heldout_l1_end"] < 0.6 * s["heldout_l1_start"]
    assert (tmp_path / "student" / "generator.safetensors").exists()
    assert json.loads((tmp_path / "student" / "generator.json").read_text())["ch"] == 4
    assert (tmp_path / "live" / "plots" / "images" / "grid.png").exists()
    assert sorted(p.name for p in (tmp_path / "snap").glob("*.safetensors"))[:2] == ["G-0000008.safetensors",
                                                                        "G-0000016.safetensors"]
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["heldout_l1_end"] == pytest.approx(s["heldout_l1_end"])
    for term in ("kd_pix", "kd_feat", "kd_s", "kd_d", "gan_s", "gan_d", "lambda_pix", "lr_g", "images_per_s"):
        assert column(tmp_path, term), term


def test_cpu_training_restores_the_malloc_defaults_when_it_ends(tiny_data, tmp_path, monkeypatch):
    """runtime.keep_freed_memory (CPU speed) holds for the run only: an in-process caller gets glibc's defaults
    back, also when training fails."""
    from tinygan import runtime

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda on=True: calls.append(on) or True)
    run(tiny_data, tmp_path, epochs=1, device="cpu")
    assert calls == [True, False]
    calls.clear()
    with pytest.raises(TinyGANError):
        run(tiny_data, tmp_path / "big", epochs=1, device="cpu", batch_size=10 ** 6)
    assert calls == [True, False]


def test_student_takes_the_teacher_shape_from_the_manifest(tmp_path):
    """Shards of a 32² unconditional teacher (manifest c_dim 0): G and D are built at 32², without classes."""
    from conftest import make_pairs, make_real

    from tinygan.generate import load_generator
    from tinygan.train import DEFAULT_SHAPE, _shape

    assert _shape({"resolution": 128}) == DEFAULT_SHAPE == {"resolution": 128, "n_classes": 1000, "z_dim": 128}
    assert _shape({"resolution": 64, "c_dim": 10, "z_dim": 512}) == {"resolution": 64, "n_classes": 10,
                                                                     "z_dim": 512}
    data = tmp_path / "data"
    make_pairs(str(data / "teacher"), classes=(0,), per_class=30, resolution=32, extra={"c_dim": 0, "z_dim": 128})
    make_real(str(data / "real"), classes=(0,), per_class=24, resolution=32)
    s = run(data, tmp_path, epochs=2)
    assert s["heldout_l1_end"] < s["heldout_l1_start"]
    cfg = json.loads((tmp_path / "student" / "generator.json").read_text())
    assert (cfg["resolution"], cfg["n_classes"], cfg["z_dim"]) == (32, 0, 128)
    G = load_generator(tmp_path / "student" / "generator.safetensors")
    assert G(torch.zeros(2, 128), None).shape == (2, 3, 32, 32)
    make_real(str(data / "real64"), classes=(0,), resolution=64)
    with pytest.raises(TinyGANError, match=r"real images in .*real64 are 64² but the teacher's in .* are 32²"):
        train(str(data / "teacher"), str(data / "real64"), str(tmp_path / "c2.pt"), str(tmp_path / "g2.safetensors"),
              str(tmp_path / "live2"), config(), progress=False)


def test_lambda_pix_schedule_in_logs(tiny_data, tmp_path):
    # 24 training pairs / batch 6 = 4 steps per epoch; λ_pix = 0.2 - 0.05·epoch, floor 0
    run(tiny_data, tmp_path, epochs=6, lambda_pix_decay=0.05)
    lam = dict(column(tmp_path, "lambda_pix"))
    assert lam[1] == pytest.approx(0.2) and lam[4] == pytest.approx(0.2)
    assert lam[5] == pytest.approx(0.15) and lam[13] == pytest.approx(0.05)
    assert lam[17] == pytest.approx(0.0) and lam[24] == pytest.approx(0.0)


def test_adversarial_terms_every_fifth_and_g_every(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "a", epochs=3)
    assert [s for s, _ in column(tmp_path / "a", "kd_s")] == [5, 10]
    run(tiny_data, tmp_path / "b", epochs=3, g_every=4, adv_every=1)
    assert [s for s, _ in column(tmp_path / "b", "kd_pix")] == [4, 8, 12]
    assert len(column(tmp_path / "b", "kd_d")) == 12


ABLATIONS = {  # paper Table 2 rows + the from-scratch baseline, as pure weight settings
    "full": ({}, {"kd_feat", "kd_pix", "kd_s", "kd_d", "gan_s", "gan_d"}),
    "without_kd_feat": ({"lambda_feat": 0}, {"kd_pix", "kd_s", "kd_d", "gan_s", "gan_d"}),
    "without_gan": ({"lambda_gan_s": 0, "lambda_gan_d": 0}, {"kd_feat", "kd_pix", "kd_s", "kd_d"}),
    "without_kd_adv": ({"lambda_kd_s": 0, "lambda_kd_d": 0}, {"kd_feat", "kd_pix", "gan_s", "gan_d"}),
    "pix_only": ({"lambda_feat": 0, "lambda_kd_s": 0, "lambda_kd_d": 0, "lambda_gan_s": 0, "lambda_gan_d": 0},
                 {"kd_pix"}),
    "gan_only": ({"lambda_feat": 0, "lambda_pix": 0, "lambda_kd_s": 0, "lambda_kd_d": 0, "adv_every": 1},
                 {"gan_s", "gan_d"}),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablations_compute_exactly_their_terms(tiny_data, tmp_path, name):
    kw, expected = ABLATIONS[name]
    run(tiny_data, tmp_path, epochs=2, **kw)
    logged = {p.stem for p in (tmp_path / "live" / "plots" / "metrics").glob("*.tsv")}
    terms = {"kd_feat", "kd_pix", "kd_s", "kd_d", "gan_s", "gan_d"}
    assert logged & terms == expected


def test_dime_off_never_loads_the_encoder_and_changes_nothing(tiny_data, tmp_path):
    # lambda_dime = 0 (the default): a missing encoder file is never opened, and the run is byte for byte the
    # one with the shipped encoder setting; the resume key is the one from before L_DiME existed
    run(tiny_data, tmp_path / "a", epochs=1)
    run(tiny_data, tmp_path / "b", epochs=1, dime_encoder=str(tmp_path / "no-such-encoder.pt"),
        dime_kernel="polynomial")
    a, b = ((tmp_path / d / "student" / "generator.safetensors").read_bytes() for d in "ab")
    assert a == b
    assert not (tmp_path / "a" / "live" / "plots" / "metrics" / "dime.tsv").exists()
    assert "dime" not in _config_key(config(), 1, {}, "") and "lambda_dime" in _config_key(config(lambda_dime=0.1), 1, {}, "")


def test_dime_is_trained_and_logged(tiny_data, tmp_path, encoder_file):
    run(tiny_data, tmp_path / "a", epochs=1, lambda_dime=0.5, dime_encoder=str(encoder_file))
    dime = column(tmp_path / "a", "dime")
    assert [s for s, _ in dime] == [1, 2, 3, 4] and all(v >= 0 for _, v in dime)
    # L_DiME alone trains the student (no discriminator term at all)
    off = {k: 0 for k in ("lambda_pix", "lambda_feat", "lambda_kd_s", "lambda_kd_d", "lambda_gan_s", "lambda_gan_d")}
    run(tiny_data, tmp_path / "b", epochs=1, lambda_dime=1.0, dime_encoder=str(encoder_file), **off)
    logged = {p.stem for p in (tmp_path / "b" / "live" / "plots" / "metrics").glob("*.tsv")}
    assert {"dime", "loss_g"} <= logged and not logged & {"kd_pix", "kd_feat", "kd_d", "gan_d", "loss_d"}
    losses = [v for _, v in column(tmp_path / "b", "loss_g")]
    assert losses == pytest.approx([v for _, v in column(tmp_path / "b", "dime")])


def test_dime_with_a_missing_encoder_is_one_line(tiny_data, tmp_path):
    with pytest.raises(TinyGANError, match="train.dime_encoder") as e:
        run(tiny_data, tmp_path, epochs=1, lambda_dime=0.5, dime_encoder=str(tmp_path / "missing.pt"))
    assert "\n" not in str(e.value)


def test_batch_larger_than_data_is_rejected(tiny_data, tmp_path):
    with pytest.raises(TinyGANError, match="train.batch_size"):
        run(tiny_data, tmp_path, epochs=1, batch_size=100)


def test_ema_is_exported_when_enabled(tiny_data, tmp_path):
    s = run(tiny_data, tmp_path, epochs=2, ema=True, ema_decay=0.9)
    assert s["ema"] is True and (tmp_path / "student" / "generator.safetensors").exists()


def _script(tiny_data, out, epochs, extra=""):
    return textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(ROOT)!r})
        from tinygan import params
        from tinygan.train import TrainConfig, train
        cfg = TrainConfig.from_params(params.load({str(ROOT / 'params.yaml')!r}),
                                      **{{**{TINY!r}, "epochs": {epochs}, "checkpoint_every": 2}})
        train({str(tiny_data / 'teacher')!r}, {str(tiny_data / 'real')!r}, {str(out / 'ckpt.pt')!r},
              {str(out / 'student' / 'generator.safetensors')!r}, {str(out / 'live')!r}, cfg,
              snapshot_dir={str(out / 'snap')!r}, progress=False)
        {extra}
    """)


def test_kill_9_then_resume_is_bit_identical(tiny_data, tmp_path):
    epochs = 6  # 24 steps, checkpoint every 2
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    subprocess.run([sys.executable, "-c", _script(tiny_data, clean, epochs)], check=True)

    proc = subprocess.Popen([sys.executable, "-c", _script(tiny_data, crashed, epochs)])
    ckpt = crashed / "ckpt.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < killed_at < 24, "the run was not interrupted mid-way"
    assert not (crashed / "student").exists()

    subprocess.run([sys.executable, "-c", _script(tiny_data, crashed, epochs)], check=True)
    a = (clean / "student" / "generator.safetensors").read_bytes()
    b = (crashed / "student" / "generator.safetensors").read_bytes()
    assert a == b
    ca, cb = (torch.load(d / "ckpt.pt", weights_only=True) for d in (clean, crashed))
    for k in ca["D"]:
        assert torch.equal(ca["D"][k], cb["D"][k]), k
    # the resumed run's logs continue from the checkpoint without duplicate steps
    steps = [s for s, _ in column(crashed, "loss_d")]
    assert steps == sorted(set(steps))


def test_a_finished_run_rerun_writes_the_same_outputs(tiny_data, tmp_path):
    """`dvc repro -f` (or any re-run of the same params, data and code) deletes the stage's non-persistent outputs
    and runs train again: it resumes the finished checkpoint at its last step and writes the same generator and
    summary, keeping the curves (persistent) without duplicate rows."""
    run(tiny_data, tmp_path, epochs=2)
    weights = (tmp_path / "student" / "generator.safetensors").read_bytes()
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    curve = column(tmp_path, "loss_d")
    shutil.rmtree(tmp_path / "student")  # what DVC removes before it re-runs the stage
    run(tiny_data, tmp_path, epochs=2)
    assert (tmp_path / "student" / "generator.safetensors").read_bytes() == weights
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == summary
    assert column(tmp_path, "loss_d") == curve


@pytest.mark.parametrize("change", ["code", "data"])
def test_a_checkpoint_of_other_code_or_data_is_not_resumed(tiny_data, tmp_path, monkeypatch, capsys, change):
    """The resume key holds the code and the inputs besides the params: after a code change or new teacher
    shards, a re-run trains afresh instead of finishing the old run into new outputs."""
    from tinygan import train as train_mod

    run(tiny_data, tmp_path, epochs=1)
    capsys.readouterr()
    if change == "code":
        monkeypatch.setattr(train_mod, "_code_digest", lambda: "other code")
    else:
        real_digest = train_mod._inputs_digest
        monkeypatch.setattr(train_mod, "_inputs_digest", lambda m, f: real_digest(m + [{"new": "shards"}], f))
    run(tiny_data, tmp_path, epochs=1)
    assert "starting a fresh run" in capsys.readouterr().out
    assert [s for s, _ in column(tmp_path, "loss_d")] == sorted({s for s, _ in column(tmp_path, "loss_d")})


def test_the_resume_key_follows_inputs_and_code(tmp_path):
    from tinygan.train import _code_digest, _inputs_digest

    enc = tmp_path / "emb.npy"
    enc.write_bytes(b"one")
    a = _inputs_digest([{"shards": [{"sha256": "1"}]}], [str(enc)])
    assert a != _inputs_digest([{"shards": [{"sha256": "2"}]}], [str(enc)])
    enc.write_bytes(b"two")
    assert a != _inputs_digest([{"shards": [{"sha256": "1"}]}], [str(enc)])
    assert _code_digest() == _code_digest() and len(_code_digest()) == 64
    assert _config_key(config(), 1, {}, "x") != _config_key(config(), 1, {}, "y")


def test_ddp_gloo_two_processes(tiny_data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_script(tiny_data, tmp_path, 2, extra="print('RANK-DONE')"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("RANK-DONE") == 2
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 24 training pairs / (batch 6 x 2 processes) = 2 steps per epoch
    assert metrics["steps"] == 4


def test_step_loader_same_batches_with_worker_processes(tiny_data):
    """train.workers > 0 prefetches in worker processes (the shard reader forked): the same batches per step."""
    from tinygan import shards
    from tinygan.train import StepBatches, step_loader

    ds = shards.ShardDataset(tiny_data / "teacher")
    source = StepBatches(ds, np.arange(24), 4, rank=0, world=1, seed=0, stream=1)  # 6 steps per epoch
    serial = list(step_loader({"t": source}, 3, 9, workers=0))  # across an epoch boundary
    parallel = list(step_loader({"t": source}, 3, 9, workers=2))
    assert len(serial) == len(parallel) == 6
    for step, (a, b) in enumerate(zip(serial, parallel), start=3):
        assert torch.equal(a["t"]["z"], source.get(step)["z"])
        for k in ("z", "y", "images"):
            assert torch.equal(a["t"][k], b["t"][k])


def _spy_fresh_noise(monkeypatch):
    """Record (latent, z_dim, z', step, stream) of every fresh-noise draw of a training run."""
    import tinygan.train as train_mod

    calls, real = [], train_mod._fresh_noise

    def spy(*a, **kw):
        z = real(*a, **kw)
        calls.append((a[5], a[6], z, a[1], a[7]))
        return z
    monkeypatch.setattr(train_mod, "_fresh_noise", spy)
    return calls


def test_fresh_noise_follows_a_stylegan_teachers_latent(tmp_path, monkeypatch):
    from conftest import make_pairs, make_real

    make_pairs(str(tmp_path / "teacher"), extra={"latent": "stylegan", "z_dim": 128, "c_dim": 1000})
    make_real(str(tmp_path / "real"))
    calls = _spy_fresh_noise(monkeypatch)
    run(tmp_path, tmp_path / "out", epochs=1)
    assert calls and {(latent, z_dim) for latent, z_dim, *_ in calls} == {("stylegan", 128)}
    z = torch.cat([c[2] for c in calls])
    assert z.abs().max() > 2.5  # untruncated: the teacher's truncation ψ does not touch z
    assert abs(float(z.std()) - 1.0) < 0.1 and abs(float(z.mean())) < 0.1


def test_fresh_noise_of_an_old_manifest_is_biggans_truncated_normal(tiny_data, tmp_path, monkeypatch):
    calls = _spy_fresh_noise(monkeypatch)
    cfg = config()
    run(tiny_data, tmp_path, epochs=1)
    assert calls and {(latent, z_dim) for latent, z_dim, *_ in calls} == {("biggan", 128)}
    assert float(torch.cat([c[2] for c in calls]).abs().max()) <= 2 * cfg.truncation


def test_fresh_noise_of_an_unknown_latent_is_one_line():
    from tinygan.train import _fresh_noise

    with pytest.raises(TinyGANError, match="latent recipe 'vae' is unknown"):
        _fresh_noise(0, 0, 0, 4, 1.0, "vae", 128)


def test_real_and_teacher_shards_must_be_of_the_same_classes(tiny_data, tmp_path):
    """A class folder added to the real tree re-runs prepare but not sample: train says so, never mixes them."""
    from conftest import make_real

    make_real(str(tmp_path / "real"), classes=(1, 9, 130, 207))
    with pytest.raises(TinyGANError, match=r"classes \[1, 9, 130, 207\] but the teacher pairs .* of \[1, 9, 130\]; "
                                           r"re-sample") as e:
        train(str(tiny_data / "teacher"), str(tmp_path / "real"), str(tmp_path / "c.pt"),
              str(tmp_path / "g.safetensors"), str(tmp_path / "live"), config(epochs=1), progress=False)
    assert "\n" not in str(e.value)
