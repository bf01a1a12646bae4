// The vector type of the CPU kernels in this directory: one block per instruction set, the
// algorithms (sparse_conv.cc, winograd.cc) written once against it.
//
// bntt_jax.kernels.build compiles each source once per variant with one of BNTT_ISA_AVX512,
// BNTT_ISA_AVX2 or BNTT_ISA_GENERIC defined (and that variant's compiler flags); this header
// gives the kernels `V` (kWidth floats) and the dozen operations they use. Why wrappers over
// intrinsics rather than GCC's vector extensions or a SIMD library: the sparse kernels turn a
// comparison into a bit mask of nonzero lanes (kmov on AVX-512, movmskps on AVX2), which the
// vector extensions do not express, and the hot loops must compile to exactly the instructions
// the AVX-512 kernels had before there was a second width (the same code, no slower); a library
// (Highway, xsimd) would be a build dependency for a dozen operations. Adding a width is one
// more block here; the algorithms only read kWidth and the register-block sizes below.
//
// The generic block is GCC's and Clang's vector extensions of four floats: it compiles for any
// target (SSE2 on x86-64, NEON on aarch64, scalar code elsewhere) with a C++17 compiler, and
// its masks and multiply-adds are plain lane loops.
#ifndef BNTT_JAX_KERNELS_SIMD_H_
#define BNTT_JAX_KERNELS_SIMD_H_

#include <cstdint>
#include <cstring>

#if defined(BNTT_ISA_AVX512) + defined(BNTT_ISA_AVX2) + defined(BNTT_ISA_GENERIC) != 1
#error "define exactly one of BNTT_ISA_AVX512, BNTT_ISA_AVX2, BNTT_ISA_GENERIC (kernels/build.py)"
#endif

#if defined(BNTT_ISA_AVX512) || defined(BNTT_ISA_AVX2)
#include <immintrin.h>
#endif

// Each variant's names live in an inline namespace of their own: the libraries of several
// variants loaded into one process (the tests do) then share no symbol whose code differs.
namespace bntt {
namespace simd {
#if defined(BNTT_ISA_AVX512)
inline namespace avx512 {
#elif defined(BNTT_ISA_AVX2)
inline namespace avx2 {
#else
inline namespace generic {
#endif

#if defined(BNTT_ISA_AVX512)
#ifndef __AVX512F__
#error "BNTT_ISA_AVX512 needs a compiler target with AVX-512F"
#endif
inline constexpr const char* kIsa = "avx512";
inline constexpr int kWidth = 16;
inline constexpr int kProductRows = 6;   // Winograd's register block: rows x vectors
inline constexpr int kProductVecs = 4;   // (6 x 4 accumulators of the 32 registers)
inline constexpr int kMaxAccVecs = 8;    // accumulators the weight gradient may keep
using V = __m512;
inline V Zero() { return _mm512_setzero_ps(); }
inline V Set1(float a) { return _mm512_set1_ps(a); }
inline V Load(const float* p) { return _mm512_load_ps(p); }
inline V LoadU(const float* p) { return _mm512_loadu_ps(p); }
inline void Store(float* p, V v) { _mm512_store_ps(p, v); }
inline void StoreU(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V Add(V a, V b) { return _mm512_add_ps(a, b); }
inline V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }   // a * b + c
// Bit i set where lane i is nonzero (NaN included).
inline uint32_t NonzeroMask(V v) { return _mm512_cmpneq_ps_mask(v, _mm512_setzero_ps()); }
// Of the lanes in `mask`, those that are not 1.
inline uint32_t NotOneMask(uint32_t mask, V v) {
  return _mm512_mask_cmpneq_ps_mask(static_cast<__mmask16>(mask), v, _mm512_set1_ps(1.f));
}

#elif defined(BNTT_ISA_AVX2)
#if !defined(__AVX2__) || !defined(__FMA__)
#error "BNTT_ISA_AVX2 needs a compiler target with AVX2 and FMA"
#endif
#ifdef __AVX512F__
#error "BNTT_ISA_AVX2 must not be compiled for an AVX-512 target (build.py's flags)"
#endif
inline constexpr const char* kIsa = "avx2";
inline constexpr int kWidth = 8;
inline constexpr int kProductRows = 6;   // 6 x 2 accumulators of the 16 registers
inline constexpr int kProductVecs = 2;
// All 16 registers as the weight gradient's accumulators (128 channels): its adds take their
// operand from memory, so the spikes' loop needs no other vector register. Measured on a
// loaded 2-core Zen 4 (AVX2 build), VGG9's five spike-input weight gradients at 100 samples:
// 731 -> 637 ms at 5 % ones, 1348 -> 1125 at 25 %; other values (pooled spikes) unchanged.
inline constexpr int kMaxAccVecs = 16;
using V = __m256;
inline V Zero() { return _mm256_setzero_ps(); }
inline V Set1(float a) { return _mm256_set1_ps(a); }
inline V Load(const float* p) { return _mm256_load_ps(p); }
inline V LoadU(const float* p) { return _mm256_loadu_ps(p); }
inline void Store(float* p, V v) { _mm256_store_ps(p, v); }
inline void StoreU(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V Add(V a, V b) { return _mm256_add_ps(a, b); }
inline V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline uint32_t NonzeroMask(V v) {
  return static_cast<uint32_t>(
      _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
}
inline uint32_t NotOneMask(uint32_t mask, V v) {
  return mask & static_cast<uint32_t>(
                    _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(1.f), _CMP_NEQ_UQ)));
}

#else   // BNTT_ISA_GENERIC
inline constexpr const char* kIsa = "generic";
inline constexpr int kWidth = 4;
inline constexpr int kProductRows = 4;   // 4 x 4 accumulators: 16 channels per block
inline constexpr int kProductVecs = 4;
inline constexpr int kMaxAccVecs = 16;
typedef float V __attribute__((vector_size(16)));
inline V Zero() { return V{0.f, 0.f, 0.f, 0.f}; }
inline V Set1(float a) { return V{a, a, a, a}; }
inline V LoadU(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
inline V Load(const float* p) { return LoadU(p); }
inline void StoreU(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }
inline void Store(float* p, V v) { StoreU(p, v); }
inline V Add(V a, V b) { return a + b; }
inline V Mul(V a, V b) { return a * b; }
inline V Fma(V a, V b, V c) { return a * b + c; }
inline uint32_t NonzeroMask(V v) {
  uint32_t m = 0;
  for (int i = 0; i < kWidth; ++i) m |= static_cast<uint32_t>(!(v[i] == 0.f)) << i;
  return m;
}
inline uint32_t NotOneMask(uint32_t mask, V v) {
  uint32_t m = 0;
  for (int i = 0; i < kWidth; ++i) m |= static_cast<uint32_t>(!(v[i] == 1.f)) << i;
  return mask & m;
}
#endif

// (GCC's and Clang's vector extensions give V its +, - on every width above.)
inline V Scale(float s, V v) { return Mul(Set1(s), v); }

}  // inline namespace avx512, avx2 or generic
}  // namespace simd
}  // namespace bntt

#endif  // BNTT_JAX_KERNELS_SIMD_H_
