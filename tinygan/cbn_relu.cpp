// Training-mode (conditional) batch norm followed by ReLU, fused for the CPU (tinygan/cbn_relu.py builds and
// calls this). y = relu(gain[n,c] * (x - mean[c]) * rstd[c] + bias[n,c]) with the batch statistics of x.
//
// Eager PyTorch runs this as batch_norm -> addcmul -> relu: 7 passes over the activation forward and about 14
// backward. Here the forward is 3 (statistics, then one read and one write) and the backward 5 (one reading pass
// for the sums, then one reading dy and x and writing dx). The ReLU mask is recomputed from x with the same
// float expression as the forward (compiled with -ffp-contract=off, so both give the same bits), so only x is
// kept for the backward.
//
// x and dy: float32 [N, C, H, W] in channels_last memory ([N][H*W][C]); gain, bias: float32 [N, C] contiguous.
// Sums run per sample in a fixed order (float within blocks of 64 pixels, double across blocks and samples), so
// the results do not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 64;  // pixels summed in float before the double accumulators take the block

void check(const torch::Tensor& x, const torch::Tensor& gain, const torch::Tensor& bias) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32 && x.device().is_cpu(),
              "cbn_relu: x must be a float32 CPU tensor [N, C, H, W]");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "cbn_relu: x must be channels_last");
  for (const auto* t : {&gain, &bias}) {
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->dim() == 2 &&
                    t->size(0) == x.size(0) && t->size(1) == x.size(1),
                "cbn_relu: gain and bias must be contiguous float32 [N, C]");
  }
}

// per-sample scale and shift: relu(x * scale + shift) is the layer's output for sample n
void scale_shift(int64_t n, int64_t C, const float* gain, const float* bias, const float* mean, const float* rstd,
                 float* scale, float* shift) {
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = gain[n * C + c] * rstd[c];
    shift[c] = bias[n * C + c] - mean[c] * scale[c];
  }
}

// Chan et al.: (count_a, mean_a, m2_a) += (count_b, mean_b, m2_b), per channel
template <typename T>
void merge(int64_t C, double count_a, double* mean_a, double* m2_a, double count_b, const T* mean_b, const T* m2_b) {
  const double total = count_a + count_b;
  for (int64_t c = 0; c < C; ++c) {
    const double delta = static_cast<double>(mean_b[c]) - mean_a[c];
    mean_a[c] += delta * count_b / total;
    m2_a[c] += static_cast<double>(m2_b[c]) + delta * delta * count_a * count_b / total;
  }
}

}  // namespace

// returns y (channels_last), mean [C], rstd [C] (1/sqrt(biased var + eps)), unbiased var [C]
std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor gain, torch::Tensor bias, double eps) {
  check(x, gain, bias);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  TORCH_CHECK(N * HW > 1, "cbn_relu: batch norm needs more than one value per channel");
  const float* xp = x.data_ptr<float>();
  // per sample: mean and sum of squared deviations (each block of pixels in two passes while it is in cache,
  // blocks and then samples merged with Chan et al.'s formula), so a large mean costs no precision
  auto part = torch::empty({N, 2, C}, torch::TensorOptions().dtype(torch::kFloat64));
  double* pp = part.data_ptr<double>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> bm(C), bq(C);
    for (int64_t n = begin; n < end; ++n) {
      double* mean_n = pp + n * 2 * C;
      double* m2_n = mean_n + C;
      std::fill(mean_n, mean_n + 2 * C, 0.0);
      const float* xn = xp + n * HW * C;
      for (int64_t i0 = 0; i0 < HW; i0 += kBlock) {
        const int64_t i1 = std::min(HW, i0 + kBlock), cnt = i1 - i0;
        std::fill(bm.begin(), bm.end(), 0.f);
        std::fill(bq.begin(), bq.end(), 0.f);
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t c = 0; c < C; ++c) bm[c] += xn[i * C + c];
        }
        for (int64_t c = 0; c < C; ++c) bm[c] /= static_cast<float>(cnt);
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t c = 0; c < C; ++c) {
            const float d = xn[i * C + c] - bm[c];
            bq[c] += d * d;
          }
        }
        merge(C, static_cast<double>(i0), mean_n, m2_n, static_cast<double>(cnt), bm.data(), bq.data());
      }
    }
  });
  auto mean = torch::empty({C}, x.options()), rstd = torch::empty({C}, x.options());
  auto var_unbiased = torch::empty({C}, x.options());
  float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>(), *vp = var_unbiased.data_ptr<float>();
  std::vector<double> mean_all(C, 0.0), m2_all(C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    merge(C, static_cast<double>(n * HW), mean_all.data(), m2_all.data(), static_cast<double>(HW),
          pp + n * 2 * C, pp + n * 2 * C + C);
  }
  const double M = static_cast<double>(N) * HW;
  for (int64_t c = 0; c < C; ++c) {
    const double v = m2_all[c] / M;
    mp[c] = static_cast<float>(mean_all[c]);
    rp[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
    vp[c] = static_cast<float>(m2_all[c] / (M - 1));
  }
  auto y = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  float* yp = y.data_ptr<float>();
  const float *gp = gain.data_ptr<float>(), *bp = bias.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sc(C), sh(C);
    for (int64_t n = begin; n < end; ++n) {
      scale_shift(n, C, gp, bp, mp, rp, sc.data(), sh.data());
      const float* xn = xp + n * HW * C;
      float* yn = yp + n * HW * C;
      for (int64_t i = 0; i < HW; ++i) {
        const float* r = xn + i * C;
        float* o = yn + i * C;
        for (int64_t c = 0; c < C; ++c) {
          const float v = r[c] * sc[c] + sh[c];
          o[c] = v > 0.f ? v : 0.f;
        }
      }
    }
  });
  return {y, mean, rstd, var_unbiased};
}

