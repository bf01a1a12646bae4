// 64-byte aligned float buffers for the CPU kernels in this directory.
#ifndef BNTT_JAX_KERNELS_ALIGNED_H_
#define BNTT_JAX_KERNELS_ALIGNED_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace bntt {

// n floats, 64-byte aligned (a 16-float row never straddles two cache lines); none for n <= 0.
struct Aligned {
  std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
  Aligned() = default;
  explicit Aligned(int64_t n)
      : p(n > 0 ? static_cast<float*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64)) : nullptr,
          &std::free) {}
  float* get() const { return p.get(); }
};

// The same, set to zero.
inline Aligned Zeroed(int64_t n) {
  Aligned a(n);
  if (a.get()) std::memset(a.get(), 0, n * sizeof(float));
  return a;
}

}  // namespace bntt

#endif  // BNTT_JAX_KERNELS_ALIGNED_H_
