"""Distillation training loop (paper Sec. 3, Eq. 1-7), nanoGPT style: one file, one checkpoint, DDP via torchrun.

Every iteration:
  D step   L_D = w_kd_d·L_KD_D(T(z,y), S(z,y)) + λ4·L_GAN_D(x_real, S(z',y_r))
  G step   L_S = w_feat·L_KD_feat + λ1(epoch)·L_KD_pix  [+ λ2·L_KD_S + λ3·L_GAN_S on adversarial iterations]
                [+ lambda_dime·L_DiME(S(z,y), T(z,y)) when lambda_dime > 0: MMD² of frozen-encoder embeddings]
Official schedule: G every iteration, adversarial G terms every 5th (`adv_every=5`, `g_every=1`).
Paper text: one G update per 10 D updates (`g_every=10`, `adv_every=1`).
As the official code: G runs once per batch (BatchNorm statistics over batch_size images, `g_calls=separate`),
the adversarial G terms use a fresh z' (`g_noise=fresh`), fp32 (`precision=fp32`: IEEE float32, with CUDA's TF32
off for the run, as the authors' 2080 Ti computed; `tf32` asks for it). Unlike it, the student images
of the teacher batch come from one G forward, used by the D step (detached) and the G step (README "Fidelity").

Speed: G and D in channels_last (CPU and CUDA), images cross to the device as uint8 and become float there, no
host sync in a step (losses stay tensors until a logging step), fused Adam, pinned copies on CUDA; G's training-mode
fast path (models.set_fast_training: shortcut conv before the upsampling, CBN as one addcmul); on CPU, freed
memory stays in malloc's heap (runtime.keep_freed_memory).

Determinism: the data of step s (teacher batch, real batch, fresh noise z') is a pure function of (seed, s), so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run sees; with the model, optimiser and
EMA state restored from the checkpoint the result is bit-identical on CPU (same torch build and thread count).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from tinygan import cbn_relu, losses, runtime, shards
from tinygan.errors import TinyGANError
from tinygan.extractors import load_encoder
from tinygan.io import sha256_file, write_bytes, write_json
from tinygan.models import EMA, Discriminator, Generator, save_weights, set_fast_training
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
    precision: str  # fp32 (IEEE, TF32 off) | tf32 (CUDA) | bf16 | fp16 (autocast; fp16: a GradScaler per optimiser)
    compile: bool  # torch.compile the G and D forwards
    g_calls: str  # separate (one G call per batch, official) | joint (teacher z and z' in one call)
    batches: str  # shuffled (a random order cut into batches, official) | balanced (each class equally per batch)
    g_noise: str  # fresh (a new z' for the adversarial G terms, official) | reuse (the D step's)
    embed_init: str | None  # .npy [n_classes, emb_dim] starting the student's class embedding (None: random)
    embed_init_dep: str  # what DVC tracks for embed_init (unused here)
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
    per rank; with ``labels`` (the class of each of ``indices``), ``shards.balanced_epoch_batches``' plan, in
    which every class is equally represented. ``get(step)`` returns this rank's batch of that step. ``stream``
    keeps the teacher and real permutations independent under one seed."""

    def __init__(self, dataset, indices: np.ndarray, batch: int, rank: int, world: int, seed: int, stream: int,
                 labels: np.ndarray | None = None):
        self.ds, self.indices, self.batch, self.rank, self.world = dataset, indices, batch, rank, world
        self.labels = labels
        self.seed = int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
        counts = None if labels is None else np.unique(labels, return_counts=True)[1]  # pairs per class
        usable = len(indices) if counts is None else int(counts.min()) * len(counts)  # balanced: as the smallest
        self.steps_per_epoch = usable // (batch * world)
        self._plan_epoch, self._plan = -1, None

    def get(self, step: int) -> dict:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._plan_epoch:
            gb = self.batch * self.world
            self._plan = (shards.epoch_batches(len(self.indices), gb, self.seed, epoch) if self.labels is None
                          else shards.balanced_epoch_batches(self.labels, gb, self.seed, epoch))
            self._plan_epoch = epoch
        mine = np.sort(self.indices[self._plan[k][self.rank * self.batch:(self.rank + 1) * self.batch]])
        # as stored (images uint8 NHWC: a quarter of the bytes to pin and copy); floats on the device (_to_device)
        return {k: torch.from_numpy(v) for k, v in self.ds.read(mine, raw=True).items()}


