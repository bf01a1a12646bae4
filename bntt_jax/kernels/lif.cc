// The LIF recurrence driven by a per-step, per-channel affine map, for XLA:CPU
// (see bntt_jax/lif_kernel.py; the same function as bntt_jax.neurons.lif_affine_sequence).
//
// x [T, G, M, C] float32 (G groups of the batch, M rows of C channels each), mul and add
// [T, G, C]. Forward, per element, from u = 0:
//   u  = leak * u + (x[t] * mul[t] + add[t])    (two fused multiply-adds, as XLA emits them)
//   s[t] = u > threshold;  u -= threshold * s[t]
// Backward, from delta = 0, t = T-1 .. 0 (the reset carries no gradient):
//   delta = leak * delta + g[t] * surrogate(u_pre[t] / threshold - 1) / threshold
//   dx[t] = delta * mul[t];  dmul[t] += delta * x[t];  dadd[t] += delta
// Each element's whole time line is done by one thread on a block of rows small enough for its
// membranes (and, backward, its T pre-reset membranes, recomputed rather than stored) to stay in
// cache, so every array is read or written once per pass: XLA's scan over time streams a step's
// slice of every operand at each step instead. dmul and dadd are summed per fixed range of rows
// and the ranges added in a fixed order: deterministic whatever the threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using bntt::NumThreads;
using bntt::ParallelFor;

namespace {

enum Surrogate : int32_t { kTriangle = 0, kFastSigmoid = 1, kArctan = 2 };

struct Params {
  float leak, threshold, alpha;   // the surrogate's kind is a template argument of Backward
};

struct Shape {
  int64_t t, g, m, c;
};

constexpr int64_t kBlockFloats = 2048;  // floats of one row block: 8 KB per time step
constexpr int64_t kRanges = 32;         // fixed row ranges per group (the reduction's grain)

// Row range [r0, r1) of group g's M rows for range index r of `ranges`.
inline void RowRange(int64_t m, int64_t ranges, int64_t r, int64_t* r0, int64_t* r1) {
  *r0 = m * r / ranges;
  *r1 = m * (r + 1) / ranges;
}

// The surrogate dS/dx at x = u / threshold - 1 (bntt_jax.neurons.SURROGATES).
template <Surrogate kS>
inline float SurrogateGrad(float x, float alpha) {
  if constexpr (kS == kTriangle) {
    return alpha * std::max(0.f, 1.f - std::fabs(x));
  } else if constexpr (kS == kFastSigmoid) {
    const float d = 1.f + alpha * std::fabs(x);
    return 1.f / (d * d);
  } else {
    const float z = static_cast<float>(M_PI / 2.0) * alpha * x;
    return (alpha / 2.f) / (1.f + z * z);
  }
}

// One step for a block of `rows` rows: u <- fma(leak, u, fma(x, mul, add)); writes that (pre-reset)
// u to `out` (kSpikes false) or the spikes (kSpikes true), then resets u.
template <bool kSpikes>
inline void Step(const float* x, const float* mul, const float* add, float* u, float* out,
                 int64_t rows, int64_t c, const Params& p) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    float* ur = u + r * c;
    float* o = out + r * c;
#pragma GCC ivdep
    for (int64_t k = 0; k < c; ++k) {
      const float v = std::fma(p.leak, ur[k], std::fma(xr[k], mul[k], add[k]));
      const float spike = v > p.threshold ? 1.f : 0.f;
      o[k] = kSpikes ? spike : v;
      ur[k] = v - p.threshold * spike;
    }
  }
}

int64_t BlockRows(int64_t c) { return std::max<int64_t>(1, kBlockFloats / c); }

void Forward(const float* x, const float* mul, const float* add, float* s, const Shape& sh,
             const Params& p) {
  const int64_t ranges = std::min(kRanges, sh.m), step = sh.g * sh.m * sh.c;
  const int64_t block = BlockRows(sh.c);
  const int hw = NumThreads();
  std::vector<std::vector<float>> u(hw, std::vector<float>(block * sh.c));
  ParallelFor(sh.g * ranges, [&](int64_t item, int t) {
    const int64_t g = item / ranges;
    int64_t r0, r1;
    RowRange(sh.m, ranges, item % ranges, &r0, &r1);
    for (int64_t b = r0; b < r1; b += block) {
      const int64_t rows = std::min(block, r1 - b), off = (g * sh.m + b) * sh.c;
      std::fill(u[t].begin(), u[t].begin() + rows * sh.c, 0.f);
      for (int64_t k = 0; k < sh.t; ++k) {
        const int64_t pc = (k * sh.g + g) * sh.c;
        Step<true>(x + k * step + off, mul + pc, add + pc, u[t].data(), s + k * step + off, rows,
                   sh.c, p);
      }
    }
  });
}

