"""Layer rules of the operations `keras.ops` records in functional models.

In a Keras 3 functional model, `keras.ops` calls on symbolic tensors
(`ops.relu(x)`, `ops.add(a, b)`, `x * 2.0`, `ops.mean(x, axis=[1, 2])`,
`ops.concatenate(xs, axis=1)`, `ops.reshape(x, (-1, 4))`, `s[:, None, None,
:]`) become nodes of the model's graph whose operation is a
`keras.src.ops` `Operation`, not a layer. `clone_model` re-applies them to
the rebuilt tensors (a clone made from the operation's config), so they
rebuild like layers without weights once the channel model knows how they
treat channels. One rule per kind of operation:

* `UnaryOpRule` (relu, sigmoid, gelu, exp, sqrt, clip, cast, ...): the
  channels pass through.
* `BroadcastOpRule` (add, subtract, multiply, divide, maximum, where, ...;
  `a + b`, `x * 2.0`): the operands' groups merge; a broadcast operand
  (one channel, a scalar) passes.
* `ReductionOpRule` (mean, sum, max, min, prod, std, var, logsumexp): the
  channels pass when the channel axis is kept; reducing it is refused.
* `ConcatenateOpRule`: as the Concatenate layer, on any axis.
* `ReshapeOpRule`: as the Reshape layer (last axis kept, or a flatten).
* `GetItemOpRule` (`x[...]`): the channels pass when the key keeps the
  channel axis whole and last.
* `ShapeOpRule` (expand_dims, squeeze: reshapes without a shape argument)
  and `TransposeOpRule`: the channels pass when the channel axis stays
  last.

`op_rule_table()` maps the operation classes to these rules;
`layer_rules` registers them with the built-in layer rules. An operation
class that is not in the table is opaque, as an unknown layer is.
"""

import numbers
from typing import Dict, List, Sequence

import keras
import numpy as np

from morph_net.surgery import builtin_rules
from morph_net.surgery import layer_rule

__all__ = ['UnaryOpRule', 'BroadcastOpRule', 'ReductionOpRule',
           'ConcatenateOpRule', 'ReshapeOpRule', 'GetItemOpRule',
           'ShapeOpRule', 'TransposeOpRule',
           'op_rule_table', 'UNARY_OPS', 'BROADCAST_OPS', 'REDUCTION_OPS']

UNKNOWN = layer_rule.UNKNOWN

# Operation class names by module of `keras.src.ops`. Names a Keras version
# does not define are skipped.
UNARY_OPS = {
    'nn': ('Relu', 'Relu6', 'Sigmoid', 'SparseSigmoid', 'Softplus',
           'Softsign', 'SoftShrink', 'SparsePlus', 'Silu', 'Squareplus',
           'LogSigmoid', 'LeakyRelu', 'HardSigmoid', 'HardSilu', 'Elu', 'Selu',
           'Gelu', 'Celu', 'TanhShrink', 'HardTanh', 'HardShrink'),
    'numpy': ('Abs', 'Absolute', 'Fabs', 'Negative', 'Exp', 'Exp2', 'Expm1',
              'Log', 'Log10', 'Log1p', 'Log2', 'Sqrt', 'Square', 'Cbrt',
              'Tanh', 'Sin', 'Cos', 'Tan', 'Sinh', 'Cosh', 'Arctan', 'Floor',
              'Ceil', 'Round', 'Trunc', 'Sign', 'Clip', 'Reciprocal',
              'NanToNum', 'Copy'),
    'math': ('Rsqrt', 'Erf', 'Erfc'),
    'core': ('Cast', 'StopGradient'),
}
BROADCAST_OPS = {
    'numpy': ('Add', 'Subtract', 'Multiply', 'Divide', 'DivideNoNan',
              'TrueDivide', 'FloorDivide', 'Mod', 'Power', 'Maximum',
              'Minimum', 'Where', 'Logaddexp', 'Hypot'),
}
REDUCTION_OPS = {
    'numpy': ('Mean', 'Sum', 'Max', 'Min', 'Amax', 'Amin', 'Prod', 'Std',
              'Var'),
    'math': ('Logsumexp',),
}


