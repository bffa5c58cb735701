"""TinyGAN distillation losses (paper Eq. 1-7) and training schedules.

Notation: T = teacher image T(z, y); S = student image S(z, y) on the same (z, y);
F = student image S(z', y_r) on fresh noise and the label of a real image x_real.

    L_S = w_feat * L_KD_feat + lambda_pix * L_KD_pix + lambda_kd_s * L_KD_S + lambda_gan_s * L_GAN_S
          [+ lambda_dime * L_DiME]   (NICKEL & DiME, Ramesh et al.: MMD^2 between frozen embeddings of T and S)
    L_D = w_kd_d * L_KD_D + lambda_gan_d * L_GAN_D

Term names used in the weight/term dicts:
    generator:      "kd_feat", "kd_pix", "kd_s", "gan_s", "dime"
    discriminator:  "kd_d", "gan_d"
A term with weight 0 is not computed (and so contributes no gradient). The forward passes each term
needs — use ``generator_terms`` / ``discriminator_terms`` to get exactly these and no more:
    kd_pix   S, T                   (no D call)
    kd_feat  D(S), D(T) no grad     (or the teacher features kept from the D step)
    kd_s     D(S)
    gan_s    D(F)
    dime     E(S), E(T) no grad     (E: a frozen image encoder, not D)
    kd_d     D(T), D(S.detach())
    gan_d    D(x_real), D(F.detach())
So the D forward on teacher images is skipped when w_feat == 0 and w_kd_d == 0, and the discriminator
is not needed at all when kd_feat, kd_s, gan_s, kd_d and gan_d all weigh 0 ("L_KD_pix alone").

Losses are computed in float32 (inputs are upcast), so they are safe under bf16 autocast.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from tinygan.errors import TinyGANError

G_TERMS = ("kd_feat", "kd_pix", "kd_s", "gan_s", "dime")
D_TERMS = ("kd_d", "gan_d")


def feat_alphas(k: int) -> tuple[float, ...]:
    """Default kd_feat weights for ``k`` discriminator maps: 1 for the last, 2^-(k-i) for map i < k-1 (the paper's
    1/32, 1/16, 1/8, 1/4, 1 for the 5 maps of a 128² discriminator)."""
    return tuple(2.0 ** -(k - i) for i in range(k - 1)) + (1.0,)

# A discriminator: (images [N,3,H,W], labels [N]) -> (logits [N], list of feature maps)
DiscriminatorFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, list[torch.Tensor]]"]
# An image encoder with the Inception call signature: (images [N,3,H,W] in [0,255], return_features=True) -> [N,d]
EncoderFn = Callable[..., torch.Tensor]
MMD_KERNELS = ("gaussian", "polynomial")


# ---------------------------------------------------------------------------------------------------
# individual terms


def kd_pix(s_img: torch.Tensor, t_img: torch.Tensor) -> torch.Tensor:
    """L_KD_pix = mean |T - S| (Eq. 1). The teacher image is a constant."""
    return (t_img.detach().float() - s_img.float()).abs().mean()


def kd_feat(
    d_feats_student: Sequence[torch.Tensor],
    d_feats_teacher: Sequence[torch.Tensor],
    alphas: Sequence[float] | None = None,
) -> torch.Tensor:
    """L_KD_feat = sum_i alpha_i * mean |D_i(T) - D_i(S)| (Eq. 2); teacher features are detached.
    ``alphas`` defaults to ``feat_alphas`` of the number of maps."""
    alphas = feat_alphas(len(d_feats_student)) if alphas is None else alphas
    if not (len(d_feats_student) == len(d_feats_teacher) == len(alphas)):
        raise TinyGANError(
            f"kd_feat needs one alpha per discriminator feature map: got {len(alphas)} alphas, "
            f"{len(d_feats_student)} student and {len(d_feats_teacher)} teacher maps"
        )
    total = None
    for a, fs, ft in zip(alphas, d_feats_student, d_feats_teacher):
        if a == 0:
            continue
        term = a * (ft.detach().float() - fs.float()).abs().mean()
        total = term if total is None else total + term
    if total is None:
        raise TinyGANError("kd_feat: all feature weights (alphas) are 0; set w_feat = 0 instead")
    return total


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances [len(a), len(b)] by |a|^2 + |b|^2 - 2 a.b, clamped at 0: finite
    gradients also where two rows coincide (torch.cdist's sqrt has none at 0)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.t()
    return d.clamp_min(0.0)


@torch.no_grad()
def median_bandwidth(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The median heuristic: the median of the squared distances between distinct rows of the joint set
    [a; b] (each unordered pair once, the zero self-distances left out; the lower middle value for an even
    count, as torch.median); no gradient flows through it."""
    x = torch.cat([a, b]).float()
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    return _sq_dists(x, x)[i, j].median()


