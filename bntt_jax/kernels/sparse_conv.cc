// Event-driven 3x3 'SAME' convolutions for XLA:CPU (see bntt_jax/sparse_conv.py).
//
// x [N, H, W, C] (mostly zeros: spikes), w [3, 3, C, D], dy [N, H, W, D], all float32, row-major.
// Both kernels list the input's nonzeros, one sample at a time, and touch only those (adds
// alone when every nonzero is 1, as spikes are):
//   forward  y[p, :]      = sum_{tap, c: x[p + tap, c] != 0} x[p + tap, c] * w[tap, c, :]
//   weights  dw[tap, c, :] = sum_{p: x[p + tap, c] != 0} x[p + tap, c] * dy[p, :]
// The forward walks each pixel's nonzero channels and accumulates 64 output channels of y[p] in
// registers; the weight gradient walks each channel's nonzero pixels and accumulates 64 or 128
// channels of dw[tap, c] in registers, per sample, into a fixed number of partial copies of dw
// that are added in a fixed order. Both are deterministic. Requires C % 16 == 0 and
// D % 64 == 0 (the Python side checks; it uses XLA's convolution otherwise).
//
// Written once for every vector width: simd.h gives V (kWidth floats: 16 with AVX-512, 8 with
// AVX2, 4 generic; its header says why wrappers over intrinsics) and the build picks the
// variant (kernels/build.py). BnttSparseConvSelfTest checks the build against a direct
// convolution in double precision before the library is used.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "aligned.h"
#include "parallel.h"
#include "selftest.h"
#include "simd.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using bntt::Aligned;
using bntt::NumThreads;
using bntt::ParallelFor;
namespace simd = bntt::simd;
using simd::V;
using simd::kWidth;

namespace {

constexpr int kBlock = 64;  // output channels per register block of the forward
constexpr int kBlockVecs = kBlock / kWidth;
static_assert(16 % kWidth == 0, "a width that divides the channel multiple (16)");

struct Shape {
  int64_t n, h, w, c, d;
};

// The nonzero channels of each pixel of one sample: idx[q * c + k] (value val[q * c + k], or 1
// when `binary`) for k < cnt[q]. One per thread, reused from sample to sample.
struct SampleLists {
  std::vector<uint16_t> idx, cnt;
  std::vector<float> val;
  bool binary = true;

  void Build(const float* x, int64_t pixels, int64_t c) {
    idx.resize(pixels * c);
    cnt.resize(pixels);
    binary = true;
    for (int64_t q = 0; q < pixels; ++q) {
      const float* xq = x + q * c;
      uint16_t* iq = idx.data() + q * c;
      int k = 0;
      for (int64_t ch = 0; ch < c; ch += kWidth) {
        const V v = simd::LoadU(xq + ch);
        uint32_t m = simd::NonzeroMask(v);
        binary &= simd::NotOneMask(m, v) == 0;
        while (m) {
          iq[k++] = static_cast<uint16_t>(ch + __builtin_ctz(m));
          m &= m - 1;
        }
      }
      cnt[q] = static_cast<uint16_t>(k);
    }
    if (!binary) {
      val.resize(pixels * c);
      for (int64_t q = 0; q < pixels; ++q)
        for (int k = 0; k < cnt[q]; ++k) val[q * c + k] = x[q * c + idx[q * c + k]];
    }
  }
};

// f(tap, iq, vq, K) for each of the 3x3 neighbours (i + di, j + dj) inside the image: its
// tap index, its list of K nonzero channels iq and their values vq (nullptr when binary).
template <bool kBinary, typename F>
inline void ForEachNeighbour(const SampleLists& l, int64_t i, int64_t j, const Shape& s, F&& f) {
  for (int di = -1; di <= 1; ++di) {
    const int64_t ii = i + di;
    if (ii < 0 || ii >= s.h) continue;
    for (int dj = -1; dj <= 1; ++dj) {
      const int64_t jj = j + dj;
      if (jj < 0 || jj >= s.w) continue;
      const int64_t q = ii * s.w + jj;
      f((di + 1) * 3 + (dj + 1), l.idx.data() + q * s.c,
        kBinary ? nullptr : l.val.data() + q * s.c, static_cast<int>(l.cnt[q]));
    }
  }
}

// y[n] for one sample n: 64 output channels at a time, accumulated in registers.
template <bool kBinary>
void ForwardSample(const SampleLists& l, const float* w, float* y, const Shape& s) {
  const int64_t h = s.h, wd = s.w, c = s.c, d = s.d;
  for (int64_t db = 0; db < d; db += kBlock)   // block-major: its weight slice stays in cache
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < wd; ++j) {
        V a[kBlockVecs];
        for (int q = 0; q < kBlockVecs; ++q) a[q] = simd::Zero();
        ForEachNeighbour<kBinary>(l, i, j, s, [&](int tap, const uint16_t* iq, const float* vq,
                                                  int K) {
          const float* wt = w + tap * c * d + db;
          for (int k = 0; k < K; ++k) {
            const float* r = wt + static_cast<int64_t>(iq[k]) * d;
            if constexpr (kBinary) {
              for (int q = 0; q < kBlockVecs; ++q)
                a[q] = simd::Add(a[q], simd::LoadU(r + kWidth * q));
            } else {
              const V v = simd::Set1(vq[k]);
              for (int q = 0; q < kBlockVecs; ++q)
                a[q] = simd::Fma(v, simd::LoadU(r + kWidth * q), a[q]);
            }
          }
        });
        float* o = y + (i * wd + j) * d + db;
        for (int q = 0; q < kBlockVecs; ++q) simd::StoreU(o + kWidth * q, a[q]);
      }
}