# the random streams of fresh noise: z' of the D step (and of the G step with g_noise=reuse), z' of the G step
D_NOISE, G_NOISE = 7, 11


def _fresh_noise(seed: int, step: int, rank: int, n: int, truncation: float, latent: str = "biggan",
                 z_dim: int = 128, stream: int = D_NOISE) -> torch.Tensor:
    """z' for the GAN terms, seeded by (seed, stream, step, rank), drawn with the teacher's latent recipe (its
    shard manifest's ``latent``, see ``tinygan.teacher.draw_z``) at its ``z_dim``: "biggan": truncation ×
    truncated normal (±2); "stylegan": standard normal — the z the teacher got, since its truncation ψ acted
    inside the teacher (on w), not on z, so the student is fed untruncated z. ``stream``: D_NOISE for the D
    step's z', G_NOISE for the G step's fresh z' (official: a new draw)."""
    check_latent(latent)
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(1)[0]))
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
OPTIONAL_KEYS = {"scalers": dict}  # fp16's loss scalers (name -> GradScaler state)


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
    for key, types in {**CHECKPOINT_KEYS, **{k: v for k, v in OPTIONAL_KEYS.items() if k in state}}.items():
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
    ema: EMA | None
    device: torch.device
    rank: int
    world: int
    g_ddp: torch.nn.Module | None = None  # forwards with gradients go through these: GCalls(G) and D, their
    d_ddp: torch.nn.Module | None = None  # DDP wrappers when world > 1 (see _wrap_ddp), compiled with train.compile
    g_plain: torch.nn.Module | None = None  # GCalls(G) for forwards without gradients (and compiled D for the
    d_frozen: torch.nn.Module | None = None  # G step's frozen-D forward)
    autocast: Any = dataclasses.field(default_factory=nullcontext)
    scalers: dict | None = None  # fp16: a GradScaler per optimiser ("g", "d"); else None
    fmt: torch.memory_format = torch.channels_last  # of the models and the images given to them
    encoder: torch.nn.Module | None = None  # L_DiME's frozen encoder; None when lambda_dime == 0 (never loaded)

    def __post_init__(self):
        self.g_plain = GCalls(self.G) if self.g_plain is None else self.g_plain
        self.g_ddp = self.g_plain if self.g_ddp is None else self.g_ddp
        self.d_ddp = self.D if self.d_ddp is None else self.d_ddp
        self.d_frozen = self.D if self.d_frozen is None else self.d_frozen

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator to sample and export: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.G


class GCalls(torch.nn.Module):
    """G over several (z, y) batches in one forward, so DDP sees one forward per backward.
    ``forward(zs, ys, grads, joint)`` returns G's images of each batch: batch by batch (BatchNorm statistics over
    each batch, as the official code), or with ``joint`` the first two batches in one call (statistics over
    both); a batch whose ``grads`` flag is off runs without a graph."""

    def __init__(self, G: torch.nn.Module):
        super().__init__()
        self.G = G

    def forward(self, zs: list, ys: list, grads: list, joint: bool = False) -> list:
        groups = ([[0, 1]] if joint else [[0], [1]]) + [[i] for i in range(2, len(zs))]
        groups = [g for g in groups if g[-1] < len(zs)]
        out = []
        for g in groups:
            with torch.set_grad_enabled(any(grads[i] for i in g)):  # (a context torch.compile traces)
                x = self.G(torch.cat([zs[i] for i in g]), torch.cat([ys[i] for i in g]))
            out += list(x.split([len(zs[i]) for i in g])) if len(g) > 1 else [x]
        return out


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
    manifests: list                    # of the shards read (teacher, then real when used): the resume key


@dataclasses.dataclass
class _Outputs:
    """Where a master process writes: checkpoint, snapshots, dvclive."""
    ckpt_path: Path
    snapshot_dir: str | None
    live: Any = None
    l1_start: float = float("nan")
    key: str = ""                      # what a checkpoint must match to be resumed (_config_key)


def train(teacher_dir: str, real_dir: str, ckpt_path: str, generator_out: str, live_dir: str,
          cfg: TrainConfig, snapshot_dir: str | None = None, progress: bool = True) -> dict:
    """Train a student; resume from ``ckpt_path`` if present. Returns a summary (held-out L1 before/after...)."""
    device, rank, world = _setup_device(cfg)
    with _cpu_heap(device), runtime.float32_math(tf32=cfg.precision == "tf32"):
        return _train(teacher_dir, real_dir, ckpt_path, generator_out, live_dir, cfg, snapshot_dir, progress,
                      device, rank, world)


