"""TinyGAN losses (paper Eq. 1-7), weight handling and schedules, on hand-checkable tensors."""
import pytest
import torch

from conftest import stand_in_encoder
from tinygan import losses as L
from tinygan.errors import TinyGANError
from tinygan.models import Discriminator


# ----------------------------------------------------------------------------- single terms


def test_kd_pix_is_mean_absolute_error():
    s = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    assert L.kd_pix(s, t).item() == pytest.approx(0.75)  # (1 + 0 + 2 + 0) / 4


def test_kd_feat_weights_deeper_maps_more():
    student = [torch.zeros(2, 3, 4, 4) for _ in range(5)]
    teacher = [torch.full((2, 3, 4, 4), float(i + 1)) for i in range(5)]
    expected = 1 / 32 * 1 + 1 / 16 * 2 + 1 / 8 * 3 + 1 / 4 * 4 + 1.0 * 5  # 6.53125
    assert L.kd_feat(student, teacher).item() == pytest.approx(expected)
    custom = L.kd_feat(student, teacher, alphas=(0, 0, 0, 0, 2.0))
    assert custom.item() == pytest.approx(10.0)


def test_kd_feat_default_weights_follow_the_number_of_maps():
    assert L.feat_alphas(5) == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # the paper's, 128² discriminator
    assert L.feat_alphas(3) == (1 / 8, 1 / 4, 1.0)
    assert L.feat_alphas(6) == (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    assert L.feat_alphas(1) == (1.0,)
    for k, expected in ((3, 1 / 8 * 1 + 1 / 4 * 2 + 1.0 * 3), (6, 1 / 64 + 2 / 32 + 3 / 16 + 4 / 8 + 5 / 4 + 6)):
        student = [torch.zeros(2, 3, 4, 4) for _ in range(k)]
        teacher = [torch.full((2, 3, 4, 4), float(i + 1)) for i in range(k)]
        assert L.kd_feat(student, teacher).item() == pytest.approx(expected)
    with pytest.raises(TinyGANError, match="one alpha per discriminator feature map"):
        L.kd_feat(student, teacher, alphas=L.feat_alphas(5))


def test_kd_feat_detaches_teacher_features():
    student = [torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(5)]
    teacher = [torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(5)]
    L.kd_feat(student, teacher).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_kd_feat_checks_lengths():
    with pytest.raises(TinyGANError):
        L.kd_feat([torch.zeros(1)] * 4, [torch.zeros(1)] * 5)
    with pytest.raises(TinyGANError):
        L.kd_feat([torch.zeros(1)] * 4, [torch.zeros(1)] * 4, alphas=L.feat_alphas(5))


def test_adversarial_terms():
    assert L.kd_s(torch.tensor([1.0, -3.0])).item() == pytest.approx(1.0)
    assert L.gan_s(torch.tensor([2.0, 4.0])).item() == pytest.approx(-3.0)
    # teacher/real [2, 0.5] -> relu(1 - x) = [0, 0.5] -> 0.25; student/fake [-2, 0.5] -> relu(1 + x) = [0, 1.5] -> 0.75
    t, s = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert L.kd_d(t, s).item() == pytest.approx(1.0)
    assert L.gan_d(t, s).item() == pytest.approx(1.0)
    assert L.gan_d(torch.tensor([3.0]), torch.tensor([-3.0])).item() == 0.0


def test_losses_are_float32_for_bf16_inputs():
    x = torch.tensor([0.5, -0.25], dtype=torch.bfloat16)
    assert L.kd_s(x).dtype == torch.float32
    assert L.kd_pix(x, x * 0).dtype == torch.float32


# ----------------------------------------------------------------------------- weighted sums


def test_generator_loss_weighted_sum():
    terms = {k: torch.tensor(v) for k, v in dict(kd_feat=2.0, kd_pix=3.0, kd_s=-1.0, gan_s=4.0).items()}
    lam = L.generator_weights(lambda_pix=0.2, lambda_kd_s=0.01, lambda_gan_s=0.002)
    total, logs = L.generator_loss(terms, lam)
    assert total.item() == pytest.approx(2.0 + 0.2 * 3.0 - 0.01 * 1.0 + 0.002 * 4.0)
    assert set(logs) == {"kd_feat", "kd_pix", "kd_s", "gan_s", "total"}
    assert not logs["total"].requires_grad


def test_discriminator_loss_weighted_sum():
    terms = {"kd_d": torch.tensor(1.5), "gan_d": torch.tensor(2.0)}
    total, logs = L.discriminator_loss(terms, L.discriminator_weights(lambda_gan_d=0.2))
    assert total.item() == pytest.approx(1.5 + 0.2 * 2.0)
    total, logs = L.discriminator_loss({"gan_d": torch.tensor(2.0)}, L.discriminator_weights(0.2, w_kd_d=0))
    assert total.item() == pytest.approx(0.4)
    assert set(logs) == {"gan_d", "total"}


def test_non_adversarial_g_step_drops_adversarial_terms():
    lam = L.generator_weights(0.2, 0.01, 0.002, adversarial=False)
    assert lam == {"kd_feat": 1.0, "kd_pix": 0.2, "kd_s": 0.0, "gan_s": 0.0}
    total, logs = L.generator_loss({"kd_feat": torch.tensor(1.0), "kd_pix": torch.tensor(1.0)}, lam)
    assert total.item() == pytest.approx(1.2)


def test_zero_weight_term_gives_no_gradient():
    only_kd_s = torch.tensor(1.0, requires_grad=True)  # reachable only through kd_s
    shared = torch.tensor(2.0, requires_grad=True)
    terms = {"kd_feat": shared * 3, "kd_pix": shared.abs(), "kd_s": L.kd_s(only_kd_s.view(1)), "gan_s": None}
    lam = L.generator_weights(lambda_pix=0.2, lambda_kd_s=0.0, lambda_gan_s=0.0)
    total, logs = L.generator_loss(terms, lam)
    total.backward()
    assert only_kd_s.grad is None
    assert shared.grad.item() == pytest.approx(3 + 0.2)
    assert "kd_s" not in logs and "gan_s" not in logs


def test_weight_errors():
    with pytest.raises(TinyGANError):  # weighted but not computed
        L.generator_loss({"kd_pix": torch.tensor(1.0)}, {"kd_pix": 1.0, "kd_feat": 1.0})
    with pytest.raises(TinyGANError):  # nothing to optimise
        L.discriminator_loss({}, {"kd_d": 0.0, "gan_d": 0.0})
    with pytest.raises(TinyGANError):  # typo in a weight name
        L.generator_loss({"kd_pix": torch.tensor(1.0)}, {"kd_pix": 1.0, "kd_fet": 1.0})


# ----------------------------------------------------------------------------- term computation


class RecordingD:
    """Wraps a discriminator and records the batch sizes it is called with."""

    def __init__(self, D):
        self.D = D
        self.calls = []

    def __call__(self, x, y):
        self.calls.append(x.shape[0])
        return self.D(x, y)


def tiny_batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.rand(n, 3, 32, 32, generator=g) * 2 - 1  # noqa: E731
    return dict(y=torch.tensor([1, 2][:n]), s=img().requires_grad_(), t=img(), real=img(),
                fake=img().requires_grad_(), y_real=torch.tensor([3, 4][:n]))


def test_generator_terms_match_direct_computation():
    torch.manual_seed(0)
    D = Discriminator(ch=4, n_classes=10).eval()  # eval: no power iteration, calls are comparable
    b = tiny_batch()
    lam = L.generator_weights(0.2, 0.01, 0.002)
    terms = L.generator_terms(D, lam, b["y"], b["s"], t_img=b["t"], fake_img=b["fake"], y_fake=b["y_real"])
    logit_s, feats_s = D(b["s"], b["y"])
    _, feats_t = D(b["t"], b["y"])
    logit_f, _ = D(b["fake"], b["y_real"])
    torch.testing.assert_close(terms["kd_pix"], L.kd_pix(b["s"], b["t"]))
    torch.testing.assert_close(terms["kd_feat"], L.kd_feat(feats_s, feats_t), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["kd_s"], L.kd_s(logit_s), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["gan_s"], L.gan_s(logit_f), rtol=1e-5, atol=1e-6)
    total, _ = L.generator_loss(terms, lam)
    total.backward()
    assert b["s"].grad is not None and b["fake"].grad is not None


def test_discriminator_terms_match_direct_computation():
    torch.manual_seed(0)
    D = Discriminator(ch=4, n_classes=10).eval()
    b = tiny_batch()
    lam = L.discriminator_weights(lambda_gan_d=0.2)
    terms, t_feats = L.discriminator_terms(D, lam, b["y"], s_img=b["s"], t_img=b["t"], real_img=b["real"],
                                           y_real=b["y_real"], fake_img=b["fake"])
    logit_t, feats_t = D(b["t"], b["y"])
    torch.testing.assert_close(terms["kd_d"], L.kd_d(logit_t, D(b["s"], b["y"])[0]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["gan_d"], L.gan_d(D(b["real"], b["y_real"])[0], D(b["fake"], b["y_real"])[0]),
                               rtol=1e-5, atol=1e-6)
    assert len(t_feats) == 5 and not any(f.requires_grad for f in t_feats)
    torch.testing.assert_close(t_feats[-1], feats_t[-1], rtol=1e-5, atol=1e-6)
    total, _ = L.discriminator_loss(terms, lam)
    total.backward()  # generator images are detached: no gradient reaches them
    assert b["s"].grad is None and b["fake"].grad is None
    # teacher feats from the D step can stand in for a fresh D(T) in the G step (official behaviour)
    g_terms = L.generator_terms(D, {"kd_feat": 1.0}, b["y"], b["s"], t_feats=t_feats)
    torch.testing.assert_close(g_terms["kd_feat"], L.kd_feat(D(b["s"], b["y"])[1], feats_t), rtol=1e-5, atol=1e-6)


def test_zero_weights_skip_discriminator_forwards():
    torch.manual_seed(0)
    D = RecordingD(Discriminator(ch=4, n_classes=10))
    b = tiny_batch()
    # "without L_KD_feat", non-adversarial step: no D call in the G step at all
    terms = L.generator_terms(D, L.generator_weights(0.2, 0.01, 0.002, w_feat=0, adversarial=False),
                              b["y"], b["s"], t_img=b["t"])
    assert D.calls == [] and set(terms) == {"kd_pix"}
    # kd_feat only: one D(S) with grad, one D(T) without
    terms = L.generator_terms(D, L.generator_weights(0.0, 0.0, 0.0), b["y"], b["s"], t_img=b["t"])
    assert D.calls == [2, 2] and set(terms) == {"kd_feat"}
    # "without L_KD_S and L_KD_D": the D step never sees teacher images
    D.calls.clear()
    terms, t_feats = L.discriminator_terms(D, L.discriminator_weights(0.2, w_kd_d=0), b["y"], s_img=b["s"],
                                           t_img=None, real_img=b["real"], y_real=b["y_real"], fake_img=b["fake"])
    assert D.calls == [4] and set(terms) == {"gan_d"} and t_feats is None
    # "L_KD_pix alone": no discriminator needed
    D.calls.clear()
    terms, _ = L.discriminator_terms(D, L.discriminator_weights(0.0, w_kd_d=0), b["y"])
    assert D.calls == [] and terms == {}


def test_missing_input_for_weighted_term_is_reported():
    D = Discriminator(ch=4, n_classes=10)
    b = tiny_batch()
    with pytest.raises(TinyGANError, match="fake_img"):
        L.generator_terms(D, {"gan_s": 1.0}, b["y"], b["s"])


# ----------------------------------------------------------------------------- L_DiME (MMD^2 of embeddings)

E4 = torch.exp(torch.tensor(-4.0))
E1 = torch.exp(torch.tensor(-1.0))


def test_median_bandwidth_is_the_median_pairwise_squared_distance():
    # joint set {0, 1, 3}: squared distances of distinct pairs 1, 9, 4 -> 4 (self-distances left out)
    assert L.median_bandwidth(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])) == 4.0
    a = torch.tensor([[0.0], [1.0]], requires_grad=True)
    assert not L.median_bandwidth(a, a).requires_grad