def mmd2(a: torch.Tensor, b: torch.Tensor, kernel: str = "gaussian",
         bandwidth: float | torch.Tensor | None = None) -> torch.Tensor:
    """Squared MMD between feature batches a [N,d] and b [M,d], the biased V-statistic
    mean k(a,a') + mean k(b,b') - 2 mean k(a,b) (self-pairs included), in float32.

    Biased, as in MMD-GAN training (Li et al. 2017): it is the squared RKHS distance of the two empirical mean
    embeddings, so it is >= 0, exactly 0 for identical batches, and of lower variance than the unbiased
    U-statistic (which can go negative; KID in tinygan.metrics is that one). The price is a bias of
    (E k(x,x) - E k(x,x')) / N per side: a slight O(1/N) reward for less spread-out batches.
    kernel "gaussian": k(x,y) = exp(-|x-y|^2 / h), h = ``bandwidth`` or the median heuristic
    (``median_bandwidth``); "polynomial": KID's k(x,y) = (x.y/d + 1)^3 (``bandwidth`` unused).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 1:
        raise TinyGANError(f"mmd2 needs two non-empty feature batches [N,d] of the same width, got "
                           f"{tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.float(), b.float()
    if kernel == "gaussian":
        h = (median_bandwidth(a, b) if bandwidth is None
             else torch.as_tensor(bandwidth, dtype=torch.float32, device=a.device))
        h = h.clamp_min(torch.finfo(torch.float32).tiny)  # all rows equal: every distance 0, k = 1

        def k(x, y):
            return torch.exp(-_sq_dists(x, y) / h)
    elif kernel == "polynomial":
        d = a.shape[1]

        def k(x, y):
            return (x @ y.t() / d + 1.0) ** 3
    else:
        raise TinyGANError(f"unknown MMD kernel {kernel!r}: use one of {', '.join(MMD_KERNELS)}")
    return k(a, a).mean() + k(b, b).mean() - 2.0 * k(a, b).mean()


def to_pixel_range(img: torch.Tensor) -> torch.Tensor:
    """Generator images in [-1, 1] -> float images in [0, 255], the range of the uint8 images extractors take,
    without rounding, so gradients flow through the encoder's input."""
    return (img.float() + 1.0) * 127.5


def dime(encoder: EncoderFn, s_img: torch.Tensor, t_img: torch.Tensor, kernel: str = "gaussian") -> torch.Tensor:
    """L_DiME = MMD^2(E(S), E(T)) (``mmd2``) on the same (z, y) batch; E is frozen, the teacher side is computed
    without gradient. Images go in as ``to_pixel_range`` floats."""
    with torch.no_grad():
        t_feat = encoder(to_pixel_range(t_img.detach()), return_features=True)
    s_feat = encoder(to_pixel_range(s_img), return_features=True)
    return mmd2(s_feat, t_feat.detach(), kernel)


def _generator_hinge(d_logit: torch.Tensor) -> torch.Tensor:
    return -d_logit.float().mean()


def _discriminator_hinge(d_logit_real: torch.Tensor, d_logit_fake: torch.Tensor) -> torch.Tensor:
    return torch.relu(1.0 - d_logit_real.float()).mean() + torch.relu(1.0 + d_logit_fake.float()).mean()


def kd_s(d_logit_student: torch.Tensor) -> torch.Tensor:
    """L_KD_S = -mean D(S(z, y), y) (Eq. 3, generator side)."""
    return _generator_hinge(d_logit_student)


def kd_d(d_logit_teacher: torch.Tensor, d_logit_student: torch.Tensor) -> torch.Tensor:
    """L_KD_D = mean relu(1 - D(T)) + mean relu(1 + D(S)) (Eq. 4, hinge; teacher images count as real)."""
    return _discriminator_hinge(d_logit_teacher, d_logit_student)


def gan_s(d_logit_fake: torch.Tensor) -> torch.Tensor:
    """L_GAN_S = -mean D(S(z', y_r), y_r) (Eq. 5, generator side)."""
    return _generator_hinge(d_logit_fake)


def gan_d(d_logit_real: torch.Tensor, d_logit_fake: torch.Tensor) -> torch.Tensor:
    """L_GAN_D = mean relu(1 - D(x_real)) + mean relu(1 + D(S(z', y_r))) (Eq. 6, hinge)."""
    return _discriminator_hinge(d_logit_real, d_logit_fake)


# ---------------------------------------------------------------------------------------------------
# weights and weighted sums