@contextmanager
def _cpu_heap(device: torch.device) -> Iterator[None]:
    """On CPU, for the run only, big activations reuse mapped heap pages (speed: runtime.keep_freed_memory);
    glibc's defaults are back afterwards, so an in-process caller (a notebook, the tests) does not keep them."""
    kept = device.type == "cpu" and runtime.keep_freed_memory()
    try:
        yield
    finally:
        if kept:
            runtime.keep_freed_memory(False)


def _train(teacher_dir: str, real_dir: str, ckpt_path: str, generator_out: str, live_dir: str, cfg: TrainConfig,
           snapshot_dir: str | None, progress: bool, device: torch.device, rank: int, world: int) -> dict:
    master = rank == 0
    if device.type == "cpu" and master and FAST_TRAINING:
        if not cbn_relu.built():
            tqdm.write("train: building the fused CPU kernel of G's norms (once per machine, about 30 s)")
        tqdm.write(f"train: G's norms + ReLU run as {cbn_relu.kernel_status()}")
    torch.manual_seed(cfg.seed)
    data = _load_data(teacher_dir, real_dir, cfg, rank, world, device)
    total = cfg.epochs * data.steps_per_epoch
    run = _build(cfg, data.shape, device, rank, world)
    files = ([cfg.embed_init] if cfg.embed_init else []) + ([cfg.dime_encoder] if cfg.lambda_dime > 0 else [])
    inputs = _inputs_digest(data.manifests, files)  # (after _build has checked those files)
    out = _Outputs(Path(ckpt_path), snapshot_dir, key=_config_key(cfg, world, run.G.config, inputs))
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
    for batch in step_loader(data.sources, step, total, cfg.workers, pin_memory=device.type == "cuda"):
        when = _When.at(cfg, step, data.steps_per_epoch)
        _set_lr(run, step, total)
        logs = _iteration(run, batch, when, data)
        if run.ema is not None and when.update_g:
            run.ema.update(run.G, copy=step < cfg.ema_start)
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
    labels = tds.labels()[train_idx] if cfg.batches == "balanced" else None
    teacher_batches = StepBatches(tds, train_idx, cfg.batch_size, rank, world, cfg.seed, stream=1, labels=labels)
    if teacher_batches.steps_per_epoch == 0:
        raise TinyGANError(f"train.batches balanced: the smallest class has too few training teacher pairs in "
                           f"{teacher_dir} for one global batch of {need}; raise sample.per_class or set "
                           f"train.batches: shuffled")
    sources = {"t": teacher_batches} if cfg.uses_teacher else {}  # the L_GAN-only baseline reads no pairs
    if cfg.uses_real:
        rds = shards.ShardDataset(real_dir, fields=("images", "y"))
        _check_same_world(rds.manifest, tds.manifest, real_dir, teacher_dir)
        if len(rds) < need:
            raise TinyGANError(f"train.batch_size {cfg.batch_size} x {world} is larger than the {len(rds)} real "
                               f"images in {real_dir}; lower train.batch_size")
        sources["r"] = StepBatches(rds, np.arange(len(rds)), cfg.batch_size, rank, world, cfg.seed, stream=2)
    return _Data(sources, _holdout_batch(tds, hold_idx, device), len(train_idx), len(hold_idx),
                 teacher_batches.steps_per_epoch, _shape(tds.manifest), shards.manifest_latent(tds.manifest)[0],
                 [tds.manifest] + ([rds.manifest] if cfg.uses_real else []))


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


def step_loader(sources: dict, first: int, last: int, workers: int, pin_memory: bool = False
                ) -> torch.utils.data.DataLoader:
    """The batches of steps [first, last) (``{name: source.get(step)}``); ``workers`` processes prefetch them
    (each opens its own shard handles: ``ShardDataset`` never shares one across fork); ``pin_memory`` for
    non-blocking copies to a GPU."""
    return torch.utils.data.DataLoader(_Prefetch(sources, first, last), batch_size=None, shuffle=False,
                                       num_workers=workers, persistent_workers=False, pin_memory=pin_memory)


