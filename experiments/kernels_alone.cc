// The CPU kernels alone, without JAX: VGG9's conv2-conv7 at T x B samples, min of R runs.
//
// One binary per kernel source and variant (the flags of bntt_jax/kernels/build.py):
//
//   INC=$(python -c "import jax; print(jax.ffi.include_dir())")
//   AVX2="-march=x86-64 -mtune=native -mavx2 -mfma -DBNTT_ISA_AVX2"   # or -march=native -DBNTT_ISA_AVX512
//   g++ -O3 -std=c++17 $AVX2 -isystem $INC -Ibntt_jax/kernels -DKERNEL_SOURCE='"sparse_conv.cc"' \
//       experiments/kernels_alone.cc -o /tmp/sparse_avx2 -lpthread
//   g++ -O3 -std=c++17 $AVX2 -isystem $INC -Ibntt_jax/kernels -DKERNEL_SOURCE='"winograd.cc"' \
//       -DWINOGRAD experiments/kernels_alone.cc -o /tmp/winograd_avx2 -lpthread
//   /tmp/sparse_avx2 0.05 5 400      # density of ones, runs, samples (T 25 x batch 16)
//
// The sparse build times the event-driven forward and weight gradient on 0/1 inputs at that
// density; the Winograd build the dense forward and input gradient (the density is unused).
// Prints one line per layer, milliseconds, and the totals. experiments/conv_roofline.py times
// the same operations through XLA, as a training step calls them.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "selftest.h"
#include KERNEL_SOURCE

namespace {

template <typename F>
double MinMs(F&& f, int runs) {
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const float density = argc > 1 ? std::atof(argv[1]) : 0.25f;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  const int64_t n = argc > 3 ? std::atoll(argv[3]) : 400;
  if (!(density >= 0 && density <= 1) || runs < 1 || n < 1) {
    std::fprintf(stderr, "usage: %s [density in 0..1] [runs >= 1] [samples >= 1]\n", argv[0]);
    return 2;
  }
  struct Layer {
    const char* name;
    int64_t hw, c, d;
  } layers[] = {{"conv2", 32, 64, 64},   {"conv3", 16, 64, 128},  {"conv4", 16, 128, 128},
                {"conv5", 8, 128, 256},  {"conv6", 8, 256, 256},  {"conv7", 8, 256, 256}};
  bntt::Lcg rng(3);
  double total[2] = {0, 0};
  for (const Layer& l : layers) {
    const int64_t nx = n * l.hw * l.hw * l.c, ny = n * l.hw * l.hw * l.d, nw = 9 * l.c * l.d;
    const auto x = rng.Sparse(nx, density, {}), w = rng.Normalish(nw), dy = rng.Normalish(ny);
    std::vector<float> y(ny), dx(nx), dw(nw);
#ifdef WINOGRAD
    const int64_t tiles = (l.hw + 3) / 4;
    const Geometry fwd{n, l.hw, l.hw, l.c, l.d, tiles, tiles}, bwd{n, l.hw, l.hw, l.d, l.c, tiles, tiles};
    const double a = MinMs([&] { Convolve(x.data(), w.data(), false, y.data(), fwd); }, runs);
    const double b = MinMs([&] { Convolve(dy.data(), w.data(), true, dx.data(), bwd); }, runs);
    std::printf("%s forward %.1f ms, input gradient %.1f ms\n", l.name, a, b);
#else
    bntt::Aligned wa(nw);   // the handler copies an unaligned filter so: 64-byte aligned
    std::memcpy(wa.get(), w.data(), nw * sizeof(float));
    const Shape s{n, l.hw, l.hw, l.c, l.d};
    const double a = MinMs([&] { Forward(x.data(), wa.get(), y.data(), s); }, runs);
    const double b = MinMs([&] { WeightGradAnyWidth(x.data(), dy.data(), dw.data(), s); }, runs);
    std::printf("%s forward %.1f ms, weight gradient %.1f ms\n", l.name, a, b);
#endif
    total[0] += a;
    total[1] += b;
  }
  std::printf("all %.1f ms, %.1f ms (%s, %g ones, %lld samples, min of %d)\n", total[0], total[1],
              bntt::simd::kIsa, density, static_cast<long long>(n), runs);
  return 0;
}
