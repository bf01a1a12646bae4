// Dense 3x3 'SAME' stride-1 convolutions for XLA:CPU by Winograd's F(4x4, 3x3) (see winograd.py).
//
// x [N, H, W, K], float32, row-major; the filter of input channel k and output channel c is
//   forward:    g[kh][kw] = w[kh][kw][k][c]            (w [3, 3, K, C])
//   transpose:  g[kh][kw] = w[2 - kh][2 - kw][c][k]    (w [3, 3, C, K]: the input gradient of a
//                                                       convolution by w, x its output gradient)
// and y [N, H, W, C] = sum over k of the 'SAME' correlation of x[..., k] with g.
//
// Each 4x4 output tile comes from the 6x6 input tile around it (Lavin & Gray, "Fast Algorithms
// for Convolutional Neural Networks", CVPR 2016):  Y = A^T [ sum_k (G g G^T) . (B^T d B) ] A,
// the elementwise product a matrix product over k for each of the 36 positions: 36 multiplies
// per (k, c) pair and 16 outputs, against the direct convolution's 144. The weights are
// transformed once per call (U [36, K, C]); the tiles are done in blocks of NT, each block's
// input transform (V [36, NT, K]), its 36 matrix products (M [36, NT, C]) and its output
// transform in one thread's cache. Each block writes its own outputs: the result does not depend
// on the number of threads. Requires K % 16 == 0 and C % 16 == 0 (winograd.py checks).
//
// Written once for every vector width: simd.h gives V (kWidth floats: 16 with AVX-512, 8 with
// AVX2, 4 generic; its header says why wrappers over intrinsics) and the matrix products'
// register block; the build picks the variant (kernels/build.py). BnttWinogradSelfTest checks
// the build against a direct convolution in double before the library is used.

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

constexpr int kRows = simd::kProductRows;   // tiles per register block of the matrix products
static_assert(16 % kWidth == 0, "a width that divides the channel multiple (16)");

// B^T d for one column of six values (the input transform's 1-D step).
template <typename T, typename Mul>
inline void InputStep(const T d[6], T o[6], Mul mul) {
  o[0] = mul(4.f, d[0]) - mul(5.f, d[2]) + d[4];
  o[1] = d[3] + d[4] - mul(4.f, d[1] + d[2]);
  o[2] = d[4] - d[3] + mul(4.f, d[1] - d[2]);
  o[3] = d[4] - d[2] + mul(2.f, d[3] - d[1]);
  o[4] = d[4] - d[2] + mul(2.f, d[1] - d[3]);
  o[5] = mul(4.f, d[1]) - mul(5.f, d[3]) + d[5];
}

// A^T m for six values: four outputs (the output transform's 1-D step).
template <typename T, typename Mul>
inline void OutputStep(const T m[6], T o[4], Mul mul) {
  const T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + mul(2.f, d34);
  o[2] = s12 + mul(4.f, s34);
  o[3] = d12 + mul(8.f, d34) + m[5];
}

const auto kVecMul = [](float s, V v) { return simd::Scale(s, v); };

struct Geometry {
  int64_t n, h, w, k, c, th, tw;   // tiles: th x tw per sample
  int64_t tiles() const { return n * th * tw; }
};

// U[xi][k][c] = (G g G^T)[xi] for every (k, c), g as the header says.
void TransformWeights(const float* w, bool transpose, const Geometry& s, float* u) {
  static const float G[6][3] = {{1 / 4.f, 0, 0},        {-1 / 6.f, -1 / 6.f, -1 / 6.f},
                                {-1 / 6.f, 1 / 6.f, -1 / 6.f}, {1 / 24.f, 1 / 12.f, 1 / 6.f},
                                {1 / 24.f, -1 / 12.f, 1 / 6.f}, {0, 0, 1}};
  const int64_t kc = s.k * s.c;
  ParallelFor(s.k, [&](int64_t k, int) {
    std::vector<float> g(9 * s.c), t(18 * s.c);   // g[tap][c], t[6][3][c] = G g
    for (int tap = 0; tap < 9; ++tap)
      for (int64_t c = 0; c < s.c; ++c)
        g[tap * s.c + c] = transpose ? w[((8 - tap) * s.c + c) * s.k + k] : w[(tap * s.k + k) * s.c + c];
    for (int a = 0; a < 6; ++a)
      for (int j = 0; j < 3; ++j)
        for (int64_t c = 0; c < s.c; ++c)
          t[(a * 3 + j) * s.c + c] = G[a][0] * g[j * s.c + c] + G[a][1] * g[(3 + j) * s.c + c] +
                                     G[a][2] * g[(6 + j) * s.c + c];
    for (int a = 0; a < 6; ++a)
      for (int b = 0; b < 6; ++b) {
        float* o = u + (a * 6 + b) * kc + k * s.c;
        const float* r = t.data() + a * 3 * s.c;
        for (int64_t c = 0; c < s.c; ++c)
          o[c] = G[b][0] * r[c] + G[b][1] * r[s.c + c] + G[b][2] * r[2 * s.c + c];
      }
  });
}