# speed only (results equal within float tolerance, tests/test_fidelity.py): conv nets run faster channels-last
CHANNELS_LAST = True
FAST_TRAINING = True  # G's training-mode fast path (models.set_fast_training): also float tolerance only
PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype
CUDA_ONLY = {"fp16": "its loss scaling is CUDA's", "tf32": "TensorFloat-32 is a CUDA tensor-core format"}


def _build(cfg: TrainConfig, shape: dict, device: torch.device, rank: int, world: int) -> _Run:
    """Fresh G and D of the teacher's ``shape`` (seeded by the caller; the class embedding from
    ``train.embed_init`` when set), their Adam optimisers, the EMA of G, autocast and loss scalers."""
    if cfg.precision in CUDA_ONLY and device.type != "cuda":
        raise TinyGANError(f"train.precision {cfg.precision} needs a CUDA device ({CUDA_ONLY[cfg.precision]}), but "
                           f"training runs on {device.type}; use train.precision fp32 or bf16")
    fmt = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    G = Generator(cfg.variant, cfg.ch, shape["n_classes"], shape["z_dim"], resolution=shape["resolution"])
    if cfg.embed_init is not None:
        init_embedding(G, cfg.embed_init)
    G = set_fast_training(G.to(device, memory_format=fmt), FAST_TRAINING)
    D = Discriminator(cfg.d_ch, shape["n_classes"], shape["resolution"]).to(device, memory_format=fmt)
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}  # one kernel per parameter group
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **fused)
    ema = EMA(G, cfg.ema_decay) if cfg.ema else None
    dtype = PRECISIONS[cfg.precision]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    scalers = {k: torch.amp.GradScaler("cuda") for k in ("g", "d")} if cfg.precision == "fp16" else None
    encoder = None
    if cfg.lambda_dime > 0:  # off: the file is not even opened
        encoder = load_encoder(cfg.dime_encoder, device)
    return _Run(cfg, G, D, opt_g, opt_d, ema, device, rank, world, autocast=autocast, scalers=scalers, fmt=fmt,
                encoder=encoder)


