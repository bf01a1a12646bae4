"""What a compiled XLA program does per device, read from its optimised HLO text.

``jax.stages.Compiled.cost_analysis()`` counts the body of a ``while`` loop once: a 25-step
``lax.scan`` reports one step's FLOPs and bytes. This module takes the program apart:

* :func:`program_cost`: every ``while`` loop with its trip count (XLA's ``known_trip_count``,
  or the loop condition ``i < N`` that ``lax.scan`` and ``fori_loop`` lower to) and the cost of
  one trip of its body; the whole program with each loop body counted as many times as it
  runs (nested loops too), and the loops' part apart;
* :func:`collectives`: every all-reduce, all-gather, all-to-all, reduce-scatter and
  collective-permute with the bytes of its result.

Costs come from XLA's own ``HloCostAnalysis`` run on the program text by this process's CPU
client (``jax._src.lib._jax.hlo_module_cost_analysis``): FLOPs as XLA counts them, bytes at
the arrays' logical sizes; a GPU program's cuDNN convolutions, opaque to it, are counted from
their shapes (:func:`library_flops`), and every custom call's bytes as its operands and results
(:func:`custom_calls`; XLA counts none). A TPU's own count (``Compiled.cost_analysis()``) also
includes the padding of its tiled layouts (a minor dimension of 64 fills half of 128 lanes).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Dict, List, Optional, Tuple

from bntt_jax import versions

_ITEMSIZE = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2,
             's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16,
             'f8e4m3fn': 1, 'f8e5m2': 1, 's4': 1, 'u4': 1}
_ARRAY = re.compile(r'\b(' + '|'.join(sorted(_ITEMSIZE, key=len, reverse=True)) +
                    r')\[([0-9,]*)\]')
_HEADER = re.compile(r'^(ENTRY )?%?([\w.\-]+) \(.*\) -> .* \{$')
_INSTRUCTION = re.compile(r'^\s*(ROOT )?%?([\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)$')
_CALLED = re.compile(r'\b(?:calls|to_apply|body|condition|branch_computations|'
                     r'called_computations)=(\{[^}]*\}|%?[\w.\-]+)')
COLLECTIVES = ('all-reduce', 'all-gather', 'all-to-all', 'reduce-scatter', 'collective-permute')


def array_bytes(shape_text: str) -> int:
  """Bytes of every array in an HLO shape (``f32[2,64]{1,0}``, or a tuple of them)."""
  total = 0
  for dtype, dims in _ARRAY.findall(shape_text):
    total += _ITEMSIZE[dtype] * math.prod(int(d) for d in dims.split(',') if d)
  return total


@dataclasses.dataclass
class Computation:
  name: str
  lines: List[str]          # header, instructions, closing brace
  entry: bool = False

  @functools.cached_property
  def instructions(self) -> List[Tuple[str, str, str, str]]:
    """``(name, shape, opcode, rest)`` of each instruction."""
    out = []
    for line in self.lines[1:-1]:
      m = _INSTRUCTION.match(line)
      if m:
        out.append((m.group(2), m.group(3), m.group(4), m.group(5)))
    return out

  def called(self) -> List[str]:
    names = []
    for line in self.lines[1:-1]:
      for group in _CALLED.findall(line):
        names.extend(n.strip().lstrip('%') for n in group.strip('{}').split(',') if n.strip())
    return names


def computations(hlo_text: str) -> Dict[str, Computation]:
  """The module's computations by name, in the order printed (callees before callers)."""
  comps: Dict[str, Computation] = {}
  current: Optional[Computation] = None
  for line in hlo_text.splitlines():
    if current is None:
      m = _HEADER.match(line)
      if m:
        current = Computation(m.group(2), [line], entry=bool(m.group(1)))
    else:
      current.lines.append(line)
      if line == '}':
        comps[current.name] = current
        current = None
  return comps


@dataclasses.dataclass(frozen=True)
class Loop:
  """A ``while`` loop: where it is, how often its body runs, and one trip's cost."""
  name: str
  parent: str               # the computation that holds the while instruction
  body: str
  trips: Optional[int]      # None: not found (the loop is then counted once)
  op_name: str              # the JAX op it came from (metadata), for reports
  flops: float = 0.0        # one trip of the body (nested loops inside counted fully)
  bytes: float = 0.0