@pytest.mark.parametrize("kernel,expected", [
    # a = {0, 2}, b = {1, 1}; gaussian: median bandwidth of distances {4, 1, 1, 1, 1, 0} is 1,
    # so mean k(a,a') = (1 + e^-4) / 2, mean k(b,b') = 1, mean k(a,b) = e^-1
    ("gaussian", (1 + E4) / 2 + 1 - 2 * E1),
    # polynomial (x.y + 1)^3 (d = 1): mean k(a,a') = (1+1+1+125)/4 = 32, k(b,b') = 8, mean k(a,b) = (1+1+27+27)/4 = 14
    ("polynomial", torch.tensor(32.0 + 8.0 - 2 * 14.0)),
])
def test_mmd2_hand_computed(kernel, expected):
    a, b = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    torch.testing.assert_close(L.mmd2(a, b, kernel), expected)
    torch.testing.assert_close(L.mmd2(b, a, kernel), expected)  # symmetric


def test_mmd2_explicit_bandwidth():
    a, b = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    e = lambda x: torch.exp(torch.tensor(-x))  # noqa: E731
    torch.testing.assert_close(L.mmd2(a, b, bandwidth=2.0), (1 + e(2.0)) / 2 + 1 - 2 * e(0.5))


@pytest.mark.parametrize("kernel", L.MMD_KERNELS)
def test_mmd2_zero_for_identical_positive_for_shifted(kernel):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 8, generator=g)
    assert L.mmd2(a, a.clone(), kernel) == pytest.approx(0.0, abs=1e-5)  # biased V-statistic: exactly 0
    same = L.mmd2(a[:16], a[16:], kernel)  # two samples of one distribution
    shifted = L.mmd2(a[:16], a[16:] + 1.0, kernel)
    assert shifted > 0 and shifted > 3 * same >= 0