def load_embed_init(path: str, n_classes: int, emb_dim: int) -> torch.Tensor:
    """The [n_classes, emb_dim] float32 array of the .npy at ``path`` (``train.embed_init``): row i starts class
    i's embedding, in the student's class index space (ImageNet teachers: the 1000 ImageNet indices whatever
    classes are selected, so the authors' 1000x128 array maps row for row). Checked before use: shape
    (from the header, before reading), floating dtype, finite values; any problem is one TinyGANError line."""
    where = f"train.embed_init {path}"
    if n_classes == 0:
        raise TinyGANError(f"{where}: the student is unconditional (its teacher has no classes), so it has no class "
                           f"embedding to initialise; set train.embed_init to null")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise TinyGANError(f"{where} not found; give an existing .npy file or null") from None
    except (ValueError, OSError, EOFError) as e:
        raise TinyGANError(f"{where} is not a readable .npy array ({type(e).__name__}); save it with numpy.save") from None
    if not isinstance(arr, np.ndarray):
        raise TinyGANError(f"{where} is an .npz archive, not one .npy array; save the array with numpy.save")
    if arr.shape != (n_classes, emb_dim):
        raise TinyGANError(f"{where} has shape {list(arr.shape)}, but the student's class embedding is "
                           f"[{n_classes}, {emb_dim}] (row i = class i)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TinyGANError(f"{where} holds {arr.dtype} values; it must hold floats")
    arr = np.array(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise TinyGANError(f"{where} holds {int((~np.isfinite(arr)).sum())} non-finite values (nan/inf)")
    return torch.from_numpy(arr)


def init_embedding(G: Generator, path: str) -> None:
    """Start ``G``'s class embedding from ``load_embed_init``'s array (it stays trainable)."""
    weights = load_embed_init(path, G.config["n_classes"], G.config["emb_dim"])
    with torch.no_grad():
        G.embedding.weight.copy_(weights)


def _wrap_ddp(run: _Run) -> None:
    """Under torchrun, run forwards with gradients through DDP wrappers (after the checkpoint is restored); with
    ``train.compile``, compile the forwards (DDP first, as torch recommends). The plain modules stay as they are
    (checkpoints, EMA, sampling)."""
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [run.device.index] if run.device.type == "cuda" else None
        run.g_ddp, run.d_ddp = DDP(run.g_plain, device_ids=ids), DDP(run.D, device_ids=ids)
    if run.cfg.compile:
        run.g_ddp, run.d_ddp = torch.compile(run.g_ddp), torch.compile(run.d_ddp)
        run.g_plain = run.g_ddp if run.world == 1 else torch.compile(run.g_plain)
        run.d_frozen = run.d_ddp if run.world == 1 else torch.compile(run.D)


def _resume(run: _Run, out: _Outputs, total: int) -> tuple[dict | None, int]:
    """(checkpoint state, step) restored into ``run``, or (None, 0) for a fresh run. A checkpoint of other
    settings starts a fresh run; a fresh run's master drops the old run's snapshots."""
    master, snapshot_dir = run.rank == 0, out.snapshot_dir
    if snapshot_dir:
        Path(snapshot_dir).mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out.ckpt_path)
    if state is not None and state["config"] != out.key:
        if master:  # other params, data or code: the old run's checkpoint and snapshots do not apply
            tqdm.write(f"train: {out.ckpt_path} was made with other settings, data or code; starting a fresh run")
        state = None
    if state is None:
        if master and snapshot_dir:
            for f in Path(snapshot_dir).glob("G-*"):
                f.unlink()
        return None, 0
    step = restore_checkpoint(out.ckpt_path, state,
                              {"G": run.G, "D": run.D, "ema": run.ema.module if run.ema is not None else None},
                              {"opt_g": run.opt_g, "opt_d": run.opt_d}, total)
    for name, scaler in (run.scalers or {}).items():  # fp16: the loss scales go on where they were
        if name in state.get("scalers", {}):
            scaler.load_state_dict(state["scalers"][name])
    return state, step


def _set_lr(run: _Run, step: int, total: int) -> None:
    for opt, base in ((run.opt_g, run.cfg.lr_g), (run.opt_d, run.cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = losses.lr_at(step, base, run.cfg.lr_decay_start, total)


def _log_step(run: _Run, live, bar, step: int, when: _When, logs: dict, images_per_s: float) -> None:
    """Log this step's losses (the only host sync of a step, on logging steps only), schedules and speed."""
    logs = {k: float(v) for k, v in logs.items()}
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
            "config": out.key, "heldout_l1_start": out.l1_start,
            **({"scalers": {k: v.state_dict() for k, v in run.scalers.items()}} if run.scalers else {})})


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


def _to_device(part: dict, run: _Run) -> dict:
    """A batch on the device: uint8 NHWC images become float32 NCHW in [-1, 1] there (x / 127.5 - 1, as
    ``ShardDataset`` reads them) in the models' memory format."""
    out = {k: v.to(run.device, non_blocking=True) for k, v in part.items()}
    if "images" in out:
        out["images"] = out["images"].permute(0, 3, 1, 2).to(torch.float32, memory_format=run.fmt).div_(127.5).sub_(1.0)
    return out


def _iteration(run: _Run, batch: dict, when: _When, data: _Data) -> dict:
    """One D step and (maybe) one G step; returns the losses as detached tensors (no host sync: ``_log_step``
    reads them on logging steps only). Fresh noise follows the teacher's latent recipe and z width (``data``).
    The student images of the teacher batch are made once, with a graph when G is updated this iteration; with
    ``g_noise=fresh`` the adversarial G terms get their own z' and images. Every G forward of the iteration runs
    in one ``GCalls`` call (one DDP forward per backward)."""
    cfg = run.cfg
    t = _to_device(batch["t"], run) if cfg.uses_teacher else None
    r = _to_device(batch["r"], run) if cfg.uses_real else None
    zs, ys, grads, names = [], [], [], []

    def want(name, z, y, grad):
        zs.append(z); ys.append(y); grads.append(grad); names.append(name)
    if t is not None:
        want("s", t["z"], t["y"], when.update_g)
    if r is not None:  # fresh noise z' with the real batch's labels y_r
        fresh = cfg.g_noise == "fresh"
        want("f", _noise(run, when.step, len(r["y"]), data, D_NOISE), r["y"], when.adversarial and not fresh)
        if when.adversarial and fresh and cfg.lambda_gan_s > 0:
            want("f_g", _noise(run, when.step, len(r["y"]), data, G_NOISE), r["y"], True)
    with run.autocast, (nullcontext() if any(grads) else torch.no_grad()):
        joint = cfg.g_calls == "joint" and names[:2] == ["s", "f"]
        fakes = dict(zip(names, (run.g_ddp if any(grads) else run.g_plain)(zs, ys, grads, joint)))
    logs, t_feats = _d_step(run, t, r, fakes.get("s"), fakes.get("f"))
    if when.update_g:
        logs.update(_g_step(run, when, t, r, fakes.get("s"), fakes.get("f_g", fakes.get("f")), t_feats))
    return logs


def _noise(run: _Run, step: int, n: int, data: _Data, stream: int) -> torch.Tensor:
    """Fresh noise of ``stream`` for this step and rank, drawn on the CPU (the same on any device); to a GPU from
    pinned memory, so the copy does not wait for the queued work (no host sync)."""
    z = _fresh_noise(run.cfg.seed, step, run.rank, n, run.cfg.truncation, data.latent, data.shape["z_dim"], stream)
    return z.pin_memory().to(run.device, non_blocking=True) if run.device.type == "cuda" else z


def _d_step(run: _Run, t: dict | None, r: dict | None, fake_kd, fake_gan) -> tuple[dict, list | None]:
    """L_D = w_kd_d·L_KD_D + λ4·L_GAN_D, one batched D forward; returns (logs, teacher features for L_KD_feat)."""
    d_w = losses.discriminator_weights(run.cfg.lambda_gan_d, run.cfg.lambda_kd_d)
    if not losses.active(d_w):
        return {}, None
    with run.autocast:
        d_terms, t_feats = losses.discriminator_terms(
            run.d_ddp, d_w, t["y"] if t else None, s_img=fake_kd, t_img=t["images"] if t else None,
            real_img=r["images"] if r else None, y_real=r["y"] if r else None, fake_img=fake_gan)
    return _optimise(run, "d", *losses.discriminator_loss(d_terms, d_w)), t_feats


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
            run.d_frozen, g_w, t["y"] if t else None, s_img=fake_kd, t_img=t["images"] if t else None,
            t_feats=t_feats, fake_img=fake_gan, y_fake=r["y"] if r else None, encoder=run.encoder,
            dime_kernel=cfg.dime_kernel)
    for p in run.D.parameters():
        p.requires_grad_(True)
    return _optimise(run, "g", *losses.generator_loss(g_terms, g_w))