def generator_weights(
    lambda_pix: float,
    lambda_kd_s: float,
    lambda_gan_s: float,
    w_feat: float = 1.0,
    adversarial: bool = True,
    lambda_dime: float = 0.0,
) -> dict[str, float]:
    """Weights of L_S for one G update. ``adversarial=False`` zeroes kd_s and gan_s (the official code
    adds the adversarial terms only every 5th iteration, see ``adversarial_g_step``).

    Official values: lambda_pix = lambda_pix_at(epoch), lambda_kd_s = 0.01, lambda_gan_s = 0.002.
    Paper Table-2 ablations: "without L_KD_feat": w_feat=0; "without L_KD_S and L_KD_D": lambda_kd_s=0
    (and w_kd_d=0 in discriminator_weights); "without L_GAN": lambda_gan_s=0, lambda_gan_d=0;
    "L_KD_pix alone": everything but lambda_pix 0. ``lambda_dime`` weighs L_DiME (``dime``; 0 = off).
    """
    return {
        "kd_feat": float(w_feat),
        "kd_pix": float(lambda_pix),
        "kd_s": float(lambda_kd_s) if adversarial else 0.0,
        "gan_s": float(lambda_gan_s) if adversarial else 0.0,
        **({"dime": float(lambda_dime)} if lambda_dime else {}),  # off: absent, as before L_DiME existed
    }


def discriminator_weights(lambda_gan_d: float, w_kd_d: float = 1.0) -> dict[str, float]:
    """Weights of L_D. Official: w_kd_d = 1, lambda_gan_d = 0.2."""
    return {"kd_d": float(w_kd_d), "gan_d": float(lambda_gan_d)}


def active(weights: Mapping[str, float]) -> set[str]:
    """Names of the terms with a non-zero weight (the ones to compute)."""
    return {name for name, w in weights.items() if w != 0}