template <Surrogate kS>
void Backward(const float* x, const float* mul, const float* add, const float* gs, float* dx,
              float* dmul, float* dadd, const Shape& sh, const Params& p) {
  const int64_t ranges = std::min(kRanges, sh.m), step = sh.g * sh.m * sh.c;
  const int64_t block = BlockRows(sh.c), tc = sh.t * sh.c;
  const int hw = NumThreads();
  std::vector<std::vector<float>> u(hw, std::vector<float>(block * sh.c)),
      upre(hw, std::vector<float>(sh.t * block * sh.c)), delta(hw, std::vector<float>(block * sh.c));
  // Partial sums per (group, range): [T, C] of dmul then [T, C] of dadd.
  std::vector<float> part(sh.g * ranges * 2 * tc, 0.f);
  ParallelFor(sh.g * ranges, [&](int64_t item, int t) {
    const int64_t g = item / ranges;
    int64_t r0, r1;
    RowRange(sh.m, ranges, item % ranges, &r0, &r1);
    float* pm = part.data() + item * 2 * tc;
    float* pa = pm + tc;
    for (int64_t b = r0; b < r1; b += block) {
      const int64_t rows = std::min(block, r1 - b), off = (g * sh.m + b) * sh.c, n = rows * sh.c;
      std::fill(u[t].begin(), u[t].begin() + n, 0.f);
      for (int64_t k = 0; k < sh.t; ++k) {
        const int64_t pc = (k * sh.g + g) * sh.c;
        Step<false>(x + k * step + off, mul + pc, add + pc, u[t].data(), upre[t].data() + k * n,
                    rows, sh.c, p);
      }
      float* d = delta[t].data();
      std::fill(d, d + n, 0.f);
      for (int64_t k = sh.t - 1; k >= 0; --k) {
        const int64_t pc = (k * sh.g + g) * sh.c;
        const float* xk = x + k * step + off;
        const float* gk = gs + k * step + off;
        const float* uk = upre[t].data() + k * n;
        float* dxk = dx + k * step + off;
        const float* mk = mul + pc;
        float* pmk = pm + k * sh.c;
        float* pak = pa + k * sh.c;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t o = r * sh.c;
#pragma GCC ivdep
          for (int64_t c = 0; c < sh.c; ++c) {
            const float sg = SurrogateGrad<kS>(uk[o + c] / p.threshold - 1.f, p.alpha);
            const float dv = std::fma(p.leak, d[o + c], gk[o + c] * sg / p.threshold);
            d[o + c] = dv;
            dxk[o + c] = dv * mk[c];
            pmk[c] = std::fma(dv, xk[o + c], pmk[c]);
            pak[c] += dv;
          }
        }
      }
    }
  });
  // dmul[t, g, c] = sum over the group's ranges in order (likewise dadd).
  for (int64_t k = 0; k < sh.t; ++k)
    for (int64_t g = 0; g < sh.g; ++g)
      for (int64_t c = 0; c < sh.c; ++c) {
        float sm = 0.f, sa = 0.f;
        for (int64_t r = 0; r < ranges; ++r) {
          const float* pm = part.data() + (g * ranges + r) * 2 * tc;
          sm += pm[k * sh.c + c];
          sa += pm[tc + k * sh.c + c];
        }
        dmul[(k * sh.g + g) * sh.c + c] = sm;
        dadd[(k * sh.g + g) * sh.c + c] = sa;
      }
}

ffi::Error Check(ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& mul, ffi::Buffer<ffi::F32>& add,
                 Shape* sh) {
  auto xd = x.dimensions(), md = mul.dimensions(), ad = add.dimensions();
  if (xd.size() != 4 || md.size() != 3 || ad.size() != 3 || md[0] != xd[0] || md[1] != xd[1] ||
      md[2] != xd[3] || ad[0] != md[0] || ad[1] != md[1] || ad[2] != md[2])
    return ffi::Error::InvalidArgument("lif kernel: x [T,G,M,C], mul and add [T,G,C] expected");
  *sh = Shape{xd[0], xd[1], xd[2], xd[3]};
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> mul,
                       ffi::Buffer<ffi::F32> add, ffi::ResultBuffer<ffi::F32> s, float leak,
                       float threshold) {
  Shape sh;
  if (auto e = Check(x, mul, add, &sh); e.failure()) return e;
  Forward(x.typed_data(), mul.typed_data(), add.typed_data(), s->typed_data(), sh,
          Params{leak, threshold, 0.f});
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> mul,
                        ffi::Buffer<ffi::F32> add, ffi::Buffer<ffi::F32> gs,
                        ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dmul,
                        ffi::ResultBuffer<ffi::F32> dadd, float leak, float threshold,
                        int32_t surrogate, float alpha) {
  Shape sh;
  if (auto e = Check(x, mul, add, &sh); e.failure()) return e;
  if (surrogate < kTriangle || surrogate > kArctan)
    return ffi::Error::InvalidArgument("lif kernel: unknown surrogate");
  const Params p{leak, threshold, alpha};
  auto run = [&](auto backward) {
    backward(x.typed_data(), mul.typed_data(), add.typed_data(), gs.typed_data(), dx->typed_data(),
             dmul->typed_data(), dadd->typed_data(), sh, p);
  };
  if (surrogate == kTriangle) run(Backward<kTriangle>);
  else if (surrogate == kFastSigmoid) run(Backward<kFastSigmoid>);
  else run(Backward<kArctan>);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnttLifForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("leak")
                                  .Attr<float>("threshold"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnttLifBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("leak")
                                  .Attr<float>("threshold")
                                  .Attr<int32_t>("surrogate")
                                  .Attr<float>("alpha"));
