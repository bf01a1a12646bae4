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
// that are added in a fixed order. Both are deterministic. Requires AVX-512F, C % 16 == 0 and D % 64 == 0 (the Python side checks;
// it uses XLA's convolution otherwise).
#ifndef __AVX512F__
#error "bntt_jax sparse convolutions need AVX-512F"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "aligned.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using bntt::Aligned;
using bntt::NumThreads;
using bntt::ParallelFor;

namespace {

constexpr int kBlock = 64;  // output channels per register block (4 x 16 floats)

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
    const __m512 one = _mm512_set1_ps(1.f);
    binary = true;
    for (int64_t q = 0; q < pixels; ++q) {
      const float* xq = x + q * c;
      uint16_t* iq = idx.data() + q * c;
      int k = 0;
      for (int64_t ch = 0; ch < c; ch += 16) {
        __m512 v = _mm512_loadu_ps(xq + ch);
        __mmask16 m = _mm512_cmpneq_ps_mask(v, _mm512_setzero_ps());
        binary &= _mm512_mask_cmpneq_ps_mask(m, v, one) == 0;
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
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        ForEachNeighbour<kBinary>(l, i, j, s, [&](int tap, const uint16_t* iq, const float* vq,
                                                  int K) {
          const float* wt = w + tap * c * d + db;
          for (int k = 0; k < K; ++k) {
            const float* r = wt + static_cast<int64_t>(iq[k]) * d;
            if constexpr (kBinary) {
              a0 = _mm512_add_ps(a0, _mm512_loadu_ps(r));
              a1 = _mm512_add_ps(a1, _mm512_loadu_ps(r + 16));
              a2 = _mm512_add_ps(a2, _mm512_loadu_ps(r + 32));
              a3 = _mm512_add_ps(a3, _mm512_loadu_ps(r + 48));
            } else {
              const __m512 v = _mm512_set1_ps(vq[k]);
              a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(r), a0);
              a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(r + 16), a1);
              a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(r + 32), a2);
              a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(r + 48), a3);
            }
          }
        });
        float* o = y + (i * wd + j) * d + db;
        _mm512_storeu_ps(o, a0);
        _mm512_storeu_ps(o + 16, a1);
        _mm512_storeu_ps(o + 32, a2);
        _mm512_storeu_ps(o + 48, a3);
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

// The nonzero pixels of each channel of one sample: pix[c * pixels + k] (value val[...], or 1 when
// `binary`) for k < cnt[c], as row offsets into the sample's zero-padded [H + 2, W + 2] grid.
struct ChannelLists {
  std::vector<int32_t> pix, cnt;
  std::vector<float> val;
  bool binary = true;

  void Build(const float* x, const Shape& s) {
    const int64_t pixels = s.h * s.w;
    pix.resize(s.c * pixels);
    cnt.assign(s.c, 0);
    val.resize(s.c * pixels);
    const __m512 one = _mm512_set1_ps(1.f);
    binary = true;
    for (int64_t i = 0; i < s.h; ++i)
      for (int64_t j = 0; j < s.w; ++j) {
        const float* xq = x + (i * s.w + j) * s.c;
        const int32_t q = static_cast<int32_t>((i + 1) * (s.w + 2) + j + 1);
        for (int64_t ch = 0; ch < s.c; ch += 16) {
          const __m512 v = _mm512_loadu_ps(xq + ch);
          __mmask16 m = _mm512_cmpneq_ps_mask(v, _mm512_setzero_ps());
          binary &= _mm512_mask_cmpneq_ps_mask(m, v, one) == 0;
          while (m) {
            const int64_t c = ch + __builtin_ctz(m), k = c * pixels + cnt[c]++;
            pix[k] = q;
            val[k] = xq[c];
            m &= m - 1;
          }
        }
      }
  }
};

