"""TinyGAN student generator, projection discriminator and the EMA of a generator.

Architecture (Chang & Lu, ACCV 2020; see shared/reference/tinygan-facts.md):

Generator (variant "dw", ch=32, 128 px -> 3,070,659 parameters)
    z [N,z_dim] -> fc -> [N,16ch,4,4] (the first channel count of the rule below)
    log2(R/4) residual up-blocks (R = resolution); at 128: 16ch -> 16ch -> 8ch -> 4ch -> 2ch -> ch (4 -> 128 px)
        main:     CBN -> ReLU -> up x2 -> dw3x3 -> pw1x1 -> CBN -> ReLU -> dw3x3 -> pw1x1
        shortcut: up x2 -> 1x1 conv
    head: BN(ch) -> ReLU -> conv3x3(ch -> 3) -> tanh
    Every CBN gets its gain/bias from one shared class embedding (n_classes x emb_dim).
    Unconditional (n_classes = 0): affine BatchNorm2d instead of every CBN, no embedding; y is ignored.
    Variant "std" replaces each depthwise+pointwise pair by one 3x3 conv.
    Channel rule (g_channel_mults): counted back from the last block, block outputs are ch x 1, 2, 4, 8, 16,
    16, ... (doubling, capped at 16); the fc gives as many channels as the first block outputs.
    128: 16,16,8,4,2,1 (the paper's); 256: 16,16,16,8,4,2,1; 64: 8,8,4,2,1; 32: 4,4,2,1.

Discriminator (ch=32, 128 px -> 3,300,321 parameters)
    log2(R/4) x [SN-conv4x4 s2 p1 -> LeakyReLU(0.01)] (R -> 4 px); channels 3 -> ch x 1, 2, 4, 8, 16, 16, ...
    (doubling, capped at 16; at 128: 3 -> ch -> 2ch -> 4ch -> 8ch -> 16ch)
    h = sum over H,W;  logit = SN-Linear(h) + <h, SN-Embedding(y)>  (projection D; no projection term
    when unconditional, n_classes = 0)
"""
from __future__ import annotations

from copy import deepcopy
import json
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from tinygan.cbn_relu import norm_relu
from tinygan.classes import N_CLASSES
from tinygan.errors import TinyGANError
from tinygan.teacher import RESOLUTION, Z_DIM

GENERATOR_VARIANTS = ("dw", "std")
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024  # powers of two; the fc output and the last D map are 4 x 4
MAX_CHANNEL_MULT = 16