def _trip_count(rest: str, comps: Dict[str, Computation], condition: str) -> Optional[int]:
  m = re.search(r'"known_trip_count":\{"n":"(\d+)"', rest)
  if m:
    return int(m.group(1))
  cond = comps.get(condition)
  if cond is None:
    return None
  consts = {}
  for name, shape, op, args in cond.instructions:
    if op == 'constant' and shape.startswith(('s32[]', 's64[]', 'u32[]')):
      consts[name] = int(re.match(r'\s*(-?\d+)', args).group(1))
  for line in cond.lines:
    if line.lstrip().startswith('ROOT') and ' compare(' in line and 'direction=LT' in line:
      args = re.search(r' compare\(([^)]*)\)', line).group(1)
      for a in args.split(','):
        a = a.strip().split(' ')[-1].lstrip('%')
        if a in consts:
          return consts[a]   # lax.scan / fori_loop count i from 0 while i < N
  return None


def _module_text(comps: Dict[str, Computation], root: str) -> str:
  """A module whose entry is computation ``root``, with everything it calls."""
  keep = closure(comps, root)
  parts = ['HloModule extracted_' + re.sub(r'[^\w]', '_', root), '']
  for name, comp in comps.items():
    if name in keep and name != root:
      header = comp.lines[0][len('ENTRY '):] if comp.entry else comp.lines[0]
      parts.append('\n'.join([header] + comp.lines[1:]))
  body = comps[root]
  header = body.lines[0] if body.entry else 'ENTRY ' + body.lines[0]
  parts.append('\n'.join([header] + body.lines[1:]))
  return '\n\n'.join(parts) + '\n'


_CONV_ROLES = {   # custom-call target -> (which of out/op0/op1 is the forward output y, the kernel w)
    '__cudnn$convForward': ('out', 'op1'),
    '__cudnn$convBackwardInput': ('op0', 'op1'),
    '__cudnn$convBackwardFilter': ('op1', 'out'),
}


def _dims(shape_text: str) -> Tuple[int, ...]:
  m = _ARRAY.search(shape_text)
  return tuple(int(d) for d in m.group(2).split(',') if d) if m else ()


def _operand_names(rest: str) -> List[str]:
  """The operand names of an instruction, from the text after its opcode's ``(``."""
  return [a.strip().split(' ')[-1].lstrip('%') for a in rest.split(')', 1)[0].split(',')]


def _call_target(op: str, rest: str) -> str:
  """A custom call's ``custom_call_target`` ('' for any other instruction)."""
  m = re.search(r'custom_call_target="([^"]+)"', rest) if op == 'custom-call' else None
  return m.group(1) if m else ''


def _library_conv_flops(target: str, shape: str, ops, rest: str) -> float:
  """``2 prod(y) prod(w) / C_out`` for a cuDNN convolution's forward output ``y`` and kernel
  ``w`` (the same count for its two gradients)."""
  found = {'out': shape, 'op0': ops[0] if ops else '', 'op1': ops[1] if len(ops) > 1 else ''}
  y_role, w_role = _CONV_ROLES[target]
  y, w = _dims(found[y_role]), _dims(found[w_role])
  labels = re.search(r'dim_labels=\w+_(\w+)->', rest)
  if not (y and w and labels and 'o' in labels.group(1)):
    return 0.0
  return 2.0 * math.prod(y) * math.prod(w) / w[labels.group(1).index('o')]


def library_flops(comps: Dict[str, Computation], names) -> float:
  """FLOPs of the library convolutions (cuDNN custom calls) in computations ``names``, which
  XLA's cost analysis does not see into (:func:`_library_conv_flops`)."""
  flops = 0.0
  for name in names:
    comp = comps[name]
    shapes = {n: sh for n, sh, _, _ in comp.instructions}
    for _, shape, op, rest in comp.instructions:
      target = _call_target(op, rest)
      if target in _CONV_ROLES:
        flops += _library_conv_flops(target, shape,
                                     [shapes.get(a, '') for a in _operand_names(rest)[:2]], rest)
  return flops


def _is_kernel(target: str) -> bool:
  """A custom call that computes (a Pallas/Mosaic kernel, a cuDNN or cuBLAS call, this
  library's FFI kernels), not a TPU compiler's bookkeeping (``AllocateBuffer``,
  ``ConcatBitcast``)."""
  return target == 'tpu_custom_call' or target.startswith(('__cudnn$', '__cublas$', 'bntt_'))


def custom_calls(comps: Dict[str, Computation], names) -> Tuple[float, int]:
  """Bytes of the computing custom calls (:func:`_is_kernel`) in computations ``names``, each
  operand read and each result written once, and how many custom calls there are in all.
  XLA's cost analysis cannot see into a custom call and counts each as -1 FLOP and -1 byte;
  a kernel whose blocks tile its arrays (this library's) moves exactly this."""
  nbytes, count = 0.0, 0
  for name in names:
    comp = comps[name]
    shapes = {n: sh for n, sh, _, _ in comp.instructions}
    for _, shape, op, rest in comp.instructions:
      if op != 'custom-call':
        continue
      count += 1
      if _is_kernel(_call_target(op, rest)):
        nbytes += array_bytes(shape) + sum(array_bytes(shapes.get(a, ''))
                                           for a in _operand_names(rest))
  return nbytes, count