// returns dx (channels_last), dgain [N, C], dbias [N, C]
std::vector<torch::Tensor> backward(torch::Tensor dy, torch::Tensor x, torch::Tensor gain, torch::Tensor bias,
                                    torch::Tensor mean, torch::Tensor rstd) {
  check(x, gain, bias);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == torch::kFloat32 &&
                  dy.is_contiguous(at::MemoryFormat::ChannelsLast),
              "cbn_relu: dy must be float32 channels_last of x's shape");
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const float *xp = x.data_ptr<float>(), *dp = dy.data_ptr<float>();
  const float *gp = gain.data_ptr<float>(), *bp = bias.data_ptr<float>();
  const float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
  // pass 1: per sample and channel, the sums of g = dy * relu'(.) and of g * (x - mean)
  auto part = torch::empty({N, 2, C}, torch::TensorOptions().dtype(torch::kFloat64));
  double* pp = part.data_ptr<double>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sc(C), sh(C), f1(C), f2(C);
    for (int64_t n = begin; n < end; ++n) {
      scale_shift(n, C, gp, bp, mp, rp, sc.data(), sh.data());
      double* s1 = pp + n * 2 * C;
      double* s2 = s1 + C;
      std::fill(s1, s1 + 2 * C, 0.0);
      const float* xn = xp + n * HW * C;
      const float* dn = dp + n * HW * C;
      for (int64_t i0 = 0; i0 < HW; i0 += kBlock) {
        std::fill(f1.begin(), f1.end(), 0.f);
        std::fill(f2.begin(), f2.end(), 0.f);
        for (int64_t i = i0, i1 = std::min(HW, i0 + kBlock); i < i1; ++i) {
          const float* r = xn + i * C;
          const float* d = dn + i * C;
          for (int64_t c = 0; c < C; ++c) {
            const float g = (r[c] * sc[c] + sh[c]) > 0.f ? d[c] : 0.f;
            f1[c] += g;
            f2[c] += g * (r[c] - mp[c]);
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          s1[c] += f1[c];
          s2[c] += f2[c];
        }
      }
    }
  });
  // dbias = sum g; dgain = sum g * xhat; then dx = a[n,c] * g + b[c] * (x - mean) + k[c] (batch norm's backward)
  auto dgain = torch::empty({N, C}, x.options()), dbias = torch::empty({N, C}, x.options());
  float *dgp = dgain.data_ptr<float>(), *dbp = dbias.data_ptr<float>();
  std::vector<double> A(C, 0.0), B(C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const double s1 = pp[n * 2 * C + c], s2 = pp[n * 2 * C + C + c];
      const double dg = rp[c] * s2;
      dgp[n * C + c] = static_cast<float>(dg);
      dbp[n * C + c] = static_cast<float>(s1);
      A[c] += gp[n * C + c] * s1;  // sum over the batch of d(xhat)
      B[c] += gp[n * C + c] * dg;  // sum over the batch of d(xhat) * xhat
    }
  }
  const double M = static_cast<double>(N) * HW;
  std::vector<float> bx(C), k(C);
  for (int64_t c = 0; c < C; ++c) {
    const double r = rp[c], a = A[c] / M, b = B[c] / M;
    bx[c] = static_cast<float>(-r * r * b);
    k[c] = static_cast<float>(-r * a);
  }
  auto dx = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  float* dxp = dx.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sc(C), sh(C);
    for (int64_t n = begin; n < end; ++n) {
      scale_shift(n, C, gp, bp, mp, rp, sc.data(), sh.data());
      const float* xn = xp + n * HW * C;
      const float* dn = dp + n * HW * C;
      float* on = dxp + n * HW * C;
      for (int64_t i = 0; i < HW; ++i) {
        const float* r = xn + i * C;
        const float* d = dn + i * C;
        float* o = on + i * C;
        for (int64_t c = 0; c < C; ++c) {
          const float g = (r[c] * sc[c] + sh[c]) > 0.f ? d[c] : 0.f;
          o[c] = sc[c] * g + bx[c] * (r[c] - mp[c]) + k[c];
        }
      }
    }
  });
  return {dx, dgain, dbias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused batch norm (batch statistics) + per-sample affine + ReLU, forward");
  m.def("backward", &backward, "its backward: (dx, dgain, dbias)");
}