def n_blocks(resolution: int) -> int:
    """Up-blocks of G (= down-blocks of D) for ``resolution``: log2(R/4); TinyGANError unless R is a power of
    two in 8-1024."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution & (resolution - 1)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise TinyGANError(f"resolution must be a power of two in {MIN_RESOLUTION}-{MAX_RESOLUTION}, "
                           f"got {resolution!r}")
    return resolution.bit_length() - 3


def d_channel_mults(resolution: int) -> list[int]:
    """Channel multipliers of the discriminator convs: 1, 2, 4, 8, 16, 16, ... (one per down-block)."""
    return [min(2 ** i, MAX_CHANNEL_MULT) for i in range(n_blocks(resolution))]


def g_channel_mults(resolution: int) -> list[int]:
    """Channel multipliers of the generator: the fc output, then each up-block's output. The block outputs
    are the discriminator's in reverse (ending at 1); the fc matches the first block: (16, 16, 8, 4, 2, 1)
    at 128 px."""
    blocks = d_channel_mults(resolution)[::-1]
    return [blocks[0]] + blocks


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (align_corners=False, as F.interpolate's default)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d without affine parameters, then a per-sample gain and bias from the class embedding.

    out = gain * BN(h) + bias, with [gain, bias] = Linear(emb_dim -> 2C)(emb).
    The linear starts with zero weight and bias [1,...,1, 0,...,0], so gain = 1 and bias = 0 at init
    for every class (identity affine). Same parametrisation as the official TinyGAN code.
    """

    def __init__(self, num_features: int, emb_dim: int):
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.embed = nn.Linear(emb_dim, 2 * num_features)
        nn.init.zeros_(self.embed.weight)
        with torch.no_grad():
            self.embed.bias[:num_features].fill_(1.0)
            self.embed.bias[num_features:].fill_(0.0)

    def forward(self, h: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        assert emb is not None, "ConditionalBatchNorm2d needs the class embedding"
        gain, bias = self.embed(emb).chunk(2, dim=1)
        return gain[:, :, None, None] * self.bn(h) + bias[:, :, None, None]

    def forward_relu(self, h: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        """relu(forward(h, emb)), the training fast path's way (cbn_relu.norm_relu: fused on CPU)."""
        assert emb is not None, "ConditionalBatchNorm2d needs the class embedding"
        gain, bias = self.embed(emb).chunk(2, dim=1)
        return norm_relu(self.bn, h, gain, bias)


class PlainBatchNorm2d(nn.Module):
    """The unconditional generator's norm: an affine BatchNorm2d, called like ConditionalBatchNorm2d (the
    embedding argument is ignored)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm2d(num_features)

    def forward(self, h: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        return self.bn(h)

    def forward_relu(self, h: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        """relu(forward(h)), the training fast path's way (cbn_relu.norm_relu: fused on CPU)."""
        return norm_relu(self.bn, h)


def make_norm(num_features: int, emb_dim: int, conditional: bool) -> nn.Module:
    """ConditionalBatchNorm2d for a class-conditional generator, else PlainBatchNorm2d."""
    return ConditionalBatchNorm2d(num_features, emb_dim) if conditional else PlainBatchNorm2d(num_features)


def sep_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depthwise 3x3 (in_ch groups) followed by pointwise 1x1 (in_ch -> out_ch); both with bias."""
    dw = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch)
    pw = nn.Conv2d(in_ch, out_ch, 1)
    # official TinyGAN init
    nn.init.xavier_uniform_(dw.weight, gain=math.sqrt(2))
    nn.init.xavier_uniform_(pw.weight, gain=1.0)
    return nn.Sequential(dw, pw)


def std_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    """Standard 3x3 conv with bias (the TinyGAN-std replacement of a depthwise+pointwise pair)."""
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
    nn.init.xavier_uniform_(conv.weight, gain=1.0)
    return conv


class GBlock(nn.Module):
    """Residual up-block: CBN-ReLU-up-conv-CBN-ReLU-conv, plus up-1x1conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, variant: str, conditional: bool = True):
        super().__init__()
        make_conv = sep_conv if variant == "dw" else std_conv
        self.cbn0 = make_norm(in_ch, emb_dim, conditional)
        self.conv0 = make_conv(in_ch, out_ch)
        self.cbn1 = make_norm(out_ch, emb_dim, conditional)
        self.conv1 = make_conv(out_ch, out_ch)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)
        nn.init.xavier_uniform_(self.shortcut.weight, gain=1.0)
        self.fast = False  # training speed only: see set_fast_training

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.fast and self.training:  # (TorchScript: the official order)
            return self._forward_fast(x, emb)
        h = self.conv0(upsample2x(F.relu(self.cbn0(x, emb))))
        h = self.conv1(F.relu(self.cbn1(h, emb)))
        return h + self.shortcut(upsample2x(x))

    def _forward_fast(self, x: torch.Tensor, emb: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.conv0(upsample2x(self.cbn0.forward_relu(x, emb)))
        h = self.conv1(self.cbn1.forward_relu(h, emb))
        # the 1x1 conv commutes with bilinear upsampling (both linear; the bilinear weights of every output
        # pixel sum to 1, so the bias passes through): the same math at a quarter of the pixels
        return h + upsample2x(self.shortcut(x))


class Generator(nn.Module):
    """TinyGAN student: forward(z [N,z_dim] float, y [N] int64) -> image [N,3,R,R] in (-1, 1), R = resolution.

    ``n_classes`` = 0 makes it unconditional: forward ignores y (None or any tensor)."""

    def __init__(
        self,
        variant: str = "dw",
        ch: int = 32,
        n_classes: int = N_CLASSES,
        z_dim: int = Z_DIM,
        emb_dim: int = 128,
        resolution: int = RESOLUTION,
    ):
        super().__init__()
        if variant not in GENERATOR_VARIANTS:
            raise TinyGANError(
                f"unknown generator variant {variant!r}; use one of {list(GENERATOR_VARIANTS)}"
            )
        _check_sizes("generator", ch=ch, z_dim=z_dim, emb_dim=emb_dim)
        _check_sizes("generator", minimum=0, n_classes=n_classes)
        channels = [m * ch for m in g_channel_mults(resolution)]
        # everything needed to rebuild this module (export, checkpoints)
        self.config = dict(variant=variant, ch=ch, n_classes=n_classes, z_dim=z_dim, emb_dim=emb_dim,
                           resolution=resolution)
        self.c0 = channels[0]
        self.s0 = 4  # spatial size after fc

        self.embedding = nn.Embedding(n_classes, emb_dim) if n_classes else None
        self.fc = nn.Linear(z_dim, self.c0 * self.s0 * self.s0)
        self.blocks = nn.ModuleList(
            [GBlock(channels[i], channels[i + 1], emb_dim, variant, n_classes > 0)
             for i in range(len(channels) - 1)]
        )
        self.bn = nn.BatchNorm2d(channels[-1])
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)
        self.fast = False  # training speed only: see set_fast_training

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb: Optional[torch.Tensor] = None
        if self.embedding is not None:
            if y is None:
                raise TinyGANError("a class-conditional generator needs the labels y (n_classes > 0)")
            emb = self.embedding(y)
        h = self.fc(z).unflatten(1, (self.c0, self.s0, self.s0))
        for block in self.blocks:
            h = block(h, emb)
        if not torch.jit.is_scripting() and self.fast and self.training:  # (TorchScript: the official order)
            h = norm_relu(self.bn, h)
        else:
            h = F.relu(self.bn(h))
        return torch.tanh(self.to_rgb(h))


