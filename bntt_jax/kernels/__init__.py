"""Kernels: C++ XLA FFI handlers for one Linux CPU device, and Pallas kernels for TPUs.

* :mod:`.sparse_conv` (``sparse_conv.cc``): event-driven 3x3 convolutions of spike inputs,
  forward and weight gradient from the nonzeros.
* :mod:`.winograd` (``winograd.cc``): dense 3x3 convolutions by Winograd's F(4x4, 3x3), the
  event-driven convolutions' input gradients and their forwards where the input is dense.
* :mod:`.lif` (``lif.cc``): the ``layer`` schedule's fused norm-affine LIF recurrence, each
  pass in one kernel, the backward recomputing the membranes.
* :mod:`.build`: compiles a source once per machine and instruction-set variant (``avx512``,
  ``avx2``, ``generic``: the widest the CPU runs, or ``$BNTT_KERNEL_ISA``; ``simd.h`` holds each
  one's vector type) into a cache, checks it against its self-test and registers its handlers.
* :mod:`.lif_tpu`: the same LIF recurrence as Pallas TPU kernels (nothing to build: Mosaic
  compiles them with the program; imported only by a model that runs them).

The blocks use a kernel where it is available and takes the operands, and XLA's operations
otherwise (equal results up to float32 rounding). :func:`prepare` builds both ahead of use
(``config_lib.create_model`` calls it for a run on one CPU device; otherwise the first trace
that needs a kernel builds it); ``python -m bntt_jax.kernels`` does it from the shell and prints
what this machine can use, and the variant each kernel built as.
"""
from __future__ import annotations

from typing import Dict

from bntt_jax.kernels import lif
from bntt_jax.kernels import sparse_conv
from bntt_jax.kernels import winograd

KINDS = {'sparse_conv': sparse_conv, 'winograd': winograd, 'lif': lif}


def prepare() -> Dict[str, str]:
  """Build and register every kernel; ``{kind: ''}`` where it is available, else why not."""
  return {name: '' if mod.available() else mod.unavailable_reason() or 'unavailable'
          for name, mod in KINDS.items()}
