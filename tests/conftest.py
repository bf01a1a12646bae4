"""Test settings: the CPU backend, our XLA flags (as main uses them) and full-float32 matmuls.

The suite runs on CPU devices. Where libtpu is installed (for the deviceless TPU compiles of
``bntt_jax.plan``), JAX would otherwise try to start a TPU backend in every test process and
subprocess, and libtpu's lock file lets only one process at a time hold it.
"""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from bntt_jax import platform  # pylint: disable=wrong-import-position

platform.configure_xla()
platform.set_matmul_precision('highest')