// v[xi][r][:] = (B^T d B)[xi] of tile r of the block, for the tiles [t0, t0 + count).
void InputTransform(const float* x, const Geometry& s, int64_t t0, int64_t count, int64_t nt,
                    float* v) {
  const V zero = simd::Zero();
  for (int64_t r = 0; r < count; ++r) {
    const int64_t t = t0 + r, n = t / (s.th * s.tw), i0 = (t / s.tw) % s.th * 4 - 1,
                  j0 = t % s.tw * 4 - 1;
    const float* xn = x + n * s.h * s.w * s.k;
    for (int64_t ch = 0; ch < s.k; ch += kWidth) {
      V d[6][6], e[6][6];
      for (int a = 0; a < 6; ++a) {
        const int64_t i = i0 + a;
        for (int b = 0; b < 6; ++b) {
          const int64_t j = j0 + b;
          d[b][a] = (i >= 0 && i < s.h && j >= 0 && j < s.w)
                        ? simd::LoadU(xn + (i * s.w + j) * s.k + ch) : zero;
        }
      }
      V col[6];
      for (int b = 0; b < 6; ++b) {           // columns: e[b][:] = B^T d[:, b]
        InputStep(d[b], col, kVecMul);
        for (int a = 0; a < 6; ++a) e[a][b] = col[a];
      }
      for (int a = 0; a < 6; ++a) {           // rows: (B^T d) B
        InputStep(e[a], col, kVecMul);
        for (int b = 0; b < 6; ++b)
          simd::Store(v + ((a * 6 + b) * nt + r) * s.k + ch, col[b]);
      }
    }
  }
}

// m[0:kRows][0:kWidth kV] = v[0:kRows][0:K] @ u[0:K][0:kWidth kV] (leading dimensions: K,
// ldu, ldm).
template <int kV>
inline void Product(const float* v, const float* u, float* m, int64_t K, int64_t ldu,
                    int64_t ldm) {
  V acc[kRows][kV];
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kV; ++q) acc[r][q] = simd::Zero();
  for (int64_t k = 0; k < K; ++k) {
    V b[kV];
    for (int q = 0; q < kV; ++q) b[q] = simd::LoadU(u + k * ldu + kWidth * q);
    for (int r = 0; r < kRows; ++r) {
      const V a = simd::Set1(v[r * K + k]);
      for (int q = 0; q < kV; ++q) acc[r][q] = simd::Fma(a, b[q], acc[r][q]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int q = 0; q < kV; ++q) simd::Store(m + r * ldm + kWidth * q, acc[r][q]);
}

// y of the tiles [t0, t0 + count) from m[xi][r][:].
void OutputTransform(const float* m, const Geometry& s, int64_t t0, int64_t count, int64_t nt,
                     float* y) {
  for (int64_t r = 0; r < count; ++r) {
    const int64_t t = t0 + r, n = t / (s.th * s.tw), i0 = (t / s.tw) % s.th * 4,
                  j0 = t % s.tw * 4;
    float* yn = y + n * s.h * s.w * s.c;
    for (int64_t ch = 0; ch < s.c; ch += kWidth) {
      V e[6][4], in[6], out[4];
      for (int a = 0; a < 6; ++a) {           // rows: M A, per row a of M
        for (int b = 0; b < 6; ++b) in[b] = simd::Load(m + ((a * 6 + b) * nt + r) * s.c + ch);
        OutputStep(in, e[a], kVecMul);
      }
      for (int j = 0; j < 4; ++j) {           // columns: A^T (M A)
        for (int a = 0; a < 6; ++a) in[a] = e[a][j];
        OutputStep(in, out, kVecMul);
        if (j0 + j >= s.w) continue;
        for (int i = 0; i < 4; ++i)
          if (i0 + i < s.h) simd::StoreU(yn + ((i0 + i) * s.w + j0 + j) * s.c + ch, out[i]);
      }
    }
  }
}

void Convolve(const float* x, const float* w, bool transpose, float* y, const Geometry& s) {
  Aligned u(36 * s.k * s.c);   // written whole by TransformWeights
  TransformWeights(w, transpose, s, u.get());
  // Tiles per block, a multiple of kRows: V and M of a block in at most 3 MB, at most 96 tiles.
  // Each block streams all of U once, so more tiles per block read U less often; past a core's
  // L2 (1 MB on Zen 4) V and M come from L3, but in order. Measured on a 2-core Zen 4, VGG9's
  // six input gradients at batch 16, T 25: 272 ms with blocks of 768 KB, 216 with 1.5 MB, 209
  // with 3 MB (the 256-channel layers gain; the others do not move).
  const int64_t fit = 3 * 1024 * 1024 / (36 * 4 * (s.k + s.c));
  const int64_t nt = std::max<int64_t>(kRows, std::min<int64_t>(96, fit) / kRows * kRows);
  const int64_t blocks = (s.tiles() + nt - 1) / nt;
  std::vector<Aligned> vbuf, mbuf;
  for (int t = 0; t < NumThreads(); ++t) {
    vbuf.push_back(bntt::Zeroed(36 * nt * s.k));   // a short block's unused rows read zeros
    mbuf.push_back(bntt::Zeroed(36 * nt * s.c));
  }
  ParallelFor(blocks, [&](int64_t b, int thread) {
    const int64_t t0 = b * nt, count = std::min(nt, s.tiles() - t0);
    float *v = vbuf[thread].get(), *m = mbuf[thread].get();
    InputTransform(x, s, t0, count, nt, v);
    const int64_t rows = (count + kRows - 1) / kRows * kRows;
    for (int xi = 0; xi < 36; ++xi) {
      const float* uxi = u.get() + xi * s.k * s.c;
      // The widest register block (AVX-512: 64 channels) while it fits, then 16 at a time.
      constexpr int kMain = simd::kProductVecs, kTail = 16 / kWidth;
      int64_t c0 = 0;
      for (; c0 + kMain * kWidth <= s.c; c0 += kMain * kWidth)
        for (int64_t r = 0; r < rows; r += kRows)
          Product<kMain>(v + (xi * nt + r) * s.k, uxi + c0, m + (xi * nt + r) * s.c + c0, s.k,
                         s.c, s.c);
      for (; c0 < s.c; c0 += kTail * kWidth)
        for (int64_t r = 0; r < rows; r += kRows)
          Product<kTail>(v + (xi * nt + r) * s.k, uxi + c0, m + (xi * nt + r) * s.c + c0, s.k,
                         s.c, s.c);
    }
    OutputTransform(m, s, t0, count, nt, y);
  });
}

ffi::Error ConvImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                    ffi::ResultBuffer<ffi::F32> y, int32_t transpose) {
  auto xd = x.dimensions(), wd = w.dimensions();
  if (xd.size() != 4 || wd.size() != 4 || wd[0] != 3 || wd[1] != 3 ||
      wd[transpose ? 3 : 2] != xd[3])
    return ffi::Error::InvalidArgument(
        "winograd conv: x [N,H,W,K] and w [3,3,K,C] (transpose: [3,3,C,K]) expected");
  const int64_t c = transpose ? wd[2] : wd[3];
  Geometry s{xd[0], xd[1], xd[2], xd[3], c, (xd[1] + 3) / 4, (xd[2] + 3) / 4};
  if (s.k % 16 || s.c % 16)
    return ffi::Error::InvalidArgument("winograd conv: channels must be multiples of 16");
  Convolve(x.typed_data(), w.typed_data(), transpose != 0, y->typed_data(), s);
  return ffi::Error::Success();
}