def _precision_key(operand_shapes, rest: str) -> str:
  """``bf16`` for 16-bit float operands (one pass of a bf16 matrix unit), else
  ``f32/<operand precision>`` (``highest``, ``high`` or ``default``)."""
  if all(re.match(r'\s*(bf16|f16)\[', sh or '') for sh in operand_shapes):
    return 'bf16'
  m = re.search(r'operand_precision=\{(\w+)', rest)
  return 'f32/' + (m.group(1) if m else 'default')


@functools.lru_cache(maxsize=None)
def _single_op_flops(shape: str, op: str, rest: str, ops: Tuple[str, ...]) -> float:
  """XLA's FLOP count of one convolution or dot, alone in a module (it counts only the
  kernel taps that meet the input, which a shape formula cannot: a dense layer's gradient
  written as a padded convolution)."""
  attrs = rest.split(')', 1)[1]
  attrs = re.sub(r', (metadata|backend_config|frontend_attributes)=(\{.*?\}|"[^"]*")(?=,|$)', '',
                 attrs)
  params = ', '.join(f'p{i}: {sh}' for i, sh in enumerate(ops))
  lines = [f'  %p{i} = {sh} parameter({i})' for i, sh in enumerate(ops)]
  text = ('HloModule one_op\n\nENTRY %main (' + params + ') -> ' + shape + ' {\n' +
          '\n'.join(lines) + f'\n  ROOT %r = {shape} {op}(' +
          ', '.join(f'%p{i}' for i in range(len(ops))) + ')' + attrs + '\n}\n')
  try:
    return _xla_cost(text)[0]
  except Exception:  # pylint: disable=broad-except
    return 0.0


def matmuls(comps: Dict[str, Computation], names) -> Dict[str, float]:
  """FLOPs of the convolutions and dots (XLA's own, and cuDNN's) in computations ``names``,
  by the operands' dtype and precision (:func:`_precision_key`): a matrix unit's passes
  differ between them, XLA's FLOP count does not."""
  out: Dict[str, float] = {}
  for name in names:
    comp = comps[name]
    shapes = {n: sh for n, sh, _, _ in comp.instructions}
    for _, shape, op, rest in comp.instructions:
      ops = tuple(shapes.get(a, '') for a in _operand_names(rest)[:2])
      target = _call_target(op, rest)
      flops = 0.0
      if op in ('convolution', 'dot') and all(ops):
        flops = _single_op_flops(shape, op, rest, ops)
      elif target in _CONV_ROLES:
        flops = _library_conv_flops(target, shape, ops, rest)
      if flops:
        key = _precision_key(ops, rest)
        out[key] = out.get(key, 0.0) + flops
  return out


def closure(comps: Dict[str, Computation], root: str) -> set:
  """``root`` and every computation it calls, transitively."""
  keep, todo = set(), [root]
  while todo:
    name = todo.pop()
    if name in keep or name not in comps:
      continue
    keep.add(name)
    todo.extend(comps[name].called())
  return keep


def _xla_cost(module_text: str) -> Tuple[float, float]:
  """``(flops, bytes accessed)`` of an HLO module by XLA's HloCostAnalysis."""
  versions.require_tested_jax("XLA's cost analysis (bntt_jax.xla_cost, private jax._src and "
                              'jaxlib functions)')
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top
  from jaxlib import _hlo  # pylint: disable=g-import-not-at-top
  # The printed metadata's stack-frame ids point into a table the text does not carry.
  module = _hlo.hlo_module_from_text(re.sub(r',? stack_frame_id=\d+', '', module_text))
  cost = _jax.hlo_module_cost_analysis(jax.devices('cpu')[0].client, module)
  return float(cost.get('flops', 0.0)), float(cost.get('bytes accessed', 0.0))


@dataclasses.dataclass(frozen=True)
class ProgramCost:
  """Per-device cost of one execution.

  Attributes:
    flops, bytes: the whole program with every loop body counted per trip.
    loop_flops, loop_bytes: the loops' part of those (the recurrences).
    flops_loops_once, bytes_loops_once: what HloCostAnalysis reports for the program as a
      whole (each loop body once).
    matmul_flops: the convolutions' and dots' share of ``flops`` by operand dtype and
      precision (:func:`matmuls`): ``bf16``, ``f32/highest``, ``f32/high``, ``f32/default``.
    loops: every loop, with one trip's cost.
  """
  flops: float
  bytes: float
  loop_flops: float
  loop_bytes: float
  flops_loops_once: float
  bytes_loops_once: float
  matmul_flops: Dict[str, float]
  loops: Tuple[Loop, ...]