void Forward(const float* x, const float* w, float* y, const Shape& s) {
  std::vector<SampleLists> lists(NumThreads());
  const int64_t pixels = s.h * s.w;
  ParallelFor(s.n, [&](int64_t n, int t) {
    SampleLists& l = lists[t];
    l.Build(x + n * pixels * s.c, pixels, s.c);
    if (l.binary) ForwardSample<true>(l, w, y + n * pixels * s.d, s);
    else ForwardSample<false>(l, w, y + n * pixels * s.d, s);
  });
}

// The nonzero pixels of each channel of a group of samples: pix[c * cap + k] (value val[...],
// or 1 when `binary`) for k < cnt[c], as row offsets into the group's zero-padded grids (sample g
// of the group at g * (H + 2) * (W + 2)); cap = the most pixels a group may hold. A group rather
// than one sample because a small image has few nonzeros per channel, and the (tap, channel)
// sums, which stay in registers over a channel's list, are read and written back once per list.
struct ChannelLists {
  std::vector<int32_t> pix, cnt;
  std::vector<float> val;
  bool binary = true;
  int64_t cap = 0, total = 0;   // total: the nonzeros in the lists

  void Clear(int64_t max_samples, const Shape& s) {
    cap = max_samples * s.h * s.w;
    pix.resize(s.c * cap);
    val.resize(s.c * cap);
    cnt.assign(s.c, 0);
    binary = true;
    total = 0;
  }

  // Appends sample x as the group's sample g.
  void Append(const float* x, int64_t g, const Shape& s) {
    const int64_t grid = (s.h + 2) * (s.w + 2);
    for (int64_t i = 0; i < s.h; ++i)
      for (int64_t j = 0; j < s.w; ++j) {
        const float* xq = x + (i * s.w + j) * s.c;
        const int32_t q = static_cast<int32_t>(g * grid + (i + 1) * (s.w + 2) + j + 1);
        for (int64_t ch = 0; ch < s.c; ch += kWidth) {
          const V v = simd::LoadU(xq + ch);
          uint32_t m = simd::NonzeroMask(v);
          binary &= simd::NotOneMask(m, v) == 0;
          while (m) {
            const int64_t c = ch + __builtin_ctz(m), k = c * cap + cnt[c]++;
            pix[k] = q;
            val[k] = xq[c];
            m &= m - 1;
          }
        }
      }
    total = 0;
    for (int32_t k : cnt) total += k;
  }
};

// acc[tap, c, db:db+kV*kWidth] += sum over the nonzeros x[q, c] of x[q, c] * dy[q - tap, same],
// for one group of samples (ChannelLists). dyp is the group's dy block on the zero-padded grids
// (so a neighbour outside the image reads zeros); the sums build up in kV registers per (tap, c):
// only loads and adds.
template <int kV, bool kBinary>
void WeightGradGroup(const ChannelLists& l, const float* dyp, float* acc, int64_t db,
                     const Shape& s) {
  const int64_t pw = s.w + 2, cap = l.cap;
  for (int64_t c = 0; c < s.c; ++c) {
    const int32_t* pix = l.pix.data() + c * cap;
    const float* val = l.val.data() + c * cap;
    const int K = l.cnt[c];
    if (!K) continue;
    for (int tap = 0; tap < 9; ++tap) {
      const float* base = dyp - ((tap / 3 - 1) * pw + (tap % 3 - 1)) * (kV * kWidth);
      V a[kV];
      for (int v = 0; v < kV; ++v) a[v] = simd::Zero();
      for (int k = 0; k < K; ++k) {
        const float* r = base + static_cast<int64_t>(pix[k]) * (kV * kWidth);
        if constexpr (kBinary) {
          for (int v = 0; v < kV; ++v) a[v] = simd::Add(a[v], simd::Load(r + kWidth * v));
        } else {
          const V x = simd::Set1(val[k]);
          for (int v = 0; v < kV; ++v) a[v] = simd::Fma(x, simd::Load(r + kWidth * v), a[v]);
        }
      }
      float* o = acc + (tap * s.c + c) * s.d + db;
      for (int v = 0; v < kV; ++v)
        simd::StoreU(o + kWidth * v, simd::Add(a[v], simd::LoadU(o + kWidth * v)));
    }
  }
}

