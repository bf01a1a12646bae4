"""Reading compiled HLO texts in tests."""
import re


def reductions(text):
  """``(operand shape, reduced dimensions)`` of every ``reduce`` and ``reduce-window`` (the
  first stage XLA:CPU splits a long reduction into) in a compiled HLO text."""
  shapes = dict(re.findall(r'(%[\w.-]+) = \w+\[([\d,]*)\]', text))
  dims = lambda s: tuple(int(d) for d in s.split(',') if d)
  out = [(dims(shapes[operand]), dims(reduced)) for operand, reduced in re.findall(
      r'= \w+\[[\d,]*\]\S* reduce\((%[\w.-]+), [^)]*\), dimensions=\{([\d,]*)\}', text)]
  for operand, window in re.findall(
      r'= \w+\[[\d,]*\]\S* reduce-window\((%[\w.-]+), [^)]*\), window=\{size=([\dx]+)', text):
    out.append((dims(shapes[operand]),
                tuple(i for i, w in enumerate(window.split('x')) if int(w) > 1)))
  return out