def _weighted_sum(
    terms: Mapping[str, torch.Tensor | None], weights: Mapping[str, float], names: Sequence[str], who: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    unknown = set(weights) - set(names)
    if unknown:
        raise TinyGANError(f"{who} loss: unknown weight names {sorted(unknown)}; known: {list(names)}")
    total = None
    logs: dict[str, torch.Tensor] = {}
    for name in names:
        w = float(weights.get(name, 0.0))
        if w == 0:
            continue  # not computed, no gradient
        term = terms.get(name)
        if term is None:
            raise TinyGANError(f"{who} loss: term {name!r} has weight {w} but was not computed")
        logs[name] = term.detach()
        total = w * term if total is None else total + w * term
    if total is None:
        raise TinyGANError(f"{who} loss: every weight is 0, so there is nothing to optimise; skip this update")
    logs["total"] = total.detach()
    return total, logs


def generator_loss(
    terms: Mapping[str, torch.Tensor | None], lam: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_S = sum of lam[name] * terms[name] over G_TERMS with non-zero weight.

    Returns (total, logs): logs maps each computed term and "total" to a detached scalar tensor
    (call .item() when logging, to avoid a device sync every step). Terms with weight 0 may be missing.
    """
    return _weighted_sum(terms, lam, G_TERMS, "generator")


def discriminator_loss(
    terms: Mapping[str, torch.Tensor | None], lam: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_D = sum of lam[name] * terms[name] over D_TERMS ("kd_d", "gan_d") with non-zero weight."""
    return _weighted_sum(terms, lam, D_TERMS, "discriminator")


# ---------------------------------------------------------------------------------------------------
# compute exactly the terms that are needed


def _require(x: torch.Tensor | None, arg: str, term: str) -> torch.Tensor:
    if x is None:
        raise TinyGANError(f"loss term {term!r} has a non-zero weight but {arg} was not given")
    return x


def discriminator_terms(
    D: DiscriminatorFn,
    weights: Mapping[str, float],
    y: torch.Tensor,
    s_img: torch.Tensor | None = None,
    t_img: torch.Tensor | None = None,
    real_img: torch.Tensor | None = None,
    y_real: torch.Tensor | None = None,
    fake_img: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
    """Terms of L_D for ``weights`` with one D forward over all images needed (batched: D has no
    batch-dependent layers, so this equals separate calls except for one power iteration instead of several).

    s_img / fake_img are detached here. y labels S and T; y_real labels x_real and F.
    Returns (terms, teacher_feats): teacher_feats are the detached D features of T when kd_d was computed
    (the official code reuses them for L_KD_feat in the following G step), else None.
    """
    need = active(weights)
    images, labels, parts = [], [], []
    if "kd_d" in need:
        images += [_require(t_img, "t_img", "kd_d"), _require(s_img, "s_img", "kd_d").detach()]
        labels += [y, y]
        parts += ["t", "s"]
    if "gan_d" in need:
        images += [_require(real_img, "real_img", "gan_d"), _require(fake_img, "fake_img", "gan_d").detach()]
        y_real = _require(y_real, "y_real", "gan_d")
        labels += [y_real, y_real]
        parts += ["real", "fake"]
    if not images:
        return {}, None
    sizes = [x.shape[0] for x in images]
    logits, feats = D(torch.cat(images), torch.cat(labels))
    logit = dict(zip(parts, logits.split(sizes)))
    terms: dict[str, torch.Tensor] = {}
    t_feats = None
    if "kd_d" in need:
        terms["kd_d"] = kd_d(logit["t"], logit["s"])
        n_t = sizes[0]
        t_feats = [f[:n_t].detach() for f in feats]
    if "gan_d" in need:
        terms["gan_d"] = gan_d(logit["real"], logit["fake"])
    return terms, t_feats


def generator_terms(
    D: DiscriminatorFn,
    weights: Mapping[str, float],
    y: torch.Tensor,
    s_img: torch.Tensor,
    t_img: torch.Tensor | None = None,
    t_feats: Sequence[torch.Tensor] | None = None,
    fake_img: torch.Tensor | None = None,
    y_fake: torch.Tensor | None = None,
    alphas: Sequence[float] | None = None,
    encoder: EncoderFn | None = None,
    dime_kernel: str = "gaussian",
) -> dict[str, torch.Tensor]:
    """Terms of L_S for ``weights``, calling D only where needed (and the frozen ``encoder`` only for dime).

    D(S) and D(F) run as one batched forward; D(T) runs under no_grad and only for kd_feat when
    ``t_feats`` (teacher features from the D step, official behaviour) is not given. The caller must keep
    D's parameters out of the G optimiser (and may set requires_grad=False on them to save work).
    """
    need = active(weights)
    terms: dict[str, torch.Tensor] = {}
    if "kd_pix" in need:
        terms["kd_pix"] = kd_pix(s_img, _require(t_img, "t_img", "kd_pix"))
    if "dime" in need:
        terms["dime"] = dime(_require(encoder, "encoder", "dime"), s_img, _require(t_img, "t_img", "dime"),
                             dime_kernel)

    images, labels = [], []
    use_s = bool(need & {"kd_feat", "kd_s"})
    if use_s:
        images.append(s_img)
        labels.append(y)
    if "gan_s" in need:
        images.append(_require(fake_img, "fake_img", "gan_s"))
        labels.append(_require(y_fake, "y_fake", "gan_s"))
    if not images:
        return terms
    logits, feats = D(torch.cat(images), torch.cat(labels))
    n_s = s_img.shape[0] if use_s else 0
    if "kd_feat" in need:
        if t_feats is None:
            with torch.no_grad():
                _, t_feats = D(_require(t_img, "t_img or t_feats", "kd_feat"), y)
        terms["kd_feat"] = kd_feat([f[:n_s] for f in feats], t_feats, alphas)
    if "kd_s" in need:
        terms["kd_s"] = kd_s(logits[:n_s])
    if "gan_s" in need:
        terms["gan_s"] = gan_s(logits[n_s:])
    return terms


# ---------------------------------------------------------------------------------------------------
# schedules


def lambda_pix_at(epoch: int, start: float = 0.2, decay: float = 0.01) -> float:
    """lambda_pix used during epoch ``epoch`` (0-based): max(0, start - decay * epoch).

    Official: 0.2 in epoch 0, lowered by 0.01 at the end of each epoch, 0 from epoch 20 on.
    """
    if epoch < 0:
        raise TinyGANError(f"epoch must be >= 0, got {epoch}")
    # round away float noise such as 0.2 - 0.01 * 3 = 0.16999999999999998
    return max(0.0, round(start - decay * epoch, 12))


def lr_at(step: int, base_lr: float, decay_start: int, total_steps: int) -> float:
    """Learning rate at 0-based iteration ``step``: ``base_lr`` before ``decay_start``, then linear to 0.

    lr = base_lr * (total_steps - step) / (total_steps - decay_start) for decay_start <= step < total_steps,
    so it equals base_lr at decay_start and would reach 0 at total_steps; 0 from total_steps on.
    If decay_start >= total_steps the rate stays constant. (The official code subtracts
    base_lr / (total - decay_start) from the rate at every iteration >= decay_start, i.e. the same line
    shifted by one iteration.)
    """
    if step < decay_start or decay_start >= total_steps:
        return float(base_lr)
    if step >= total_steps:
        return 0.0
    return float(base_lr) * (total_steps - step) / (total_steps - decay_start)


def adversarial_g_step(step: int, every: int) -> bool:
    """Whether the G update at 0-based iteration ``step`` includes the adversarial terms (kd_s, gan_s).

    True on iterations every-1, 2*every-1, ... (the official ``(i + 1) % n_critic == 0`` with n_critic = 5;
    the official i restarts at 0 every epoch, which is the same when an epoch is a multiple of ``every``
    iterations). every = 1 means every iteration.
    """
    if every < 1:
        raise TinyGANError(f"adversarial G step interval must be >= 1, got {every}")
    return (step + 1) % every == 0
