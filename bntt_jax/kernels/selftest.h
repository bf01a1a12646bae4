// What the kernels' self-tests share (each .cc exports one, run by kernels/build.py before the
// library is used): small pseudo-random operands, the loop nest of a direct 3x3 convolution and a
// comparison with a reference in double.
#ifndef BNTT_JAX_KERNELS_SELFTEST_H_
#define BNTT_JAX_KERNELS_SELFTEST_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace bntt {

// Deterministic operands: uniform in [-1, 1), or 0/1 spikes at `density` (values from `values`
// when it is not empty).
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : s_(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  float Uniform() {   // [0, 1)
    s_ = s_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((s_ >> 40) * (1.0 / (1ull << 24)));
  }
  std::vector<float> Normalish(int64_t n) {
    std::vector<float> v(n);
    for (auto& a : v) a = 2.f * Uniform() - 1.f;
    return v;
  }
  std::vector<float> Sparse(int64_t n, float density, const std::vector<float>& values) {
    std::vector<float> v(n);
    for (auto& a : v) {
      const bool on = Uniform() < density;
      const float pick = values.empty() ? 1.f : values[static_cast<size_t>(Uniform() * values.size())];
      a = on ? pick : 0.f;
    }
    return v;
  }

 private:
  uint64_t s_;
};

// f(p, q, tap) for each output pixel p and each of its 3x3 neighbours q inside the image of a
// 'SAME' convolution over n samples of h x w pixels (flat pixel indices; tap = 3 (di + 1) +
// (dj + 1)): the loop nest of the self-tests' direct convolutions.
template <typename F>
inline void ForEachTap(int64_t n, int64_t h, int64_t w, F&& f) {
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        for (int tap = 0; tap < 9; ++tap) {
          const int64_t ii = i + tap / 3 - 1, jj = j + tap % 3 - 1;
          if (ii >= 0 && ii < h && jj >= 0 && jj < w)
            f((b * h + i) * w + j, (b * h + ii) * w + jj, tap);
        }
}

// True when max|got - want| <= tol * max(1, max|want|); else false, with why in msg.
inline bool Close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                  const char* what, char* msg, int len) {
  double err = 0, scale = 1;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(want[i]));
    const double e = std::fabs(got[i] - want[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  if (err <= tol * scale) return true;
  std::snprintf(msg, len, "%s: max error %.3g of max|y| %.3g (bound %.1g)", what, err, scale, tol);
  return false;
}

}  // namespace bntt

#endif  // BNTT_JAX_KERNELS_SELFTEST_H_