def program_cost(hlo_text: str) -> ProgramCost:
  """The program's per-device cost with loops counted per trip (module doc).

  With ``once(c)`` XLA's count for computation ``c`` and everything it calls (each loop body
  once), the cost of ``c`` is ``once(c) + sum over the loops it holds of trips * cost(body) -
  once(body)``; a loop belongs to the nearest enclosing loop body, or to the entry.
  """
  comps = computations(hlo_text)
  entry = next(c.name for c in comps.values() if c.entry)
  found = []
  for comp in comps.values():
    for name, _, op, rest in comp.instructions:
      if op == 'while':
        body = re.search(r'body=%?([\w.\-]+)', rest).group(1)
        cond = re.search(r'condition=%?([\w.\-]+)', rest).group(1)
        meta = re.search(r'op_name="([^"]*)"', rest)
        found.append(Loop(name, comp.name, body, _trip_count(rest, comps, cond),
                          meta.group(1) if meta else ''))
  bodies = {lp.body for lp in found}
  callers: Dict[str, List[str]] = {}
  for comp in comps.values():
    for callee in comp.called():
      callers.setdefault(callee, []).append(comp.name)

  def owner(name: str) -> str:
    seen = set()
    while name != entry and name not in bodies and name not in seen:
      seen.add(name)
      up = callers.get(name)
      if not up:
        return entry
      name = up[0]
    return name if name in bodies or name == entry else entry

  owned: Dict[str, List[Loop]] = {}
  for lp in found:
    owned.setdefault(owner(lp.parent), []).append(lp)

  def add(a: Dict[str, float], b: Dict[str, float], scale: float = 1.0) -> Dict[str, float]:
    return {k: a.get(k, 0.0) + scale * b.get(k, 0.0) for k in set(a) | set(b)}

  @functools.lru_cache(maxsize=None)
  def once(root: str) -> Tuple[float, float, Dict[str, float]]:
    flops, nbytes = _xla_cost(hlo_text if root == entry else _module_text(comps, root))
    names = closure(comps, root)
    call_bytes, calls = custom_calls(comps, names)
    return (flops + calls + library_flops(comps, names), nbytes + calls + call_bytes,
            matmuls(comps, names))

  @functools.lru_cache(maxsize=None)
  def cost(root: str) -> Tuple[float, float, Dict[str, float]]:
    flops, nbytes, mm = once(root)
    for lp in owned.get(root, ()):
      n = lp.trips or 1
      flops += n * cost(lp.body)[0] - once(lp.body)[0]
      nbytes += n * cost(lp.body)[1] - once(lp.body)[1]
      mm = add(add(mm, cost(lp.body)[2], n), once(lp.body)[2], -1.0)
    return flops, nbytes, mm

  total_flops, total_bytes, total_mm = cost(entry)
  outer = owned.get(entry, ())
  return ProgramCost(
      flops=total_flops, bytes=total_bytes,
      loop_flops=sum((lp.trips or 1) * cost(lp.body)[0] for lp in outer),
      loop_bytes=sum((lp.trips or 1) * cost(lp.body)[1] for lp in outer),
      flops_loops_once=once(entry)[0], bytes_loops_once=once(entry)[1],
      matmul_flops={k: v for k, v in total_mm.items() if v},
      loops=tuple(dataclasses.replace(lp, flops=cost(lp.body)[0], bytes=cost(lp.body)[1])
                  for lp in found))


@dataclasses.dataclass(frozen=True)
class Collective:
  kind: str        # one of COLLECTIVES
  bytes: int       # of its result on one device
  groups: str      # replica_groups as printed
  op_name: str


def collectives(hlo_text: str) -> List[Collective]:
  """Every cross-device collective of the program (an async ``-start``/``-done`` pair once)."""
  out = []
  for comp in computations(hlo_text).values():
    for _, shape, op, rest in comp.instructions:
      kind = op[:-len('-start')] if op.endswith('-start') else op
      if kind not in COLLECTIVES:
        continue
      groups = re.search(r'replica_groups=(\{[^=]*\}|\[[^=]*\][^,]*)', rest)
      meta = re.search(r'op_name="([^"]*)"', rest)
      nbytes = array_bytes(shape)
      if op.endswith('-start') and kind in ('all-gather', 'all-reduce', 'collective-permute'):
        # An async start's shape is (operands, results) or carries context: count results.
        inner = re.findall(r'\((.*)\)', shape)
        nbytes = array_bytes(shape) // 2 if inner else nbytes
      out.append(Collective(kind, nbytes, groups.group(1) if groups else '',
                            meta.group(1) if meta else ''))
  return out
