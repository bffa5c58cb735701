"""Distillation training loop (paper Sec. 3, Eq. 1-7), nanoGPT style: one file, one checkpoint, DDP via torchrun.

Every iteration:
  D step   L_D = w_kd_d·L_KD_D(T(z,y), S(z,y)) + λ4·L_GAN_D(x_real, S(z',y_r))
  G step   L_S = w_feat·L_KD_feat + λ1(epoch)·L_KD_pix  [+ λ2·L_KD_S + λ3·L_GAN_S on adversarial iterations]
                [+ lambda_dime·L_DiME(S(z,y), T(z,y)) when lambda_dime > 0: MMD² of frozen-encoder embeddings]
Official schedule: G every iteration, adversarial G terms every 5th (`adv_every=5`, `g_every=1`).
Paper text: one G update per 10 D updates (`g_every=10`, `adv_every=1`).

Determinism: the data of step s (teacher batch, real batch, fresh noise z') is a pure function of (seed, s), so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run sees; with the model, optimiser and
EMA state restored from the checkpoint the result is bit-identical on CPU (same torch build and thread count).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from tinygan import losses, runtime, shards
from tinygan.errors import TinyGANError
from tinygan.extractors import load_encoder
from tinygan.io import write_bytes, write_json
from tinygan.models import Discriminator, Generator, make_ema, save_weights, update_ema
from tinygan.classes import N_CLASSES
from tinygan.teacher import RESOLUTION, Z_DIM, check_latent


@dataclasses.dataclass
class TrainConfig:
    """What `train` takes, built from validated params (`from_params`): no defaults of its own, so the params
    (conf/, tinygan/params.py) are the one source of every value."""

    variant: str
    ch: int
    d_ch: int
    batch_size: int  # per process
    epochs: int  # an epoch is one pass over the (training) teacher pairs
    holdout_per_class: int  # teacher pairs per class kept out of training for held-out L1 and the grid
    lr_g: float
    lr_d: float
    beta1: float
    beta2: float
    lr_decay_start: int  # iteration where lr starts decaying linearly to 0 at the last iteration
    g_every: int  # one G update every g_every iterations (paper text: 10)
    adv_every: int  # adversarial G terms (λ2, λ3) every adv_every-th iteration (official: 5)
    truncation: float  # scale of fresh noise z' for a "biggan"-latent teacher (unused for "stylegan": _fresh_noise)
    ema: bool
    ema_decay: float
    ema_start: int
    checkpoint_every: int
    sample_every: int
    snapshot_every: int  # keep G weights every N steps for FID-over-training (0 = off)
    dime_encoder: str  # L_DiME's frozen TorchScript encoder, loaded only when lambda_dime > 0
    dime_kernel: str  # gaussian | polynomial
    log_every: int
    workers: int
    device: str  # auto | cpu | cuda
    seed: int
    lambda_pix: float  # loss weights (top-level params)
    lambda_pix_decay: float
    lambda_kd_s: float
    lambda_gan_s: float
    lambda_gan_d: float
    lambda_feat: float
    lambda_kd_d: float
    lambda_dime: float

    @classmethod
    def from_params(cls, p: dict, **overrides) -> "TrainConfig":
        """The config of validated params ``p`` (the train group, its runtime knobs, loss weights, seed),
        with ``overrides`` (field=value) on top."""
        lam = {k: v for k, v in p.items() if k.startswith("lambda_")}
        fields = {**p["train"], **p["runtime"]["train"], **lam, "seed": p["seed"],
                  "truncation": p["sample"]["truncation"]}
        return cls(**{**fields, **overrides})

    @property
    def uses_teacher(self) -> bool:
        return max(self.lambda_pix, self.lambda_feat, self.lambda_kd_s, self.lambda_kd_d, self.lambda_dime) > 0

    @property
    def uses_real(self) -> bool:
        return max(self.lambda_gan_s, self.lambda_gan_d) > 0


# ---- distributed set-up ------------------------------------------------------------------------------------

def _setup_device(cfg: TrainConfig) -> tuple[torch.device, int, int]:
    """(device, rank, world). Under torchrun (WORLD_SIZE>1) joins the process group: nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    device = runtime.device(cfg.device, "runtime.train.device", index=int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


# ---- data: step -> batch, a pure function of (seed, step) ----------------------------------------------------

class StepBatches:
    """The epoch plan of ``shards.epoch_batches`` over ``indices`` in global batches (batch x world), sliced
    per rank. ``get(step)`` returns this rank's batch of that step. ``stream`` keeps the teacher and real
    permutations independent under one seed."""

    def __init__(self, dataset, indices: np.ndarray, batch: int, rank: int, world: int, seed: int, stream: int):
        self.ds, self.indices, self.batch, self.rank, self.world = dataset, indices, batch, rank, world
        self.seed = int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
        self.steps_per_epoch = len(indices) // (batch * world)
        self._plan_epoch, self._plan = -1, None

    def get(self, step: int) -> dict:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._plan_epoch:
            self._plan = shards.epoch_batches(len(self.indices), self.batch * self.world, self.seed, epoch)
            self._plan_epoch = epoch
        mine = np.sort(self.indices[self._plan[k][self.rank * self.batch:(self.rank + 1) * self.batch]])
        return self.ds.__getitems__(mine.tolist())


def _fresh_noise(seed: int, step: int, rank: int, n: int, truncation: float, latent: str = "biggan",
                 z_dim: int = 128) -> torch.Tensor:
    """z' for the GAN terms, seeded by (seed, step, rank), drawn with the teacher's latent recipe (its shard
    manifest's ``latent``, see ``tinygan.teacher.draw_z``) at its ``z_dim``: "biggan": truncation × truncated
    normal (±2); "stylegan": standard normal — the z the teacher got, since its truncation ψ acted inside the
    teacher (on w), not on z, so the student is fed untruncated z."""
    check_latent(latent)
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 7, step, rank]).generate_state(1)[0]))
    z = torch.empty(n, z_dim)
    if latent == "stylegan":
        return z.normal_(generator=g)
    torch.nn.init.trunc_normal_(z, 0.0, 1.0, -2.0, 2.0, generator=g)
    return z * truncation