// The samples are split into kChunks fixed ranges, each summed into its own copy of dw (an item
// is one range and one block of output channels, block-major so that the threads share one
// block at a time, which stays in cache); the copies are then added in a fixed order. The result
// is the same whatever the number of threads and the order they take the items in.
constexpr int64_t kChunks = 8;
// A group of samples (ChannelLists) grows until its lists hold kGroupNonzeros per channel or its
// padded dy blocks would pass kGroupBytes. Measured on a 2-core Intel Xeon (Ice Lake, AVX-512),
// VGG9's weight gradients at 400 samples, min of 5: conv6 and conv7 (8x8) at 5 % ones 40 -> 28 ms
// (AVX-512) and 46 -> 33 (AVX2), conv5 17.5 -> 14.5; the 32x32 and 16x16 layers, and every layer
// at 25 %, stay one sample a group and unchanged. 512 KB / 32 and 1 MB / 64 were slower.
constexpr int64_t kGroupBytes = 256 * 1024;
constexpr int64_t kGroupNonzeros = 16;

template <int kV>
void WeightGrad(const float* x, const float* dy, float* dw, const Shape& s) {
  constexpr int64_t bw = kV * kWidth;
  const int64_t size = 9 * s.c * s.d, pixels = s.h * s.w, grid = (s.h + 2) * (s.w + 2);
  const int64_t chunks = std::min(kChunks, s.n), blocks = s.d / bw;
  // A group: samples until their lists hold kGroupNonzeros per channel on average, at most
  // as many as fit their padded dy blocks in kGroupBytes (at least one).
  const int64_t most = std::min(s.n, std::max<int64_t>(1, kGroupBytes / (grid * bw * 4)));
  std::vector<Aligned> acc(chunks);
  for (auto& a : acc) a = bntt::Zeroed(size);
  std::vector<ChannelLists> lists(NumThreads());
  std::vector<Aligned> pad;
  for (int t = 0; t < NumThreads(); ++t)   // the borders stay zero
    pad.push_back(bntt::Zeroed(most * grid * bw));
  ParallelFor(chunks * blocks, [&](int64_t item, int t) {
    const int64_t db = item / chunks * bw, chunk = item % chunks;
    ChannelLists& l = lists[t];
    float* dyp = pad[t].get();
    const int64_t end = s.n * (chunk + 1) / chunks;
    for (int64_t n = s.n * chunk / chunks; n < end;) {
      l.Clear(most, s);
      for (int64_t g = 0; g < most && n < end && l.total < kGroupNonzeros * s.c; ++g, ++n) {
        l.Append(x + n * pixels * s.c, g, s);
        const float* src = dy + n * pixels * s.d + db;
        for (int64_t i = 0; i < s.h; ++i)
          for (int64_t j = 0; j < s.w; ++j)
            std::memcpy(dyp + (g * grid + (i + 1) * (s.w + 2) + j + 1) * bw,
                        src + (i * s.w + j) * s.d, bw * sizeof(float));
      }
      if (l.binary) WeightGradGroup<kV, true>(l, dyp, acc[chunk].get(), db, s);
      else WeightGradGroup<kV, false>(l, dyp, acc[chunk].get(), db, s);
    }
  });
  const int64_t grain = 1 << 14;
  ParallelFor((size + grain - 1) / grain, [&](int64_t b, int) {
    for (int64_t i = b * grain; i < std::min(size, (b + 1) * grain); ++i) {
      float sum = 0.f;
      for (const auto& a : acc) sum += a.get()[i];
      dw[i] = sum;
    }
  });
}

// 128 output channels per pass where they divide and fit the registers (fewer passes over the
// lists: AVX-512's 8 of 32 registers, AVX2's 16 of 16: simd.h), else 64 (generic's 16).
void WeightGradAnyWidth(const float* x, const float* dy, float* dw, const Shape& s) {
  constexpr int kWide = 128 / kWidth, kNarrow = 64 / kWidth;
  if constexpr (kWide <= simd::kMaxAccVecs) {
    if (s.d % 128 == 0) return WeightGrad<kWide>(x, dy, dw, s);
  }
  WeightGrad<kNarrow>(x, dy, dw, s);
}