def _optimise(run: _Run, who: str, loss: torch.Tensor, logs: dict) -> dict:
    """One step of ``who``'s optimiser ("g" or "d") on ``loss`` (fp16: through its loss scaler); returns ``logs``
    (detached tensors), the total renamed loss_g / loss_d."""
    opt = run.opt_g if who == "g" else run.opt_d
    opt.zero_grad(set_to_none=True)
    if run.scalers is None:
        loss.backward()
        opt.step()
    else:
        scaler = run.scalers[who]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return {(f"loss_{who}" if k == "total" else k): v for k, v in logs.items()}


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


def _config_key(cfg: TrainConfig, world: int, g_config: dict, inputs: str) -> str:
    """What a checkpoint must match to be resumed: everything but the logging cadence and worker count, the
    generator's config (its shape follows the teacher's), the inputs (``_inputs_digest``) and the code
    (``_code_digest``). A crash resumes; a run of other params, data or code starts afresh, so a re-run stage never
    finishes an old run into new outputs."""
    d = dataclasses.asdict(cfg)
    for k in ("checkpoint_every", "sample_every", "log_every", "workers", "snapshot_every"):
        d.pop(k)
    if cfg.lambda_dime == 0:  # L_DiME off: its settings change nothing, and the key is the one from before it
        for k in ("lambda_dime", "dime_encoder", "dime_kernel"):
            d.pop(k)
    d["world"] = world
    d["generator"] = g_config
    d["inputs"], d["code"] = inputs, _code_digest()
    return json.dumps(d, sort_keys=True)


def _inputs_digest(manifests: list[dict], files: list[str]) -> str:
    """sha256 of what training reads besides its params: the shard manifests (each lists its shards' sha256) and
    the contents of the extra input files (train.embed_init, the L_DiME encoder)."""
    h = hashlib.sha256(json.dumps(manifests, sort_keys=True, default=str).encode())
    for f in files:
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _code_digest() -> str:
    """sha256 of the tinygan package's code: every .py (and C++) file outside the demo world, by relative path."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(f for f in root.rglob("*") if f.suffix in (".py", ".cpp")):
        rel = p.relative_to(root)
        if rel.parts[0] != "demo":
            code = p.read_bytes()
            h.update(f"{rel.as_posix()}\0{len(code)}\0".encode() + code)
    return h.hexdigest()
