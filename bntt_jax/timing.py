"""Timing helpers for the benchmarks in ``experiments/`` (never for tests: no test is timed).

A function's seconds per call after one untimed call (compile, warm caches), and the
device's float32 or bfloat16 matmul rate for a roofline beside a measured step.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def seconds_per_call(f, *args, reps: int) -> float:
  """Seconds per call of ``f(*args)`` over ``reps`` calls (after one untimed call); the
  outputs may be any pytree of arrays."""
  jax.block_until_ready(f(*args))
  t = time.perf_counter()
  for _ in range(reps):
    out = f(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / reps


def matmul_peak_gflops(dtype, n: int = 4096, reps: int = 3) -> float:
  """GFLOP/s of an ``n x n`` matmul in ``dtype`` on the default device: the best of ``reps``
  calls after one untimed call."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best / 1e9
