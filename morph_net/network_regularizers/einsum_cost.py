"""The arithmetic of a two-operand Einsum, as a form in its channels.

Keras 3 lowers the attention products of MultiHeadAttention to `Einsum` ops
of two activations (for example 'aecd,abcd->acbe': query x key per head),
and EinsumDense layers that do not reduce to a matmul to `Einsum` with a
kernel. A two-operand contraction does one multiply-add per combination of
all its subscripts, so its FLOPs per example are

  2 x product of the sizes of every subscript but the batch one

(the batch subscript is the output's first; the TF profiler's Einsum
statistic counts the same). As a cost form in the op's channels, IN (the
last axis of the first operand) and OUT (the last axis of the output), the
coefficient is that count divided by IN x OUT; when both are the same
subscript, the form is linear in OUT (like a depthwise conv). The weights of
an Einsum with a variable kernel (operand 1) are the kernel's size, over
IN x OUT when both subscripts index the kernel.
"""

import collections
import math
from typing import Optional

import tensorflow as tf

from morph_net.framework import graph_util

__all__ = ['EinsumCost', 'read_einsum']

EinsumCost = collections.namedtuple(
    'EinsumCost', ['flops', 'weights', 'in_channels', 'out_channels',
                   'depthwise'])
EinsumCost.__doc__ = """What an Einsum computes per example.

Attributes:
  flops: FLOPs per example (2 per multiply-add), all channels alive.
  weights: kernel weights (0 if operand 1 is not a variable, or does not
    hold both channel subscripts).
  in_channels: size of the first operand's last axis.
  out_channels: size of the output's last axis.
  depthwise: whether the two are one subscript (linear cost).
"""


def _equation(op):
  equation = op.get_attr('equation')
  return equation.decode() if isinstance(equation, bytes) else equation


def read_einsum(op: tf.Operation) -> Optional[EinsumCost]:
  """Reads a two-operand Einsum with static shapes.

  Args:
    op: a tf.Operation.

  Returns:
    An EinsumCost, or None for other ops, equations with an ellipsis or
    other than two operands, and sizes that are not static.
  """
  if op.type != 'Einsum' or len(op.inputs) != 2:
    return None
  equation = _equation(op).replace(' ', '')
  if '...' in equation or '->' not in equation:
    return None
  operands, output = equation.split('->')
  operands = operands.split(',')
  if len(operands) != 2 or not output:
    return None
  sizes = {}
  for subscripts, tensor in zip(operands + [output],
                                list(op.inputs) + [op.outputs[0]]):
    shape = tensor.shape
    if shape.rank is None or shape.rank != len(subscripts):
      return None
    for letter, size in zip(subscripts, shape.as_list()):
      if size is not None:
        sizes.setdefault(letter, size)
  batch = output[0]
  letters = set(''.join(operands)) | set(output)
  letters.discard(batch)
  if any(letter not in sizes for letter in letters):
    return None
  in_letter, out_letter = operands[0][-1], output[-1]
  if in_letter == batch or out_letter == batch:
    return None
  flops = 2 * math.prod(sizes[letter] for letter in letters)
  weights = 0
  kernel = operands[1]
  if (graph_util.reads_variable(op.inputs[1]) and in_letter in kernel and
      out_letter in kernel and batch not in kernel):
    weights = math.prod(sizes[letter] for letter in kernel)
  return EinsumCost(flops, weights, sizes[in_letter], sizes[out_letter],
                    in_letter == out_letter)