// acc[tap, c, db:db+16V] += sum over the nonzeros x[q, c] of x[q, c] * dy[q - tap, db:db+16V],
// for one sample. dyp is the sample's dy block on the zero-padded grid (so a neighbour outside
// the image reads zeros); the sums build up in V registers per (tap, c): only loads and adds.
template <int kV, bool kBinary>
void WeightGradSample(const ChannelLists& l, const float* dyp, float* acc, int64_t db,
                      const Shape& s) {
  const int64_t pixels = s.h * s.w, pw = s.w + 2;
  for (int64_t c = 0; c < s.c; ++c) {
    const int32_t* pix = l.pix.data() + c * pixels;
    const float* val = l.val.data() + c * pixels;
    const int K = l.cnt[c];
    if (!K) continue;
    for (int tap = 0; tap < 9; ++tap) {
      const float* base = dyp - ((tap / 3 - 1) * pw + (tap % 3 - 1)) * (kV * 16);
      __m512 a[kV];
      for (int v = 0; v < kV; ++v) a[v] = _mm512_setzero_ps();
      for (int k = 0; k < K; ++k) {
        const float* r = base + static_cast<int64_t>(pix[k]) * (kV * 16);
        if constexpr (kBinary) {
          for (int v = 0; v < kV; ++v) a[v] = _mm512_add_ps(a[v], _mm512_load_ps(r + 16 * v));
        } else {
          const __m512 x = _mm512_set1_ps(val[k]);
          for (int v = 0; v < kV; ++v) a[v] = _mm512_fmadd_ps(x, _mm512_load_ps(r + 16 * v), a[v]);
        }
      }
      float* o = acc + (tap * s.c + c) * s.d + db;
      for (int v = 0; v < kV; ++v)
        _mm512_storeu_ps(o + 16 * v, _mm512_add_ps(a[v], _mm512_loadu_ps(o + 16 * v)));
    }
  }
}

// The samples are split into kChunks fixed ranges, each summed into its own copy of dw (an item
// is one range and one block of output channels, block-major so that the threads share one
// block at a time, which stays in cache); the copies are then added in a fixed order. The result
// is the same whatever the number of threads and the order they take the items in.
constexpr int64_t kChunks = 8;

template <int kV>
void WeightGrad(const float* x, const float* dy, float* dw, const Shape& s) {
  constexpr int64_t bw = kV * 16;
  const int64_t size = 9 * s.c * s.d, pixels = s.h * s.w, grid = (s.h + 2) * (s.w + 2);
  const int64_t chunks = std::min(kChunks, s.n), blocks = s.d / bw;
  std::vector<Aligned> acc(chunks);
  for (auto& a : acc) a = bntt::Zeroed(size);
  std::vector<ChannelLists> lists(NumThreads());
  std::vector<Aligned> pad;
  for (int t = 0; t < NumThreads(); ++t) pad.push_back(bntt::Zeroed(grid * bw));   // the border stays zero
  ParallelFor(chunks * blocks, [&](int64_t item, int t) {
    const int64_t db = item / chunks * bw, chunk = item % chunks;
    ChannelLists& l = lists[t];
    float* dyp = pad[t].get();
    for (int64_t n = s.n * chunk / chunks; n < s.n * (chunk + 1) / chunks; ++n) {
      l.Build(x + n * pixels * s.c, s);
      const float* g = dy + n * pixels * s.d + db;
      for (int64_t i = 0; i < s.h; ++i)
        for (int64_t j = 0; j < s.w; ++j)
          std::memcpy(dyp + ((i + 1) * (s.w + 2) + j + 1) * bw, g + (i * s.w + j) * s.d,
                      bw * sizeof(float));
      if (l.binary) WeightGradSample<kV, true>(l, dyp, acc[chunk].get(), db, s);
      else WeightGradSample<kV, false>(l, dyp, acc[chunk].get(), db, s);
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
  // 128 output channels per pass where they divide (fewer passes over the lists), else 64.
  if (s.d % 128 == 0) WeightGrad<8>(x.typed_data(), dy.typed_data(), dw->typed_data(), s);
  else WeightGrad<4>(x.typed_data(), dy.typed_data(), dw->typed_data(), s);
  return ffi::Error::Success();
}

}  // namespace

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
