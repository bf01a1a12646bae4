"""Test settings: our XLA flags (as main uses them) and full-float32 matmuls."""
from bntt_jax import platform

platform.configure_xla()
platform.set_matmul_precision('highest')