def set_fast_training(G: nn.Module, on: bool = True) -> nn.Module:
    """Speed of ``G`` in training mode, the same function up to float rounding (tests/test_models.py): each
    up-block's shortcut runs as 1x1 conv then upsampling (a quarter of its MACs), and each norm with its ReLU
    runs as ``cbn_relu.norm_relu`` (one fused kernel on CPU; else the CBN affine as one addcmul and the ReLU in
    place). Eval mode (sampling, export, MAC counts) keeps the official order of operations."""
    for m in G.modules():
        if isinstance(m, (Generator, GBlock)):
            m.fast = on
    return G


def _check_sizes(owner: str, minimum: int = 1, **sizes) -> None:
    """TinyGANError unless every size is an integer >= ``minimum``."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise TinyGANError(f"{owner} {name} must be {kind}, got {value!r}")


class SpectralNorm(nn.Module):
    """Weight parametrization W -> W / sigma(W) (Miyato et al. 2018), for parametrize.register_parametrization.

    sigma is the largest singular value of W viewed as [out, -1], estimated by power iteration: one step
    per forward in training mode, none in eval mode; u and v are buffers (saved in the state dict).
    Unlike torch.nn.utils.parametrizations.spectral_norm, sigma is computed in float32 with autocast
    off, so bf16/fp16 autocast neither fails on mixed dtypes (torch.vdot) nor rounds sigma.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        w = weight.detach().float().flatten(1)
        self.register_buffer("u", F.normalize(torch.randn(w.shape[0], device=w.device), dim=0, eps=eps))
        self.register_buffer("v", F.normalize(torch.randn(w.shape[1], device=w.device), dim=0, eps=eps))
        self._power_iteration(w, 15)  # start from a good estimate, as torch does

    @torch.no_grad()
    def _power_iteration(self, w: torch.Tensor, n: int) -> None:
        # in-place updates so DDP's buffer broadcast and state_dict see the new vectors
        for _ in range(n):
            self.u.copy_(F.normalize(torch.mv(w, self.v), dim=0, eps=self.eps))
            self.v.copy_(F.normalize(torch.mv(w.t(), self.u), dim=0, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = weight.float().flatten(1)
            if self.training:
                self._power_iteration(w, self.n_power_iterations)
            # clone: u/v change in place on the next forward, while this graph may still need them
            u, v = self.u.clone(), self.v.clone()
            sigma = torch.dot(u, torch.mv(w, v))
            return weight / sigma


def spectral_norm(module: nn.Module) -> nn.Module:
    """Register SpectralNorm on ``module.weight`` (stored as ``parametrizations.weight.original``)."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight))
    return module


class Discriminator(nn.Module):
    """Projection discriminator with spectral norm.

    forward(x [N,3,R,R], y [N] int64) -> (logit [N], feats: the log2(R/4) post-LeakyReLU maps, 5 at 128 px).
    ``n_classes`` = 0 makes it unconditional: no projection term, y is ignored (None or any tensor).
    Spectral norm is the SpectralNorm parametrization above: the raw weight is stored as
    ``<layer>.parametrizations.weight.original`` and the power-iteration vectors ``u``/``v`` are buffers.
    """

    def __init__(self, ch: int = 32, n_classes: int = N_CLASSES, resolution: int = RESOLUTION):
        super().__init__()
        _check_sizes("discriminator", ch=ch)
        _check_sizes("discriminator", minimum=0, n_classes=n_classes)
        channels = [3] + [m * ch for m in d_channel_mults(resolution)]
        self.config = dict(ch=ch, n_classes=n_classes, resolution=resolution)
        self.convs = nn.ModuleList(
            [spectral_norm(nn.Conv2d(channels[i], channels[i + 1], 4, stride=2, padding=1))
             for i in range(len(channels) - 1)]
        )
        self.linear = spectral_norm(nn.Linear(channels[-1], 1))
        self.embedding = spectral_norm(nn.Embedding(n_classes, channels[-1])) if n_classes else None

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.01)
            feats.append(h)
        h = h.sum(dim=(2, 3))
        logit = self.linear(h).squeeze(1)
        if self.embedding is not None:
            if y is None:
                raise TinyGANError("a class-conditional discriminator needs the labels y (n_classes > 0)")
            logit = logit + (h * self.embedding(y)).sum(dim=1)
        return logit, feats


class EMA:
    """Exponential moving average of a generator's parameters; ``module`` is the averaged copy (eval mode, no
    grad) for sampling, and its state dict loads straight into a fresh model of the same config (that is what
    checkpoints hold). Buffers such as BN running stats are copied, not averaged.

    Each update is one ``torch._foreach_lerp_`` (shadow = lerp(shadow, param, 1 - decay)): the bits of
    ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``, which earlier versions used, without
    its counter that the host reads back at every update (a GPU sync per training step)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay <= 1.0:
            raise TinyGANError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.module = deepcopy(model).eval().requires_grad_(False)  # the shadow starts at the weights

    @torch.no_grad()
    def update(self, model: nn.Module, copy: bool = False) -> None:
        """Move the shadow towards ``model`` (a plain module, not a DDP wrapper); ``copy=True`` makes it an exact
        copy instead (before ``train.ema_start``)."""
        shadow = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if copy:
            torch._foreach_copy_(shadow, params)
        else:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        for b_shadow, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_shadow.copy_(b)


def save_weights(module: nn.Module, path, config: dict) -> None:
    """``module``'s state dict as safetensors (no pickle), with ``config`` as the one metadata entry (one key,
    sorted JSON: safetensors writes metadata in hash-map order, so several keys would make the bytes vary).
    Serialised in memory, then written atomically by ``tinygan.io.write_bytes`` (so a full disk is one line)."""
    from safetensors.torch import save

    from tinygan.io import write_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_bytes(path, save(state, metadata={"config": json.dumps(config, sort_keys=True)}))