def _is_tensor(value) -> bool:
  return isinstance(value, keras.KerasTensor)


def _operands(node: layer_rule.LayerNode) -> List:
  """The call's arguments, flattened (tensors and constants)."""
  values = []
  for value in list(node.args) + list(node.kwargs.values()):
    if isinstance(value, (list, tuple)):
      values.extend(value)
    elif value is not None:
      values.append(value)
  return values


def _last_dim(value):
  """Size of the last axis of a tensor or constant (None for a scalar)."""
  shape = tuple(getattr(value, 'shape', None) or np.shape(value))
  return shape[-1] if shape else None


class UnaryOpRule(layer_rule.LayerRule):
  """Elementwise operations of one tensor: the channels pass through.

  A constant argument holding one value per channel (an array whose last
  axis has the channel count) cannot follow a narrower tensor: the
  channels keep their width.
  """

  def output_space(self, node):
    tensors = [v for v in _operands(node) if _is_tensor(v)]
    if len(tensors) != 1:
      return node.opaque(UNKNOWN)
    space = node.input_spaces[0]
    _freeze_per_channel_constants(node, space)
    return space


def _freeze_per_channel_constants(node, space) -> None:
  channels = node.output_channels()
  for value in _operands(node):
    if _is_tensor(value) or isinstance(value, (numbers.Number, str)):
      continue
    if channels > 1 and _last_dim(value) == channels:
      node.freeze(space, 'it meets a constant of %d channels in layer %s, '
                  'which cannot follow a narrower tensor' %
                  (channels, node.describe()))


class BroadcastOpRule(layer_rule.LayerRule):
  """Elementwise operations of several operands, with broadcasting.

  The tensor operands with the output's channel count meet channel by
  channel: their groups merge, as the Add and Multiply layers' do. A
  tensor operand with one channel is broadcast (its width is kept); a
  scalar or a constant without a channel axis (`x * 2.0`) passes. A
  constant with one value per channel freezes the channels (see
  `UnaryOpRule`).
  """

  def output_space(self, node):
    channels = node.output_channels()
    same = []
    for value in _operands(node):
      if not _is_tensor(value):
        continue
      space = node.space_of(value)
      if _last_dim(value) == channels and len(value.shape):
        same.append(space)
      else:
        node.freeze(space, 'it is broadcast by layer %s' % node.describe())
    if not same:
      return node.opaque('which broadcasts channels')
    for space in same[1:]:
      node.union(same[0], space)
    _freeze_per_channel_constants(node, same[0])
    return same[0]


def _normalized_axes(axis, rank: int) -> Sequence[int]:
  if axis is None:
    return tuple(range(rank))
  axes = axis if isinstance(axis, (list, tuple)) else (axis,)
  return tuple(int(a) % rank for a in axes)


class ReductionOpRule(layer_rule.LayerRule):
  """Reductions (`ops.mean(x, axis=[1, 2])`): over axes other than the
  channel axis the channels pass through; a reduction over the channel
  axis (or over all axes) is opaque."""

  def output_space(self, node):
    if len(node.inputs) != 1:
      return node.opaque(UNKNOWN)
    rank = node.input_rank()
    axes = _normalized_axes(getattr(node.layer, 'axis', None), rank)
    if rank - 1 in axes:
      return node.opaque('which reduces over the channel axis')
    return node.input_spaces[0]


class ConcatenateOpRule(builtin_rules.ConcatenateRule):
  """`ops.concatenate` on any axis, as the Concatenate layer (see
  `builtin_rules.concat_space`); a constant among the inputs is opaque."""

  def output_space(self, node):
    if not all(_is_tensor(v) for v in _operands(node)):
      return node.opaque('which concatenates a constant')
    return super().output_space(node)