def test_mmd2_gradient_and_errors():
    a = torch.randn(4, 3, requires_grad=True)
    L.mmd2(a, torch.randn(5, 3) + 1).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    for bad in (torch.randn(4, 2), torch.randn(4)):
        with pytest.raises(TinyGANError, match="mmd2"):
            L.mmd2(torch.randn(4, 3), bad)
    with pytest.raises(TinyGANError, match="kernel"):
        L.mmd2(torch.randn(4, 3), torch.randn(4, 3), "laplace")


@pytest.mark.parametrize("kernel", L.MMD_KERNELS)
def test_generator_loss_with_dime_is_lambda_times_mmd2_of_embeddings(kernel):
    E = stand_in_encoder()
    D = RecordingD(Discriminator(ch=4, n_classes=10))
    b = tiny_batch(n=2)
    lam = L.generator_weights(0.0, 0.0, 0.0, w_feat=0.0, lambda_dime=0.5)
    terms = L.generator_terms(D, lam, b["y"], b["s"], t_img=b["t"], encoder=E, dime_kernel=kernel)
    assert D.calls == [] and set(terms) == {"dime"}
    direct = L.mmd2(E((b["s"] + 1) * 127.5, return_features=True), E((b["t"] + 1) * 127.5, return_features=True),
                    kernel)
    total, logs = L.generator_loss(terms, lam)
    torch.testing.assert_close(total, 0.5 * direct)
    torch.testing.assert_close(logs["dime"], direct.detach())
    total.backward()  # gradients flow through the float (unrounded) encoder input to the student image
    assert b["s"].grad is not None and b["s"].grad.abs().sum() > 0