ffi::Error CheckShapes(const Shape& s) {
  if (s.c % 16 || s.d % kBlock || s.c > 65535)
    return ffi::Error::InvalidArgument("sparse conv: channels must be C % 16 == 0, D % 64 == 0");
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y) {
  auto xd = x.dimensions(), wd = w.dimensions();
  if (xd.size() != 4 || wd.size() != 4 || wd[0] != 3 || wd[1] != 3 || wd[2] != xd[3])
    return ffi::Error::InvalidArgument("sparse conv: x [N,H,W,C] and w [3,3,C,D] expected");
  Shape s{xd[0], xd[1], xd[2], xd[3], wd[3]};
  if (auto e = CheckShapes(s); e.failure()) return e;
  const float* wp = w.typed_data();
  Aligned copy(reinterpret_cast<uintptr_t>(wp) % 64 ? 9 * s.c * s.d : 0);
  if (copy.get()) wp = static_cast<const float*>(std::memcpy(copy.get(), wp, 9 * s.c * s.d * 4));
  Forward(x.typed_data(), wp, y->typed_data(), s);
  return ffi::Error::Success();
}

ffi::Error WeightGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dw) {
  auto xd = x.dimensions(), gd = dy.dimensions();
  if (xd.size() != 4 || gd.size() != 4 || gd[0] != xd[0] || gd[1] != xd[1] || gd[2] != xd[2])
    return ffi::Error::InvalidArgument("sparse conv: x [N,H,W,C] and dy [N,H,W,D] expected");
  Shape s{xd[0], xd[1], xd[2], xd[3], gd[3]};
  if (auto e = CheckShapes(s); e.failure()) return e;
  WeightGradAnyWidth(x.typed_data(), dy.typed_data(), dw->typed_data(), s);
  return ffi::Error::Success();
}

// y and dw of x (n, h, w, c), w, dy by the definition, in double.
void Reference(const std::vector<float>& x, const std::vector<float>& w,
               const std::vector<float>& dy, const Shape& s, std::vector<double>* y,
               std::vector<double>* dw) {
  y->assign(s.n * s.h * s.w * s.d, 0.0);
  dw->assign(9 * s.c * s.d, 0.0);
  bntt::ForEachTap(s.n, s.h, s.w, [&](int64_t p, int64_t q, int tap) {
    const float* xq = x.data() + q * s.c;
    for (int64_t c = 0; c < s.c; ++c) {
      if (xq[c] == 0.f) continue;
      for (int64_t d = 0; d < s.d; ++d) {
        (*y)[p * s.d + d] += double(xq[c]) * w[(tap * s.c + c) * s.d + d];
        (*dw)[(tap * s.c + c) * s.d + d] += double(xq[c]) * dy[p * s.d + d];
      }
    }
  });
}

bool SelfTest(char* msg, int len) {
  // Every border (5 x 7), both weight-gradient blocks where the width has them (D 128, 64),
  // spikes and other values, fewer samples than the partial copies of dw and more.
  const Shape shapes[] = {{2, 5, 7, 32, 128}, {9, 3, 4, 16, 64}};
  bntt::Lcg rng(7);
  for (const Shape& s : shapes)
    for (const std::vector<float>& values : {std::vector<float>{}, std::vector<float>{0.25f, -1.f}}) {
      const auto x = rng.Sparse(s.n * s.h * s.w * s.c, 0.3f, values);
      const auto w = rng.Normalish(9 * s.c * s.d), dy = rng.Normalish(s.n * s.h * s.w * s.d);
      std::vector<float> y(s.n * s.h * s.w * s.d), dw(9 * s.c * s.d);
      Aligned wa(9 * s.c * s.d);
      std::memcpy(wa.get(), w.data(), w.size() * 4);
      Forward(x.data(), wa.get(), y.data(), s);
      WeightGradAnyWidth(x.data(), dy.data(), dw.data(), s);
      std::vector<double> y64, dw64;
      Reference(x, w, dy, s, &y64, &dw64);
      if (!bntt::Close(y, y64, 1e-5, "sparse conv self-test: forward", msg, len) ||
          !bntt::Close(dw, dw64, 1e-5, "sparse conv self-test: weight gradient", msg, len))
        return false;
    }
  return true;
}

}  // namespace

// 0 when this build's forward and weight gradient equal a direct convolution in double on small
// problems (build.py runs it once before registering the handlers), else 1 with why in msg.
extern "C" int BnttSparseConvSelfTest(char* msg, int len) { return SelfTest(msg, len) ? 0 : 1; }
extern "C" const char* BnttSparseConvIsa() { return simd::kIsa; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnttSparseConvForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnttSparseConvWeightGrad, WeightGradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
