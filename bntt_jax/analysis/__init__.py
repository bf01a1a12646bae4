"""The paper's analyses of a trained network (docs/BNTT_SPEC.md, sections 6-9).

One module per idea, pure functions of (model, variables, arrays, keys, settings):

* :mod:`evaluation` -- one batched evaluation pass, per-example results.
* :mod:`spikes` -- S8 spike rates per layer and step.
* :mod:`energy` -- S7 FLOPs, ANN vs SNN compute energy, TrueNorth energy (Table S1).
* :mod:`early_exit` -- gamma per step, the exit step, accuracy after k steps, dynamic exit.
* :mod:`robustness` -- Gaussian noise, FGSM, PGD.
* :mod:`pipeline` -- :func:`analyze`, all of the above into one report dict.
* :mod:`plots`, :mod:`report` -- PNGs, ``report.json``/``report.md``, side-by-side.

Importing runs nothing and does not start a JAX backend.
"""
from bntt_jax.analysis.pipeline import Settings, analyze
from bntt_jax.analysis.report import write_comparison, write_report
from bntt_jax.analysis.robustness import InputSpace

__all__ = ['InputSpace', 'Settings', 'analyze', 'write_comparison', 'write_report']