def test_dime_weight_zero_is_not_computed_and_needs_no_encoder():
    D = Discriminator(ch=4, n_classes=10)
    b = tiny_batch()
    terms = L.generator_terms(D, L.generator_weights(0.2, 0.0, 0.0, w_feat=0.0), b["y"], b["s"], t_img=b["t"])
    assert set(terms) == {"kd_pix"}
    with pytest.raises(TinyGANError, match="encoder"):
        L.generator_terms(D, {"dime": 1.0}, b["y"], b["s"], t_img=b["t"])


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("epoch,expected", [(0, 0.2), (1, 0.19), (19, 0.01), (20, 0.0), (25, 0.0)])
def test_lambda_pix_schedule(epoch, expected):
    assert L.lambda_pix_at(epoch) == pytest.approx(expected, abs=1e-12)
    assert L.lambda_pix_at(epoch) >= 0.0


def test_lambda_pix_exact_and_custom():
    assert L.lambda_pix_at(3) == 0.17
    assert L.lambda_pix_at(2, start=1.0, decay=0.5) == 0.0
    with pytest.raises(TinyGANError):
        L.lambda_pix_at(-1)


def test_lr_schedule():
    base = 2e-4
    assert L.lr_at(0, base, 300, 400) == base
    assert L.lr_at(299, base, 300, 400) == base
    assert L.lr_at(300, base, 300, 400) == base
    assert L.lr_at(350, base, 300, 400) == pytest.approx(1e-4)
    assert L.lr_at(399, base, 300, 400) == pytest.approx(2e-6)
    assert L.lr_at(400, base, 300, 400) == 0.0
    assert L.lr_at(500, base, 300, 400) == 0.0
    # decay start at or past the end: constant
    assert L.lr_at(399, base, 400, 400) == base
    assert L.lr_at(1000, base, 300_000, 1000) == base


def test_adversarial_g_step_every_fifth_iteration():
    assert [s for s in range(12) if L.adversarial_g_step(s, 5)] == [4, 9]
    assert all(L.adversarial_g_step(s, 1) for s in range(5))
    with pytest.raises(TinyGANError):
        L.adversarial_g_step(0, 0)