class _Prefetch(torch.utils.data.Dataset):
    """Dataset over steps, so a DataLoader with workers prefetches the next batches."""

    def __init__(self, sources: dict, first: int, last: int):
        self.sources, self.first, self.n = sources, first, last - first

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        step = self.first + i
        return {name: src.get(step) for name, src in self.sources.items()}


# ---- checkpoint --------------------------------------------------------------------------------------------

# what a checkpoint holds: key -> accepted types
CHECKPOINT_KEYS = {"G": dict, "D": dict, "opt_g": dict, "opt_d": dict, "ema": dict, "step": int, "epoch": int,
                   "lambda_pix": (int, float), "rng": dict, "config": str, "heldout_l1_start": (int, float)}


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` into memory, then an atomic write: saved to a file, the zip's folder would be named after
    the (random) temp file, so identical states would give different bytes."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def _bad_checkpoint(path: Path, what: str) -> TinyGANError:
    return TinyGANError(f"checkpoint {path} {what}; delete it to start a fresh run")


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path`` (None if there is none), its layout and types checked (CHECKPOINT_KEYS)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt checkpoint is a user-level problem
        raise TinyGANError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start over") from None
    if not isinstance(state, dict):
        raise _bad_checkpoint(path, f"holds a {type(state).__name__}, not a training checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise _bad_checkpoint(path, f"lacks {missing} (not a checkpoint of this train stage)")
    for key, types in CHECKPOINT_KEYS.items():
        if isinstance(state[key], bool) or not isinstance(state[key], types):
            raise _bad_checkpoint(path, f"has {key} of type {type(state[key]).__name__}")
    rng = state["rng"].get("torch")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
        raise _bad_checkpoint(path, "has no torch RNG state (rng.torch must be a uint8 tensor)")
    if state["step"] < 0:
        raise _bad_checkpoint(path, f"has a negative step {state['step']}")
    return state


def _check_weights(path: Path, name: str, module: torch.nn.Module, weights: dict) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        raise _bad_checkpoint(path, f"holds {name} weights of another architecture (missing {missing[:3]}, "
                                    f"unexpected {extra[:3]})")
    for k, v in expected.items():
        w = weights[k]
        if not isinstance(w, torch.Tensor):
            raise _bad_checkpoint(path, f"has {name}.{k} of type {type(w).__name__}, not a tensor")
        if w.shape != v.shape:
            raise _bad_checkpoint(path, f"has {name}.{k} of shape {list(w.shape)}, the model's is {list(v.shape)} "
                                        f"(a checkpoint of another architecture)")


def restore_checkpoint(path: Path, state: dict, modules: dict, optimizers: dict, total: int) -> int:
    """Load a checked ``state`` (``load_checkpoint``) of this run's config into ``modules`` (name -> module or
    None) and ``optimizers`` (name -> optimizer), restore the RNG; return the step to resume from.
    Weights or optimiser states that do not fit raise one TinyGANError line naming the checkpoint."""
    if state["step"] > total:
        raise _bad_checkpoint(path, f"is at step {state['step']}, beyond this run's {total} steps")
    for name, module in modules.items():
        if module is not None:
            _check_weights(path, name, module, state[name])
            module.load_state_dict(state[name])
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(state[name])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise _bad_checkpoint(path, f"has an optimiser state {name} that does not fit the model ({why})") from None
        for p, slots in opt.state.items():
            for slot, value in slots.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise _bad_checkpoint(path, f"has {name} state {slot} of shape {list(value.shape)} for a "
                                                f"parameter of shape {list(p.shape)}")
    try:
        torch.set_rng_state(state["rng"]["torch"])
    except RuntimeError:
        raise _bad_checkpoint(path, "has a torch RNG state of the wrong size") from None
    return int(state["step"])


# ---- the loop ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Run:
    """What every iteration works with: the config, the models, their optimisers and EMA, and where they run."""
    cfg: TrainConfig
    G: torch.nn.Module                 # the plain modules: checkpoints, EMA, sampling, the frozen-D forward
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: AveragedModel | None
    device: torch.device
    rank: int
    world: int
    g_ddp: torch.nn.Module | None = None  # forwards with gradients go through these: G and D, or their DDP
    d_ddp: torch.nn.Module | None = None  # wrappers when world > 1 (see _wrap_ddp)
    autocast: Any = dataclasses.field(default_factory=nullcontext)
    encoder: torch.nn.Module | None = None  # L_DiME's frozen encoder; None when lambda_dime == 0 (never loaded)

    def __post_init__(self):
        self.g_ddp = self.G if self.g_ddp is None else self.g_ddp
        self.d_ddp = self.D if self.d_ddp is None else self.d_ddp

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator to sample and export: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.G


@dataclasses.dataclass(frozen=True)
class _When:
    """The schedule of one iteration: its epoch, λ_pix of that epoch, whether G is updated (and with the
    adversarial terms)."""
    step: int
    epoch: int
    lam_pix: float
    update_g: bool
    adversarial: bool

    @classmethod
    def at(cls, cfg: TrainConfig, step: int, steps_per_epoch: int) -> "_When":
        epoch = step // steps_per_epoch
        update_g = (step + 1) % cfg.g_every == 0
        return cls(step, epoch, losses.lambda_pix_at(epoch, cfg.lambda_pix, cfg.lambda_pix_decay), update_g,
                   update_g and losses.adversarial_g_step(step, cfg.adv_every))


@dataclasses.dataclass
class _Data:
    """The teacher pairs split into training and held-out pairs, and this rank's step -> batch sources."""
    sources: dict                      # "t" (teacher pairs, if any loss uses them), "r" (real images, if used)
    hold: dict                         # the held-out teacher pairs on the device: held-out L1 and the grid
    n_train: int
    n_hold: int
    steps_per_epoch: int
    shape: dict                        # the teacher's output: resolution, n_classes, z_dim (see _shape)
    latent: str                        # the teacher's latent recipe: fresh noise z' follows it (at shape z_dim)


@dataclasses.dataclass
class _Outputs:
    """Where a master process writes: checkpoint, snapshots, dvclive."""
    ckpt_path: Path
    snapshot_dir: str | None
    live: Any = None
    l1_start: float = float("nan")


def train(teacher_dir: str, real_dir: str, ckpt_path: str, generator_out: str, live_dir: str,
          cfg: TrainConfig, snapshot_dir: str | None = None, progress: bool = True) -> dict:
    """Train a student; resume from ``ckpt_path`` if present. Returns a summary (held-out L1 before/after...)."""
    device, rank, world = _setup_device(cfg)
    master = rank == 0
    torch.manual_seed(cfg.seed)
    data = _load_data(teacher_dir, real_dir, cfg, rank, world, device)
    total = cfg.epochs * data.steps_per_epoch
    run = _build(cfg, data.shape, device, rank, world)
    out = _Outputs(Path(ckpt_path), snapshot_dir)
    state, step = _resume(run, out, total)
    _wrap_ddp(run)
    out.l1_start = state["heldout_l1_start"] if state is not None else heldout_l1(run.G, data.hold)
    if master:
        out.live = _open_live(live_dir, resume_step=step)
        if state is None:
            _log(out.live, 0, {"heldout_l1": out.l1_start})
    bar = tqdm(total=total, initial=step, unit="step", disable=not (progress and master), dynamic_ncols=True,
               desc="train")
    t0, seen = time.perf_counter(), 0
    for batch in step_loader(data.sources, step, total, cfg.workers):
        when = _When.at(cfg, step, data.steps_per_epoch)
        _set_lr(run, step, total)
        logs = _iteration(run, batch, when, data)
        if run.ema is not None and when.update_g:
            update_ema(run.ema, run.G, copy=step < cfg.ema_start)
        step += 1
        seen += cfg.batch_size * world
        bar.update(1)
        if master and (step % cfg.log_every == 0 or step == total):
            _log_step(run, out.live, bar, step, when, logs, seen / (time.perf_counter() - t0))
        if master:
            _save_step(run, out, data.hold, step, total, when)
    bar.close()
    summary = _finish(run, out, data, generator_out, total) if master else {}
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _load_data(teacher_dir: str, real_dir: str, cfg: TrainConfig, rank: int, world: int, device) -> _Data:
    """Split the teacher pairs (the first ``holdout_per_class`` of each class are held out) and set up the
    step -> batch sources of this rank; too small a dataset for the global batch is one TinyGANError line."""
    tds = shards.ShardDataset(teacher_dir, fields=("z", "y", "images"))
    is_holdout = _index_within_class(tds.labels()) < cfg.holdout_per_class
    train_idx, hold_idx = np.flatnonzero(~is_holdout), np.flatnonzero(is_holdout)
    need = cfg.batch_size * world
    if len(train_idx) < need:
        raise TinyGANError(f"train.batch_size {cfg.batch_size} x {world} process(es) is larger than the "
                           f"{len(train_idx)} training teacher pairs in {teacher_dir}; lower train.batch_size or "
                           f"raise sample.per_class")
    teacher_batches = StepBatches(tds, train_idx, cfg.batch_size, rank, world, cfg.seed, stream=1)
    sources = {"t": teacher_batches} if cfg.uses_teacher else {}  # the L_GAN-only baseline reads no pairs
    if cfg.uses_real:
        rds = shards.ShardDataset(real_dir, fields=("images", "y"))
        _check_same_world(rds.manifest, tds.manifest, real_dir, teacher_dir)
        if len(rds) < need:
            raise TinyGANError(f"train.batch_size {cfg.batch_size} x {world} is larger than the {len(rds)} real "
                               f"images in {real_dir}; lower train.batch_size")
        sources["r"] = StepBatches(rds, np.arange(len(rds)), cfg.batch_size, rank, world, cfg.seed, stream=2)
    return _Data(sources, _holdout_batch(tds, hold_idx, device), len(train_idx), len(hold_idx),
                 teacher_batches.steps_per_epoch, _shape(tds.manifest), shards.manifest_latent(tds.manifest)[0])


def _check_same_world(real: dict, teacher: dict, real_dir: str, teacher_dir: str) -> None:
    """Real and teacher shards must agree on resolution and classes (one TinyGANError line): e.g. a class
    folder added to a `folders` tree re-runs prepare, but sample only when its own inputs change."""
    if real["resolution"] != teacher["resolution"]:
        raise TinyGANError(f"real images in {real_dir} are {real['resolution']}² but the teacher's in "
                           f"{teacher_dir} are {teacher['resolution']}²; prepare the real data at the "
                           f"teacher's resolution")
    if sorted(real["classes"]) != sorted(teacher["classes"]):
        raise TinyGANError(f"the real images in {real_dir} are of classes {_few(real['classes'])} but the teacher "
                           f"pairs in {teacher_dir} of {_few(teacher['classes'])}; re-sample for the same classes "
                           f"(`dvc repro -f sample`, or list the classes by index)")


def _few(classes, n: int = 8) -> str:
    classes = sorted(classes)
    return str(classes[:n])[:-1] + (f", ... ({len(classes)} in all)]" if len(classes) > n else "]")


# the shape of the ImageNet BigGAN teacher, for teacher shards whose manifest does not record its own
DEFAULT_SHAPE = {"resolution": RESOLUTION, "n_classes": N_CLASSES, "z_dim": Z_DIM}


def _shape(manifest: dict) -> dict:
    """The student's shape from the teacher shards' manifest: ``resolution``, ``c_dim`` (class count, 0 for an
    unconditional teacher) and ``z_dim``, each DEFAULT_SHAPE's where absent."""
    return {"resolution": manifest.get("resolution", DEFAULT_SHAPE["resolution"]),
            "n_classes": manifest.get("c_dim", DEFAULT_SHAPE["n_classes"]),
            "z_dim": manifest.get("z_dim", DEFAULT_SHAPE["z_dim"])}


def step_loader(sources: dict, first: int, last: int, workers: int) -> torch.utils.data.DataLoader:
    """The batches of steps [first, last) (``{name: source.get(step)}``); ``workers`` processes prefetch them."""
    return torch.utils.data.DataLoader(_Prefetch(sources, first, last), batch_size=None, shuffle=False,
                                       num_workers=workers, persistent_workers=False)


def _build(cfg: TrainConfig, shape: dict, device: torch.device, rank: int, world: int) -> _Run:
    """Fresh G and D of the teacher's ``shape`` (seeded by the caller), their Adam optimisers and the EMA of G."""
    G = Generator(cfg.variant, cfg.ch, shape["n_classes"], shape["z_dim"], resolution=shape["resolution"]).to(device)
    D = Discriminator(cfg.d_ch, shape["n_classes"], shape["resolution"]).to(device)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    ema = make_ema(G, cfg.ema_decay) if cfg.ema else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    encoder = None
    if cfg.lambda_dime > 0:  # off: the file is not even opened
        encoder = load_encoder(cfg.dime_encoder, device)
    return _Run(cfg, G, D, opt_g, opt_d, ema, device, rank, world, autocast=autocast, encoder=encoder)


def _wrap_ddp(run: _Run) -> None:
    """Under torchrun, run forwards with gradients through DDP wrappers (after the checkpoint is restored)."""
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [run.device.index] if run.device.type == "cuda" else None
        run.g_ddp, run.d_ddp = DDP(run.G, device_ids=ids), DDP(run.D, device_ids=ids)


def _resume(run: _Run, out: _Outputs, total: int) -> tuple[dict | None, int]:
    """(checkpoint state, step) restored into ``run``, or (None, 0) for a fresh run. A checkpoint of other
    settings starts a fresh run; a fresh run's master drops the old run's snapshots."""
    cfg, master, snapshot_dir = run.cfg, run.rank == 0, out.snapshot_dir
    if snapshot_dir:
        Path(snapshot_dir).mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out.ckpt_path)
    if state is not None and state["config"] != _config_key(cfg, run.world, run.G.config):
        if master:  # a new experiment (other params): the old run's checkpoint and snapshots do not apply
            tqdm.write(f"train: {out.ckpt_path} was made with other settings; starting a fresh run")
        state = None
    if state is None:
        if master and snapshot_dir:
            for f in Path(snapshot_dir).glob("G-*"):
                f.unlink()
        return None, 0
    step = restore_checkpoint(out.ckpt_path, state,
                              {"G": run.G, "D": run.D, "ema": run.ema.module if run.ema is not None else None},
                              {"opt_g": run.opt_g, "opt_d": run.opt_d}, total)
    return state, step


def _set_lr(run: _Run, step: int, total: int) -> None:
    for opt, base in ((run.opt_g, run.cfg.lr_g), (run.opt_d, run.cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = losses.lr_at(step, base, run.cfg.lr_decay_start, total)


def _log_step(run: _Run, live, bar, step: int, when: _When, logs: dict, images_per_s: float) -> None:
    bar.set_postfix(d=f"{logs.get('loss_d', float('nan')):.3f}", g=f"{logs.get('loss_g', float('nan')):.3f}",
                    img_s=f"{images_per_s:.1f}")
    _log(live, step, {**logs, "lambda_pix": when.lam_pix, "lr_g": run.opt_g.param_groups[0]["lr"],
                      "lr_d": run.opt_d.param_groups[0]["lr"], "images_per_s": images_per_s, "epoch": when.epoch})


def _save_step(run: _Run, out: _Outputs, hold: dict, step: int, total: int, when: _When) -> None:
    """After ``step`` steps (master): held-out L1 and sample grid, G snapshot, checkpoint, each on its cadence."""
    cfg, sampler = run.cfg, run.sampler
    if step % cfg.sample_every == 0 or step == total:
        _log(out.live, step, {"heldout_l1": heldout_l1(sampler, hold)})
        out.live.log_image("grid.png", sample_grid(sampler, hold))
    if out.snapshot_dir and cfg.snapshot_every and step % cfg.snapshot_every == 0:
        save_generator(sampler, Path(out.snapshot_dir) / f"G-{step:07d}.safetensors")
    if step % cfg.checkpoint_every == 0 or step == total:
        save_checkpoint(out.ckpt_path, {
            "G": run.G.state_dict(), "D": run.D.state_dict(), "opt_g": run.opt_g.state_dict(),
            "opt_d": run.opt_d.state_dict(), "ema": run.ema.module.state_dict() if run.ema is not None else {},
            "step": step, "epoch": when.epoch, "lambda_pix": when.lam_pix, "rng": {"torch": torch.get_rng_state()},
            "config": _config_key(cfg, run.world, run.G.config), "heldout_l1_start": out.l1_start})


def _finish(run: _Run, out: _Outputs, data: _Data, generator_out: str, total: int) -> dict:
    """Master: save the final generator (the EMA when enabled) and return the run's summary."""
    final = run.sampler
    l1_end = heldout_l1(final, data.hold)
    save_generator(final, Path(generator_out))
    summary = {"heldout_l1_start": out.l1_start, "heldout_l1_end": l1_end, "steps": total,
               "epochs": run.cfg.epochs, "steps_per_epoch": data.steps_per_epoch, "train_pairs": int(data.n_train),
               "heldout_pairs": int(data.n_hold), "world_size": run.world, "ema": run.cfg.ema}
    out.live.summary.update(summary)
    out.live.end()
    return summary


def _iteration(run: _Run, batch: dict, when: _When, data: _Data) -> dict:
    """One D step and (maybe) one G step. One G forward and one D forward per DDP module per backward. Fresh
    noise z' follows the teacher's latent recipe and z width (``data``)."""
    cfg = run.cfg
    t = {k: v.to(run.device, non_blocking=True) for k, v in batch["t"].items()} if cfg.uses_teacher else None
    r = {k: v.to(run.device, non_blocking=True) for k, v in batch["r"].items()} if cfg.uses_real else None
    z, y = [], []
    if t is not None:
        z.append(t["z"]); y.append(t["y"])
    if r is not None:  # fresh noise z' with the real batch's labels y_r
        z.append(_fresh_noise(cfg.seed, when.step, run.rank, len(r["y"]), cfg.truncation, data.latent,
                              data.shape["z_dim"]).to(run.device))
        y.append(r["y"])
    n = len(y[0])
    # one student forward for both steps (graph kept only when G is updated this iteration)
    with run.autocast, (nullcontext() if when.update_g else torch.no_grad()):
        fake = (run.g_ddp if when.update_g else run.G)(torch.cat(z), torch.cat(y))
    fake_kd = fake[:n] if t is not None else None
    fake_gan = fake[-n:] if r is not None else None
    logs, t_feats = _d_step(run, t, r, fake_kd, fake_gan)
    if when.update_g:
        logs.update(_g_step(run, when, t, r, fake_kd, fake_gan, t_feats))
    return logs


def _d_step(run: _Run, t: dict | None, r: dict | None, fake_kd, fake_gan) -> tuple[dict, list | None]:
    """L_D = w_kd_d·L_KD_D + λ4·L_GAN_D, one batched D forward; returns (logs, teacher features for L_KD_feat)."""
    d_w = losses.discriminator_weights(run.cfg.lambda_gan_d, run.cfg.lambda_kd_d)
    if not losses.active(d_w):
        return {}, None
    with run.autocast:
        d_terms, t_feats = losses.discriminator_terms(
            run.d_ddp, d_w, t["y"] if t else None, s_img=fake_kd, t_img=t["images"] if t else None,
            real_img=r["images"] if r else None, y_real=r["y"] if r else None, fake_img=fake_gan)
    return _optimise(run.opt_d, *losses.discriminator_loss(d_terms, d_w), "loss_d"), t_feats


def _g_step(run: _Run, when: _When, t: dict | None, r: dict | None, fake_kd, fake_gan, t_feats) -> dict:
    """L_S = w_feat·L_KD_feat + λ1·L_KD_pix [+ λ2·L_KD_S + λ3·L_GAN_S] [+ λ_DiME·L_DiME]; D frozen (plain
    module)."""
    cfg = run.cfg
    g_w = losses.generator_weights(when.lam_pix, cfg.lambda_kd_s, cfg.lambda_gan_s, cfg.lambda_feat, when.adversarial,
                                   cfg.lambda_dime)
    if not t:
        g_w = {k: (v if k == "gan_s" else 0.0) for k, v in g_w.items()}
    if not losses.active(g_w):
        return {}
    for p in run.D.parameters():
        p.requires_grad_(False)
    with run.autocast:
        g_terms = losses.generator_terms(
            run.D, g_w, t["y"] if t else None, s_img=fake_kd, t_img=t["images"] if t else None,
            t_feats=t_feats, fake_img=fake_gan, y_fake=r["y"] if r else None, encoder=run.encoder,
            dime_kernel=cfg.dime_kernel)
    for p in run.D.parameters():
        p.requires_grad_(True)
    return _optimise(run.opt_g, *losses.generator_loss(g_terms, g_w), "loss_g")


def _optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, logs: dict, total_name: str) -> dict:
    """One optimiser step on ``loss``; returns ``logs`` as floats, the total renamed ``total_name``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {(total_name if k == "total" else k): float(v) for k, v in logs.items()}


# ---- evaluation helpers used during training -----------------------------------------------------------------

def _index_within_class(labels: np.ndarray) -> np.ndarray:
    """Position of each sample among the samples of its class, in dataset order (0, 1, 2, ... per class)."""
    out = np.empty(len(labels), np.int64)
    seen: dict[int, int] = {}
    for i, c in enumerate(labels.tolist()):
        out[i] = seen.get(c, 0)
        seen[c] = out[i] + 1
    return out


def _holdout_batch(ds, idx: np.ndarray, device) -> dict:
    if len(idx) == 0:
        raise TinyGANError("train.holdout_per_class is 0: at least one held-out teacher pair per class is needed "
                           "for the held-out L1 and the sample grid")
    b = ds.__getitems__(idx.tolist())
    return {k: v.to(device) for k, v in b.items()}


@torch.no_grad()
def heldout_l1(G: torch.nn.Module, hold: dict) -> float:
    """Mean |T(z,y) - S(z,y)| on held-out teacher pairs (G in eval mode: running BN statistics)."""
    was = G.training
    G.eval()
    out = G(hold["z"], hold["y"]).float()
    G.train(was)
    return float((out - hold["images"]).abs().mean())


@torch.no_grad()
def sample_grid(G: torch.nn.Module, hold: dict, per_row: int = 16):
    """PIL image: rows of teacher images above the student's images for the same fixed held-out (z, y)."""
    from PIL import Image

    was = G.training
    G.eval()
    k = min(per_row, len(hold["y"]))
    sel = torch.linspace(0, len(hold["y"]) - 1, k).round().long()
    s = G(hold["z"][sel], hold["y"][sel]).float().cpu()
    G.train(was)
    t = hold["images"][sel].float().cpu()
    rows = [torch.cat(list(x), dim=2) for x in (t, s)]        # [3, H, k*W]
    grid = torch.cat(rows, dim=1)                               # teacher row over student row
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def save_generator(G: torch.nn.Module, path: Path) -> None:
    """Generator weights as safetensors plus the config needed to rebuild it (no pickle)."""
    path = Path(path)
    save_weights(G, path, G.config)
    write_json(path.with_suffix(".json"), G.config)


# ---- dvclive ----------------------------------------------------------------------------------------------

def _open_live(live_dir: str, resume_step: int):
    """dvclive logger (dvcyaml=False: plots are declared in dvc.yaml). On resume, history past the checkpoint's
    step (logged before a crash) is cut so the curves continue cleanly."""
    from dvclive import Live

    if resume_step:
        for tsv in Path(live_dir, "plots", "metrics").rglob("*.tsv"):
            lines = tsv.read_text().splitlines(keepends=True)
            head, rows = lines[:1], lines[1:]
            col = head[0].rstrip("\n").split("\t").index("step") if head else 0
            keep = [r for r in rows if int(r.split("\t")[col]) <= resume_step]
            tsv.write_text("".join(head + keep))
    live = Live(live_dir, resume=bool(resume_step), dvcyaml=False, save_dvc_exp=False, report=None)
    return live


def _log(live, step: int, values: dict) -> None:
    live.step = step
    for k, v in values.items():
        if v is not None and math.isfinite(float(v)):
            live.log_metric(k, float(v), plot=True)


def _config_key(cfg: TrainConfig, world: int, g_config: dict) -> str:
    """What a checkpoint must match to be resumed: everything but the logging cadence and worker count, and the
    generator's config (its shape follows the teacher's)."""
    d = dataclasses.asdict(cfg)
    for k in ("checkpoint_every", "sample_every", "log_every", "workers", "snapshot_every"):
        d.pop(k)
    if cfg.lambda_dime == 0:  # L_DiME off: its settings change nothing, and the key is the one from before it
        for k in ("lambda_dime", "dime_encoder", "dime_kernel"):
            d.pop(k)
    d["world"] = world
    d["generator"] = g_config
    return json.dumps(d, sort_keys=True)