class ReshapeOpRule(layer_rule.LayerRule):
  """`ops.reshape`, as the Reshape layer (see `builtin_rules.reshape_space`);
  the rebuilt operation's shape (batch axis included) ends with its
  rebuilt width."""

  def output_space(self, node):
    return builtin_rules.reshape_space(node)

  def sized_config(self, layer, config, output_width):
    del layer
    return dict(config, newshape=builtin_rules.sized_shape(
        config['newshape'], output_width))


def _keeps_last_axis(key, rank: int) -> bool:
  """Whether indexing a rank-`rank` tensor with `key` keeps its last axis
  whole and as the last axis of the result."""
  key = key if isinstance(key, tuple) else (key,)
  if any(k is Ellipsis for k in key):
    at = [i for i, k in enumerate(key) if k is Ellipsis][0]
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    key = (key[:at] + (slice(None),) * (rank - consumed) + key[at + 1:])
  consumed = [k for k in key if k is not None]
  if len(consumed) > rank:
    return False
  if len(consumed) < rank:
    # The last axis is not indexed: it stays whole, after every new axis.
    return True
  last = max(i for i, k in enumerate(key) if k is not None)
  return (isinstance(key[last], slice) and key[last] == slice(None) and
          all(k is not None for k in key[last + 1:]))


class GetItemOpRule(layer_rule.LayerRule):
  """`x[key]` (`s[:, None, None, :]`): the channels pass through when the
  key keeps the channel axis whole and last; other indexing is opaque."""

  def output_space(self, node):
    if len(node.inputs) != 1 or len(node.args) != 2:
      return node.opaque(UNKNOWN)
    tensor, key = node.args
    if (not _is_tensor(tensor) or
        not _keeps_last_axis(key, len(tensor.shape)) or
        node.output_channels() != layer_rule.num_channels(tensor)):
      return node.opaque('which does not keep the channel axis whole')
    return node.input_spaces[0]


class ShapeOpRule(layer_rule.LayerRule):
  """`ops.expand_dims`, `ops.squeeze`: reshapes whose arguments are axes
  (nothing to resize), see `builtin_rules.reshape_space`."""

  def output_space(self, node):
    return builtin_rules.reshape_space(node)


class TransposeOpRule(layer_rule.LayerRule):
  """`ops.transpose`: the channels pass when the channel axis stays last."""

  def output_space(self, node):
    if len(node.inputs) != 1:
      return node.opaque(UNKNOWN)
    rank = node.input_rank()
    axes = getattr(node.layer, 'axes', None)
    if axes is None or int(axes[-1]) % rank != rank - 1:
      return node.opaque('which moves the channel axis')
    return node.input_spaces[0]


def _classes(names_by_module: Dict[str, Sequence[str]]) -> List[type]:
  from keras.src import ops as ops_package  # pylint: disable=g-import-not-at-top
  classes = []
  for module_name, names in names_by_module.items():
    module = getattr(ops_package, module_name)
    classes.extend(getattr(module, n) for n in names if hasattr(module, n))
  return classes


def op_rule_table() -> Dict[type, layer_rule.LayerRule]:
  """{keras.ops operation class: rule} for the operations surgery knows."""
  table = {}
  for names, rule in ((UNARY_OPS, UnaryOpRule()),
                      (BROADCAST_OPS, BroadcastOpRule()),
                      (REDUCTION_OPS, ReductionOpRule())):
    for cls in _classes(names):
      table[cls] = rule
  for name, rule in (('Concatenate', ConcatenateOpRule()),
                     ('Reshape', ReshapeOpRule()),
                     ('GetItem', GetItemOpRule()),
                     ('ExpandDims', ShapeOpRule()),
                     ('Squeeze', ShapeOpRule()),
                     ('Transpose', TransposeOpRule())):
    for cls in _classes({'numpy': (name,)}):
      table[cls] = rule
  return table