// y of x by the direct convolution, in double, with the filter as the header says.
std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& w,
                              bool transpose, const Geometry& s) {
  std::vector<double> y(s.n * s.h * s.w * s.c, 0.0);
  bntt::ForEachTap(s.n, s.h, s.w, [&](int64_t p, int64_t q, int tap) {
    const float* xq = x.data() + q * s.k;
    double* yp = y.data() + p * s.c;
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t c = 0; c < s.c; ++c)
        yp[c] += double(xq[k]) * (transpose ? w[((8 - tap) * s.c + c) * s.k + k]
                                            : w[(tap * s.k + k) * s.c + c]);
  });
  return y;
}

bool SelfTest(char* msg, int len) {
  // Tiles cut by every border (5 x 7, 1 x 1), the wide register block and the 16-channel one
  // (80 = 64 + 16 output channels), more tiles than a block (40 samples of 8 x 8), both filters.
  const Geometry shapes[] = {{2, 5, 7, 32, 80, 2, 2}, {1, 1, 1, 16, 16, 1, 1},
                             {40, 8, 8, 16, 32, 2, 2}};
  bntt::Lcg rng(11);
  for (const Geometry& s : shapes)
    for (bool transpose : {false, true}) {
      const auto x = rng.Normalish(s.n * s.h * s.w * s.k), w = rng.Normalish(9 * s.k * s.c);
      std::vector<float> y(s.n * s.h * s.w * s.c);
      Convolve(x.data(), w.data(), transpose, y.data(), s);
      if (!bntt::Close(y, Reference(x, w, transpose, s), 2e-5,
                       transpose ? "winograd self-test: transpose" : "winograd self-test: forward",
                       msg, len))
        return false;
    }
  return true;
}

}  // namespace

// 0 when this build's convolutions equal a direct convolution in double on small problems to
// 2e-5 of max|y| (build.py runs it once before registering the handler), else 1 with why in msg.
extern "C" int BnttWinogradSelfTest(char* msg, int len) { return SelfTest(msg, len) ? 0 : 1; }
extern "C" const char* BnttWinogradIsa() { return simd::kIsa; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnttWinogradConv, ConvImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("transpose"));
