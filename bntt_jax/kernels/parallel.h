// Threads for the CPU kernels in this directory (bntt_jax.native compiles each .cc with it).
#ifndef BNTT_JAX_KERNELS_PARALLEL_H_
#define BNTT_JAX_KERNELS_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace bntt {

inline int NumThreads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// f(item, thread) for every item in [0, n), handed out to the threads as they become free: XLA
// may run other work on the same cores meanwhile, and a static split would leave a thread that
// lost its core the last to finish. Each item is done whole by one thread, so a kernel whose
// items write disjoint outputs gives results that do not depend on the scheduling.
template <typename F>
void ParallelFor(int64_t n, F&& f) {
  const int threads = static_cast<int>(std::min<int64_t>(NumThreads(), std::max<int64_t>(n, 1)));
  std::atomic<int64_t> next{0};
  auto work = [&](int t) {
    for (int64_t i; (i = next.fetch_add(1)) < n;) f(i, t);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace bntt

#endif  // BNTT_JAX_KERNELS_PARALLEL_H_
